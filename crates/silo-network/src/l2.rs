//! The l2bridge and l2tunnel drivers (HNS "L2Bridge", "L2Tunnel").
//!
//! l2bridge: endpoints on the segment of a host interface, all behind
//! that interface's MAC, as HNS rewrites MACs. This kernel has no ipvlan,
//! so each endpoint is a macvlan (bridge mode) of the parent, and
//! nftables' netdev family on the parent does the rewriting: frames of
//! the endpoints leaving by the parent take its MAC (Ethernet and ARP
//! sender), and frames arriving for the parent's MAC are given the
//! endpoint's MAC by destination IP before the macvlans sort them (a set
//! and a map, one element each per endpoint). The parent keeps its own
//! addresses; endpoints on one host talk directly through the macvlans.
//!
//! l2tunnel: no shared L2 at all. Each endpoint is a veth whose host end
//! holds the gateway address (/32) and answers ARP for the rest of the
//! subnet (proxy ARP); a /32 route per endpoint leads to it. Every packet,
//! even between two endpoints of one host, is routed by the host and
//! passes its forward chain.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

use crate::driver::{
    all_done, ep_err, macvlan_endpoint, macvlan_teardown, mtu, net_err, opt, parent_of, Driver,
};
use crate::nat::{self, DriverError, EndpointSpec};
use crate::netlink::{mac_str, Netlink, Route};
use crate::service::{Endpoint, Network};

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> DriverError {
    DriverError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The l2bridge driver (`-d l2bridge`, and `-d ipvlan`, whose L2 mode it
/// stands in for: endpoints share the parent's MAC).
#[derive(Debug, Clone, Copy)]
pub struct L2Bridge;

fn l2_table(n: &Network) -> String {
    format!("silo-l2-{}", &n.id[..n.id.len().min(12)])
}

/// The rewriting table on parent `parent` (MAC `pmac`), with the
/// endpoints' addresses and MACs.
pub fn l2bridge_script(n: &Network, parent: &str, pmac: &str) -> String {
    let t = l2_table(n);
    let eps: Vec<&Endpoint> = n.endpoints.values().filter(|e| e.ip.is_ipv4()).collect();
    let (macs, ips) = if eps.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(
                " elements = {{ {} }};",
                eps.iter()
                    .map(|e| e.mac.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                " elements = {{ {} }};",
                eps.iter()
                    .map(|e| format!("{} : {}", e.ip, e.mac))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    crate::nft::replace_table(
        "netdev",
        &t,
        &format!(
        "  set macs {{ type ether_addr;{macs} }}\n  map ips {{ type ipv4_addr : ether_addr;{ips} }}\n  chain in {{\n    type filter hook ingress device \"{parent}\" priority filter; policy accept;\n    ether daddr {pmac} ether daddr set ip daddr map @ips\n    ether daddr {pmac} arp daddr ip @ips ether daddr set arp daddr ip map @ips\n  }}\n  chain out {{\n    type filter hook egress device \"{parent}\" priority filter; policy accept;\n    ether saddr @macs arp saddr ether set {pmac}\n    ether saddr @macs ether saddr set {pmac}\n  }}\n"
        ),
    )
}

fn element_script(n: &Network, ip: std::net::IpAddr, mac: &str) -> String {
    let t = l2_table(n);
    format!(
        "add element netdev {t} macs {{ {mac} }}\nadd element netdev {t} ips {{ {ip} : {mac} }}\n"
    )
}

/// Removes an endpoint's two elements, each in a transaction of its own
/// (one already gone does not keep the other); missing ones are fine,
/// other failures are returned.
fn delete_elements(n: &Network, ip: std::net::IpAddr, mac: &str) -> Vec<String> {
    let t = l2_table(n);
    [
        format!("delete element netdev {t} macs {{ {mac} }}\n"),
        format!("delete element netdev {t} ips {{ {ip} }}\n"),
    ]
    .iter()
    .filter_map(|script| match crate::nft::run(script, false) {
        Ok(_) => None,
        Err(e) if e.to_string().contains("No such file or directory") => None,
        Err(e) => Some(format!("removing the MAC rewrite of {ip}: {e}")),
    })
    .collect()
}

impl Driver for L2Bridge {
    fn hns_type(&self) -> &'static str {
        "L2Bridge"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError> {
        for (k, v) in options {
            match k.as_str() {
                "parent" | "com.docker.network.windowsshim.interface" => {
                    if !nat::valid_ifname(v) {
                        return Err(invalid(
                            format!("option {k}"),
                            format!("{v:?} is not a Linux interface name"),
                        ));
                    }
                }
                "ipvlan_mode" if v == "l2" => {}
                "ipvlan_mode" => {
                    return Err(invalid(
                        "option ipvlan_mode",
                        format!("{v:?}: only l2 is supported (endpoints share the parent's MAC on its segment)"),
                    ))
                }
                other => {
                    return Err(invalid(
                        format!("option {other}"),
                        "the l2bridge driver takes parent=IFACE (and ipvlan_mode=l2)",
                    ))
                }
            }
        }
        if parent_of(options).is_none() {
            return Err(invalid(
                "option parent",
                "an l2bridge network needs -o parent=IFACE",
            ));
        }
        Ok(())
    }

    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        let parent = parent_of(&n.options).unwrap_or_default().to_string();
        let p = nl
            .link(&parent)
            .map_err(net_err(n, "looking up the parent interface"))?
            .ok_or_else(|| {
                invalid(
                    "option parent",
                    format!("interface {parent} does not exist"),
                )
            })?;
        if p.master.is_some() {
            return Err(invalid(
                "option parent",
                format!("interface {parent} is busy: it is enslaved to a bridge or bond"),
            ));
        }
        let pmac: [u8; 6] = p.mac.as_slice().try_into().map_err(|_| {
            invalid(
                "option parent",
                format!("interface {parent} has no Ethernet MAC"),
            )
        })?;
        nl.set_up(p.index)
            .map_err(net_err(n, "bringing the parent interface up"))?;
        crate::nft::run(&l2bridge_script(n, &parent, &mac_str(pmac)), false)
            .map_err(|e| invalid(format!("network {}", n.name), format!("nftables: {e}")))?;
        Ok(p.index)
    }

    fn teardown_network(&self, _nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>> {
        // The parent is the host's: only the table goes.
        let t = l2_table(n);
        crate::nft::run(&crate::nft::drop_table("netdev", &t), false)
            .map(drop)
            .map_err(|e| vec![e.to_string()])
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
        let Some(ip) = ep.addresses.first().map(|a| a.0).filter(|a| a.is_ipv4()) else {
            return Err(invalid(
                format!("endpoint {}", ep.id),
                "l2bridge endpoints are IPv4",
            ));
        };
        // The rewrite first, so the endpoint's first frame already goes
        // out under the parent's MAC.
        let mac = mac_str(ep.mac);
        crate::nft::run(&element_script(n, ip, &mac), false).map_err(|e| {
            invalid(
                format!("endpoint {}", ep.id),
                format!("adding its MAC rewrite: {e}"),
            )
        })?;
        if let Err(e) = macvlan_endpoint(nl, index, ep, ns) {
            let _ = delete_elements(n, ip, &mac);
            return Err(e);
        }
        Ok(())
    }

    fn teardown_endpoint(
        &self,
        _nl: &mut Netlink,
        n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError> {
        let gone = macvlan_teardown(ep);
        // The elements after, whatever became of the macvlan.
        let errors = delete_elements(n, ep.ip, &ep.mac);
        match (gone, errors.is_empty()) {
            (Err(e), _) => Err(e),
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(invalid(format!("endpoint {}", ep.id), errors.join("; "))),
        }
    }
}

/// The l2tunnel driver.
#[derive(Debug, Clone, Copy)]
pub struct L2Tunnel;

fn sysctl(path: &str, value: &str) -> Result<(), DriverError> {
    std::fs::write(path, value)
        .map_err(|e| invalid(path.to_string(), format!("writing {value}: {e}")))
}

impl Driver for L2Tunnel {
    fn hns_type(&self) -> &'static str {
        "L2Tunnel"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError> {
        for k in options.keys() {
            if k != opt::MTU {
                return Err(invalid(
                    format!("option {k}"),
                    format!("the l2tunnel driver takes only {}", opt::MTU),
                ));
            }
        }
        mtu(options)?;
        Ok(())
    }

    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        // No shared link. The subnet is unreachable but for its endpoints'
        // /32 routes (so proxy ARP never answers for a free address and
        // nothing for one leaves by the default route), and the network
        // keeps to itself in the forward chain.
        let r = subnet_unreachable(n);
        match nl.add_route(&r) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other.map_err(net_err(n, "routing the subnet"))?,
        }
        let table = crate::firewall::table(&n.id);
        if let Err(e) = crate::nft::run(&l2tunnel_script(&table, n), false) {
            let _ = nl.del_route(&r);
            return Err(invalid(
                format!("network {}", n.name),
                format!("nftables: {e}"),
            ));
        }
        // Routing on (the host is every endpoint's gateway): even an
        // internal network's endpoints reach each other only through it.
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        Ok(0)
    }

    fn teardown_network(&self, nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Err(e) = crate::firewall::remove(&n.id) {
            errors.push(e.to_string());
        }
        if let Err(e) = nl.del_route(&subnet_unreachable(n)) {
            errors.push(e.to_string());
        }
        all_done(errors)
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        _index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
        let mut ep = ep.clone();
        ep.mtu = ep.mtu.or(mtu(&n.options)?);
        let tmp = format!("{}p", &ep.host_ifname[..ep.host_ifname.len().min(14)]);
        let veth = nl
            .add_veth(&ep.host_ifname, &tmp, ns)
            .map_err(ep_err(&ep.id, "creating the veth pair"))?;
        let made = (|| {
            if let Some(m) = ep.mtu {
                nl.set_mtu(veth, m)
                    .map_err(ep_err(&ep.id, "setting the host end's MTU"))?;
            }
            let conf = format!("/proc/sys/net/ipv4/conf/{}", ep.host_ifname);
            sysctl(&format!("{conf}/proxy_arp"), "1")?;
            // Answer at once, not after the default 0.8 s proxy delay.
            sysctl(
                &format!("/proc/sys/net/ipv4/neigh/{}/proxy_delay", ep.host_ifname),
                "0",
            )?;
            // The host end answers for the gateway itself.
            nl.add_address(veth, n.pool.gateway, 32)
                .map_err(ep_err(&ep.id, "giving the host end the gateway address"))?;
            nl.set_up(veth)
                .map_err(ep_err(&ep.id, "bringing the host end up"))?;
            for (a, _) in &ep.addresses {
                let r = Route {
                    dst: *a,
                    prefix: if a.is_ipv4() { 32 } else { 128 },
                    via: None,
                    oif: Some(veth),
                    onlink: false,
                    unreachable: false,
                };
                nl.add_route(&r)
                    .map_err(ep_err(&ep.id, "routing the endpoint's address"))?;
            }
            let inside =
                nat::in_netns(ns, |nl| nat::configure_inside(nl, &tmp, &ep)).map_err(|source| {
                    DriverError::Namespace {
                        endpoint: ep.id.clone(),
                        source,
                    }
                })?;
            inside.map_err(ep_err(&ep.id, "configuring the container end"))
        })();
        if let Err(e) = made {
            let _ = nl.del_link(veth);
            return Err(e);
        }
        Ok(())
    }

    fn teardown_endpoint(
        &self,
        nl: &mut Netlink,
        _n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError> {
        // Its route and address go with the veth.
        nat::teardown_endpoint(nl, &ep.id, &ep.host_ifname)
    }
}

fn subnet_unreachable(n: &Network) -> Route {
    Route {
        dst: n.pool.subnet.addr,
        prefix: n.pool.subnet.prefix,
        via: None,
        oif: None,
        onlink: false,
        unreachable: true,
    }
}

/// An l2tunnel network's forward filter (table `inet silo-<id12>`, the
/// name the nat driver's tables have, so reconcile and removal find it):
/// no traffic between it and other silo networks (their bridges and
/// gateway links, other l2tunnel networks' veths), and for an internal
/// network none with anything outside the subnet.
pub fn l2tunnel_script(table: &str, n: &Network) -> String {
    let sn = n.pool.subnet;
    let br = crate::firewall::BRIDGE_GLOB;
    let mut rules = format!(
        "    ip saddr {sn} oifname \"{br}\" drop\n    ip daddr {sn} iifname \"{br}\" drop\n    ip saddr {sn} oifname \"sv*\" ip daddr != {sn} drop\n"
    );
    if n.internal {
        rules.push_str(&format!(
            "    ip saddr {sn} ip daddr != {sn} drop\n    ip daddr {sn} ip saddr != {sn} drop\n"
        ));
    }
    crate::nft::replace_table(
        "inet",
        table,
        &format!(
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n{rules}  }}\n"
        ),
    )
}

/// The namespace file of an endpoint, if it is still there.
/// (A file no longer pinned — its container gone — is not: the namespace
/// went, and the endpoint's links with it. Checked on the open descriptor,
/// which then keeps the namespace alive, so an unpin racing with us is no
/// failure.)
pub(crate) fn endpoint_ns(ep: &Endpoint) -> Option<std::fs::File> {
    ep.netns
        .as_ref()
        .and_then(|p| std::fs::File::open(p).ok())
        .filter(silo_isolation::pin::is_namespace)
}

/// Runs `f` in the endpoint's namespace with its interface's index.
pub(crate) fn with_endpoint_link<T: Send>(
    ep: &Endpoint,
    f: impl FnOnce(&mut Netlink, u32) -> Result<T, crate::netlink::NetlinkError> + Send,
) -> Result<T, String> {
    let ns = endpoint_ns(ep).ok_or_else(|| {
        format!(
            "endpoint {}: its container's network namespace is gone",
            ep.id
        )
    })?;
    let ifname = ep.ifname.clone();
    nat::in_netns(ns.as_fd(), move |nl| {
        let l = nl
            .link(&ifname)?
            .ok_or_else(|| crate::netlink::NetlinkError::Decode {
                what: "finding the endpoint's interface".into(),
                message: format!("{ifname} is gone"),
            })?;
        f(nl, l.index)
    })
    .map_err(|e| format!("endpoint {}: entering its namespace: {e}", ep.id))?
    .map_err(|e| format!("endpoint {}: {e}", ep.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_options_are_checked() {
        let o = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(L2Bridge.validate(&o("parent", "eth1")).is_ok());
        assert!(L2Bridge.validate(&BTreeMap::new()).is_err());
        let mut m = o("parent", "eth1");
        m.insert("ipvlan_mode".into(), "l3".into());
        let e = L2Bridge.validate(&m).unwrap_err().to_string();
        assert!(e.contains("only l2"), "{e}");
        assert!(L2Tunnel.validate(&o(opt::MTU, "1400")).is_ok());
        assert!(L2Tunnel.validate(&o("parent", "eth0")).is_err());
    }
}

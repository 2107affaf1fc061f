//! The l2bridge and l2tunnel drivers (HNS "L2Bridge", "L2Tunnel").
//!
//! l2bridge: endpoints on the segment of a host interface, all behind
//! that interface's MAC, as HNS rewrites MACs. This kernel has no ipvlan,
//! so a Linux bridge enslaves the parent and nftables' bridge family does
//! the rewriting: frames leaving by the parent take its MAC (Ethernet and
//! ARP sender), and frames arriving for the parent's MAC are given the
//! endpoint's MAC by destination IP (a map kept per endpoint). Endpoints
//! on one host talk over the bridge at L2.
//!
//! l2tunnel: no shared L2 at all. Each endpoint is a veth whose host end
//! holds the gateway address (/32) and answers ARP for the rest of the
//! subnet (proxy ARP); a /32 route per endpoint leads to it. Every packet,
//! even between two endpoints of one host, is routed by the host and
//! passes its forward chain.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use crate::driver::{mtu, opt, parent_of, Driver};
use crate::nat::{self, BridgeSpec, DriverError, EndpointSpec};
use crate::netlink::{mac_str, Netlink, Route};
use crate::service::{Endpoint, Network};

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> DriverError {
    DriverError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

fn net_err(
    n: &Network,
    step: &'static str,
) -> impl FnOnce(crate::netlink::NetlinkError) -> DriverError {
    let network = n.name.clone();
    move |source| DriverError::Network {
        network,
        step,
        source,
    }
}

fn ep_err(
    id: &str,
    step: &'static str,
) -> impl FnOnce(crate::netlink::NetlinkError) -> DriverError {
    let endpoint = id.to_string();
    move |source| DriverError::Endpoint {
        endpoint,
        step,
        source,
    }
}

/// The l2bridge driver (`-d l2bridge`, and `-d ipvlan`, whose L2 mode it
/// stands in for: endpoints share the parent's MAC).
#[derive(Debug, Clone, Copy)]
pub struct L2Bridge;

fn l2_table(n: &Network) -> String {
    format!("silo-l2-{}", &n.id[..n.id.len().min(12)])
}

/// The rewriting table for parent `parent` (MAC `pmac`) with the
/// endpoints' addresses and MACs.
pub fn l2bridge_script(n: &Network, parent: &str, pmac: &str) -> String {
    let t = l2_table(n);
    let elements: Vec<String> = n
        .endpoints
        .values()
        .filter(|e| e.ip.is_ipv4())
        .map(|e| format!("{} : {}", e.ip, e.mac))
        .collect();
    let elements = if elements.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", elements.join(", "))
    };
    format!(
        "table bridge {t}\ndelete table bridge {t}\ntable bridge {t} {{\n  map macs {{ type ipv4_addr : ether_addr;{elements} }}\n  chain pre {{\n    type filter hook prerouting priority dstnat; policy accept;\n    iifname \"{parent}\" ether daddr {pmac} ether daddr set ip daddr map @macs\n    iifname \"{parent}\" ether daddr {pmac} arp daddr ip @macs ether daddr set arp daddr ip map @macs\n  }}\n  chain post {{\n    type filter hook postrouting priority srcnat; policy accept;\n    oifname \"{parent}\" ether saddr set {pmac}\n    oifname \"{parent}\" arp saddr ether set {pmac}\n  }}\n}}\n"
    )
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
        let existing = nl
            .link(&n.bridge)
            .map_err(net_err(n, "looking up the bridge"))?;
        if let Some(m) = p.master {
            if existing.as_ref().map(|b| b.index) != Some(m) {
                return Err(invalid(
                    "option parent",
                    format!("interface {parent} is busy: it is already enslaved to another bridge"),
                ));
            }
        }
        if existing.is_none() {
            let addrs = nl
                .addresses(p.index)
                .map_err(net_err(n, "listing the parent's addresses"))?;
            if addrs.iter().any(|(a, _)| a.is_ipv4()) {
                return Err(invalid(
                    "option parent",
                    format!("interface {parent} has IPv4 addresses; l2bridge takes the whole interface into a bridge, so give it one without addresses (the host's own address on that segment belongs on another interface)"),
                ));
            }
        }
        let pmac: [u8; 6] = p.mac.as_slice().try_into().map_err(|_| {
            invalid(
                "option parent",
                format!("interface {parent} has no Ethernet MAC"),
            )
        })?;
        let spec = BridgeSpec {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            gateways: vec![],
            mtu: None,
        };
        let index = nat::setup_bridge(nl, &spec)?;
        let made = (|| {
            // The bridge's own MAC must not be the parent's, or frames for
            // the parent's MAC would stop at the bridge.
            let b = n.id.as_bytes();
            nl.set_mac(index, [0x02, 0x5c, b[0], b[1], b[2], b[3]])
                .map_err(net_err(n, "setting the bridge's MAC"))?;
            nl.set_master(p.index, index)
                .map_err(net_err(n, "adding the parent to the bridge"))?;
            nl.set_up(p.index)
                .map_err(net_err(n, "bringing the parent interface up"))?;
            crate::nft::run(&l2bridge_script(n, &parent, &mac_str(pmac)), false)
                .map_err(|e| invalid(format!("network {}", n.name), format!("nftables: {e}")))?;
            Ok(index)
        })();
        if made.is_err() && existing.is_none() {
            let _ = self.teardown_network(nl, n);
        }
        made
    }

    fn teardown_network(&self, nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let t = l2_table(n);
        if let Err(e) = crate::nft::run(
            &format!("table bridge {t}\ndelete table bridge {t}\n"),
            false,
        ) {
            errors.push(e.to_string());
        }
        // Deleting the bridge frees the parent (which is the host's: it
        // stays).
        let spec = BridgeSpec {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            gateways: vec![],
            mtu: None,
        };
        if let Err(e) = nat::teardown_bridge(nl, &spec) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
        nat::setup_endpoint(nl, index, ep, ns)?;
        let t = l2_table(n);
        let ip = ep.addresses.first().map(|a| a.0);
        if let Some(ip @ IpAddr::V4(_)) = ip {
            let add = format!(
                "add element bridge {t} macs {{ {ip} : {} }}\n",
                mac_str(ep.mac)
            );
            if let Err(e) = crate::nft::run(&add, false) {
                let _ = nat::teardown_endpoint(nl, &ep.id, &ep.host_ifname);
                return Err(invalid(
                    format!("endpoint {}", ep.id),
                    format!("adding its MAC rewrite: {e}"),
                ));
            }
        }
        Ok(())
    }

    fn teardown_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError> {
        let t = l2_table(n);
        // The element first (a table already gone is fine).
        let _ = crate::nft::run(
            &format!("delete element bridge {t} macs {{ {} }}\n", ep.ip),
            false,
        );
        nat::teardown_endpoint(nl, &ep.id, &ep.host_ifname)
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

    fn setup_network(&self, _nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        // Nothing shared: only routing on.
        if !n.internal {
            sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        Ok(0)
    }

    fn teardown_network(&self, _nl: &mut Netlink, _n: &Network) -> Result<(), Vec<String>> {
        Ok(())
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

/// The namespace file of an endpoint, if it is still there.
pub(crate) fn endpoint_ns(ep: &Endpoint) -> Option<std::fs::File> {
    ep.netns.as_ref().and_then(|p| std::fs::File::open(p).ok())
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

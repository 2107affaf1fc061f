//! The overlay driver (HNS "Overlay"): one L2 network across hosts over
//! VXLAN. Per host, a VXLAN link, and on it macvlans in bridge mode: one
//! in the host holding the gateway address (the same on every host: a
//! distributed gateway, whose ARP never crosses the tunnel), and one per
//! endpoint made directly in the container's namespace. No bridge and no
//! veth: a frame goes from the container's macvlan straight into the
//! VXLAN link, and an arriving one is handed to its macvlan by MAC.
//! Learning is off: the hosts' endpoints are told to each other as HNS
//! remote endpoints (a forwarding entry to the remote VTEP plus a
//! permanent neighbour), and other hosts' subnets as remote subnet routes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;

use serde::{Deserialize, Serialize};

use crate::driver::{
    all_done, bool_opt, macvlan_endpoint, macvlan_teardown, mtu, net_err, opt, Driver,
};
use crate::firewall::{self, NetworkRules};
use crate::ipam::Subnet;
use crate::nat::{DriverError, EndpointSpec};
use crate::netlink::{Netlink, NetlinkError, Route};
use crate::service::{Endpoint, Network};

/// Options of an overlay network.
pub mod key {
    /// The VXLAN network identifier (Docker's option name, and a short one).
    pub const VNI_DOCKER: &str = "com.docker.network.driver.overlay.vxlanid_list";
    pub const VNI: &str = "vni";
    /// The VXLAN UDP port (default 4789).
    pub const PORT: &str = "vxlan_port";
    /// This host's underlay address (the VTEP, HNS's provider address).
    pub const LOCAL: &str = "local";
}

/// The IANA VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// VXLAN costs 50 bytes of a 1500-byte underlay.
pub const DEFAULT_MTU: u32 = 1450;

/// A remote endpoint (HNS's remote endpoint object): a container on
/// another host of the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    pub id: String,
    pub ip: IpAddr,
    /// Its MAC, as Linux prints it.
    pub mac: String,
    /// The VTEP of its host (HNS's ProviderAddress).
    pub provider: IpAddr,
    /// A name the embedded DNS server answers with its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A remote subnet (HNS's RemoteSubnetRoute): another host's subnet on
/// this overlay, routed through that host's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSubnet {
    pub id: String,
    pub prefix: Subnet,
    /// The VTEP of the host that holds it.
    pub provider: IpAddr,
    /// That host's bridge MAC (HNS's DistributedRouterMacAddress).
    pub router_mac: String,
}

/// The overlay network's settings, from its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
}

fn invalid(what: &str, reason: String) -> DriverError {
    DriverError::Invalid {
        what: format!("option {what}"),
        reason,
    }
}

/// Reads (and checks) the overlay options; a missing VNI is `default_vni`.
pub fn settings(
    options: &BTreeMap<String, String>,
    default_vni: u32,
) -> Result<Settings, DriverError> {
    if let (Some(a), Some(b)) = (options.get(key::VNI), options.get(key::VNI_DOCKER)) {
        if a != b {
            return Err(invalid(
                key::VNI,
                format!(
                    "{} says {a:?} and {} says {b:?}: give one",
                    key::VNI,
                    key::VNI_DOCKER
                ),
            ));
        }
    }
    let vni = match options.get(key::VNI).or(options.get(key::VNI_DOCKER)) {
        None => default_vni,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=0x00ff_ffff).contains(n))
            .ok_or_else(|| invalid(key::VNI, format!("{v:?} is not a VNI (1-16777215)")))?,
    };
    let port = match options.get(key::PORT) {
        None => DEFAULT_PORT,
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(key::PORT, format!("{v:?} is not a UDP port")))?,
    };
    let local = options
        .get(key::LOCAL)
        .map(|v| {
            v.parse::<Ipv4Addr>()
                .map_err(|_| invalid(key::LOCAL, format!("{v:?} is not an IPv4 address")))
        })
        .transpose()?;
    Ok(Settings { vni, port, local })
}

/// The VXLAN link's name for a network.
pub fn vxlan_name(n: &Network) -> String {
    format!("sx{}", &n.id[..n.id.len().min(11)])
}

/// The VNI of a network made without one: 4096 and up, as Docker's.
pub fn vni_of(n: &Network) -> u32 {
    settings(&n.options, 0).map(|s| s.vni).unwrap_or(0)
}

/// The gateway MAC of an overlay network on this host (fixed, so other
/// hosts can route remote subnets to it: HNS's DistributedRouterMacAddress).
pub fn bridge_mac(n: &Network) -> [u8; 6] {
    let b = n.id.as_bytes();
    let h = |i: usize| {
        b.get(2 * i..2 * i + 2)
            .and_then(|x| std::str::from_utf8(x).ok())
            .and_then(|x| u8::from_str_radix(x, 16).ok())
            .unwrap_or(0)
    };
    [0x02, 0x5d, h(0), h(1), h(2), h(3)]
}

/// Parses a MAC as Linux (or Windows, with dashes) prints it.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return None;
    }
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

fn table(n: &Network) -> String {
    format!("silo-ov-{}", &n.id[..n.id.len().min(12)])
}

/// The netdev table that keeps each host's gateway local: ARP for (or
/// from) the gateway address never leaves by the VXLAN link. Only frames
/// sent into that link pass the hook. (Not on ingress: a macvlan hands
/// frames for its neighbours to the link's receive path, so the local
/// gateway's own replies pass there; and since every host drops these on
/// the way out, none arrive from the tunnel.)
fn arp_script(n: &Network, vx: &str) -> String {
    let t = table(n);
    let gw = n.pool.gateway;
    crate::nft::replace_table(
        "netdev",
        &t,
        &format!(
            "  chain out {{\n    type filter hook egress device \"{vx}\" priority filter; policy accept;\n    arp daddr ip {gw} drop\n    arp saddr ip {gw} drop\n  }}\n"
        ),
    )
}

/// The overlay driver.
#[derive(Debug, Clone, Copy)]
pub struct Overlay;

/// Tells the kernel of one remote endpoint: frames for its MAC (and
/// broadcasts) go to its VTEP, and its address is at its MAC.
pub fn add_remote(
    nl: &mut Netlink,
    bridge: u32,
    vx: u32,
    r: &RemoteEndpoint,
) -> Result<(), NetlinkError> {
    let mac = parse_mac(&r.mac).unwrap_or_default();
    nl.fdb_add(vx, mac, r.provider)?;
    nl.fdb_add(vx, [0; 6], r.provider)?;
    nl.neigh_add(bridge, r.ip, mac)
}

/// Forgets one remote endpoint; the flood entry to its VTEP goes too
/// unless `vtep_in_use` (another remote endpoint is on that host).
pub fn remove_remote(
    nl: &mut Netlink,
    bridge: u32,
    vx: u32,
    r: &RemoteEndpoint,
    vtep_in_use: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mac = parse_mac(&r.mac).unwrap_or_default();
    if let Err(e) = nl.neigh_del(bridge, r.ip) {
        errors.push(e.to_string());
    }
    if let Err(e) = nl.fdb_del(vx, mac, r.provider) {
        errors.push(e.to_string());
    }
    if !vtep_in_use {
        if let Err(e) = nl.fdb_del(vx, [0; 6], r.provider) {
            errors.push(e.to_string());
        }
    }
    errors
}

fn subnet_route(s: &RemoteSubnet, bridge: u32) -> Route {
    Route {
        dst: s.prefix.addr,
        prefix: s.prefix.prefix,
        via: Some(s.provider),
        oif: Some(bridge),
        onlink: true,
        unreachable: false,
    }
}

/// Routes a remote subnet through its host's gateway: the VTEP address is
/// the next hop on our gateway link, at the remote gateway's MAC, which
/// the VXLAN link sends to that VTEP. `again` (a restart's replay): a
/// route already there is fine; otherwise it is an error (a route of the
/// host's own for that prefix would make the remote subnet unreachable).
pub fn add_remote_subnet(
    nl: &mut Netlink,
    bridge: u32,
    vx: u32,
    s: &RemoteSubnet,
    again: bool,
) -> Result<(), NetlinkError> {
    let mac = parse_mac(&s.router_mac).unwrap_or_default();
    nl.fdb_add(vx, mac, s.provider)?;
    nl.neigh_add(bridge, s.provider, mac)?;
    let r = subnet_route(s, bridge);
    match nl.add_route(&r) {
        Err(e) if again && e.errno() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Removes a remote subnet's route, and its next hop's entries unless
/// `hop_in_use` (another remote subnet goes through the same host and
/// MAC); carries on past failures.
pub fn remove_remote_subnet(
    nl: &mut Netlink,
    bridge: u32,
    vx: u32,
    s: &RemoteSubnet,
    hop_in_use: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mac = parse_mac(&s.router_mac).unwrap_or_default();
    if let Err(e) = nl.del_route(&subnet_route(s, bridge)) {
        errors.push(e.to_string());
    }
    if !hop_in_use {
        if let Err(e) = nl.neigh_del(bridge, s.provider) {
            errors.push(e.to_string());
        }
        if let Err(e) = nl.fdb_del(vx, mac, s.provider) {
            errors.push(e.to_string());
        }
    }
    errors
}

impl Driver for Overlay {
    fn hns_type(&self) -> &'static str {
        "Overlay"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError> {
        for k in options.keys() {
            let known = [key::VNI, key::VNI_DOCKER, key::PORT, key::LOCAL, opt::MTU];
            if !known.contains(&k.as_str()) {
                return Err(invalid(
                    k,
                    format!(
                        "the overlay driver does not support it (it takes {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        settings(options, 1)?;
        mtu(options)?;
        Ok(())
    }

    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        let s = settings(&n.options, 0)?;
        let link_mtu = mtu(&n.options)?.unwrap_or(DEFAULT_MTU);
        let err = |step| net_err(n, step);
        let vx_name = vxlan_name(n);
        let had = nl
            .link(&vx_name)
            .map_err(err("looking up the VXLAN link"))?;
        let made = (|| {
            let vx = match &had {
                Some(l) => l.index,
                None => {
                    let vx = nl
                        .add_vxlan(&vx_name, s.vni, s.port, s.local)
                        .map_err(|e| match e.errno() {
                            Some(libc::EEXIST) => invalid(
                                key::VNI,
                                format!(
                                    "VNI {} on port {} is in use by another VXLAN link",
                                    s.vni, s.port
                                ),
                            ),
                            _ => err("creating the VXLAN link")(e),
                        })?;
                    nl.set_mtu(vx, link_mtu)
                        .map_err(err("setting the VXLAN link's MTU"))?;
                    nl.set_up(vx).map_err(|e| match e.errno() {
                        Some(libc::EADDRINUSE) => invalid(
                            key::PORT,
                            format!(
                                "UDP port {} is in use by another program (not a VXLAN link)",
                                s.port
                            ),
                        ),
                        _ => err("bringing the VXLAN link up")(e),
                    })?;
                    vx
                }
            };
            // The host's own macvlan holds the gateway.
            let gw = match nl
                .link(&n.bridge)
                .map_err(err("looking up the gateway link"))?
            {
                Some(l) => l.index,
                None => {
                    nl.add_macvlan(&n.bridge, vx, None)
                        .map_err(err("creating the gateway link"))?;
                    let gw = nl
                        .link(&n.bridge)
                        .map_err(err("looking up the gateway link"))?
                        .map(|l| l.index)
                        .ok_or_else(|| {
                            invalid(&n.bridge, "the gateway link did not appear".into())
                        })?;
                    nl.set_mac(gw, bridge_mac(n))
                        .map_err(err("setting the gateway's MAC"))?;
                    nl.add_address(gw, n.pool.gateway, n.pool.subnet.prefix)
                        .map_err(err("giving the gateway link its address"))?;
                    nl.set_up(gw).map_err(err("bringing the gateway link up"))?;
                    gw
                }
            };
            for r in &n.remotes {
                add_remote(nl, gw, vx, r).map_err(err("adding a remote endpoint"))?;
            }
            for r in &n.remote_subnets {
                add_remote_subnet(nl, gw, vx, r, true).map_err(err("adding a remote subnet"))?;
            }
            crate::nft::run(&arp_script(n, &vx_name), false)
                .map_err(|e| invalid(&format!("network {}", n.name), format!("nftables: {e}")))?;
            let subnets = [n.pool.subnet];
            firewall::apply(&NetworkRules {
                id: &n.id,
                bridge: &n.bridge,
                subnets: &subnets,
                internal: n.internal,
                masquerade: bool_opt(&n.options, opt::MASQUERADE)?,
            })
            .map_err(|e| invalid(&format!("network {}", n.name), e.to_string()))?;
            if !n.internal {
                let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
            }
            Ok(gw)
        })();
        if made.is_err() && had.is_none() {
            let _ = self.teardown_network(nl, n);
        }
        made
    }

    fn teardown_network(&self, nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Err(e) = firewall::remove(&n.id) {
            errors.push(e.to_string());
        }
        let t = table(n);
        if let Err(e) = crate::nft::run(&crate::nft::drop_table("netdev", &t), false) {
            errors.push(e.to_string());
        }
        // The gateway macvlan goes with its VXLAN link.
        for name in [n.bridge.clone(), vxlan_name(n)] {
            match nl.link(&name) {
                Ok(Some(l)) => match nl.del_link(l.index) {
                    Err(e) if e.errno() == Some(libc::ENODEV) => {}
                    Err(e) => errors.push(e.to_string()),
                    Ok(()) => {}
                },
                Ok(None) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        all_done(errors)
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        _n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
        // `index` is the gateway macvlan: a macvlan made on it lands on
        // the same VXLAN link (and takes its MTU).
        macvlan_endpoint(nl, index, ep, ns)
    }

    fn teardown_endpoint(
        &self,
        _nl: &mut Netlink,
        _n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError> {
        macvlan_teardown(ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_macs_and_the_gateway_filter() {
        let o = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(settings(&o(key::VNI, "4100"), 1).unwrap().vni, 4100);
        assert_eq!(settings(&o(key::VNI_DOCKER, "7"), 1).unwrap().vni, 7);
        assert_eq!(settings(&BTreeMap::new(), 4096).unwrap().port, DEFAULT_PORT);
        assert!(settings(&o(key::VNI, "0"), 1).is_err());
        assert!(settings(&o(key::VNI, "16777216"), 1).is_err());
        assert!(settings(&o(key::PORT, "70000"), 1).is_err());
        assert!(settings(&o(key::LOCAL, "10.0.0.300"), 1).is_err());
        assert!(Overlay.validate(&o("parent", "eth0")).is_err());
        assert_eq!(parse_mac("02-42-0A-00-00-05"), Some([2, 0x42, 10, 0, 0, 5]));
        assert_eq!(parse_mac("02:42:0a:00:00"), None);
        assert_eq!(parse_mac("02:42:0a:00:00:zz"), None);
    }
}

//! The driver seam (HNS network types): one small trait that says how a
//! network's shared kernel objects and each of its endpoints are made and
//! unmade. The service owns state, IPAM, ports and DNS; a driver only
//! validates options and touches the kernel. `nat` is the first driver;
//! transparent, l2bridge, l2tunnel and overlay fit the same four calls.
//!
//! Setup is a transaction (a failure leaves nothing of it); teardown
//! carries on past a failure and reports it. Every call takes the netlink
//! socket of the namespace it acts on (the service's, opened by the caller).

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;

use crate::firewall::{self, NetworkRules};
use crate::nat::{self, BridgeSpec, DriverError, EndpointSpec};
use crate::netlink::Netlink;
use crate::service::{Endpoint, Network};

/// What a driver must do.
pub trait Driver: Send + Sync {
    /// The HNS type name of its networks ("NAT").
    fn hns_type(&self) -> &'static str;
    /// Checks a network's driver options before anything is made; unknown
    /// options are refused, never ignored.
    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError>;
    /// Makes (idempotently) the network's shared objects; returns the
    /// interface index endpoints attach to.
    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError>;
    /// Removes the network's shared objects (missing ones are fine).
    fn teardown_network(&self, nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>>;
    /// Connects one endpoint (its namespace `ns`) to the network whose
    /// shared interface is `index`.
    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError>;
    /// Removes one endpoint's objects (missing ones are fine).
    fn teardown_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError>;
}

/// Docker's bridge options that the nat driver honours.
pub mod opt {
    pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
    pub const MTU: &str = "com.docker.network.driver.mtu";
    pub const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
    pub const ICC: &str = "com.docker.network.bridge.enable_icc";
    pub const HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
}

/// The canonical driver name for a name users give (Docker's `bridge`
/// is nat, `macvlan` transparent, `ipvlan` l2bridge).
pub fn canonical(name: &str) -> Option<&'static str> {
    Some(match name {
        "" | "nat" | "bridge" => "nat",
        "transparent" | "macvlan" => "transparent",
        "l2bridge" | "ipvlan" => "l2bridge",
        "l2tunnel" => "l2tunnel",
        "overlay" => "overlay",
        _ => return None,
    })
}

/// A failed step of network `n`'s setup, as a `map_err` argument.
pub(crate) fn net_err(
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

/// A failed step of endpoint `id`'s setup, as a `map_err` argument.
pub(crate) fn ep_err(
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

/// A teardown's collected failures as its result.
pub(crate) fn all_done(errors: Vec<String>) -> Result<(), Vec<String>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The driver for a network's driver name.
pub fn for_name(name: &str) -> Option<&'static dyn Driver> {
    match name {
        "nat" | "bridge" | "" => Some(&Nat),
        "transparent" | "macvlan" => Some(&Transparent),
        "l2bridge" | "ipvlan" => Some(&crate::l2::L2Bridge),
        "l2tunnel" => Some(&crate::l2::L2Tunnel),
        "overlay" => Some(&crate::overlay::Overlay),
        _ => None,
    }
}

/// The parent interface option of a transparent network (Docker's
/// `parent`, or Windows' `com.docker.network.windowsshim.interface`).
pub fn parent_of(options: &BTreeMap<String, String>) -> Option<&str> {
    options
        .get("parent")
        .or_else(|| options.get("com.docker.network.windowsshim.interface"))
        .map(String::as_str)
        .filter(|p| !p.is_empty())
}

/// The transparent driver (HNS "Transparent"): endpoints sit on the L2
/// segment of a host interface, each a macvlan (bridge mode) of it made
/// directly in the container's namespace, with addresses from the
/// network's static IPAM and the subnet's gateway as default route. No
/// NAT and no nftables: the segment's own router and firewall apply.
#[derive(Debug, Clone, Copy)]
pub struct Transparent;

impl Driver for Transparent {
    fn hns_type(&self) -> &'static str {
        "Transparent"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError> {
        for (k, v) in options {
            match k.as_str() {
                "parent" | "com.docker.network.windowsshim.interface" => {
                    if !nat::valid_ifname(v) {
                        return Err(DriverError::Invalid {
                            what: format!("option {k}"),
                            reason: format!("{v:?} is not a Linux interface name"),
                        });
                    }
                }
                "macvlan_mode" if v == "bridge" => {}
                other => {
                    return Err(DriverError::Invalid {
                        what: format!("option {other}"),
                        reason:
                            "the transparent driver takes parent=IFACE (and macvlan_mode=bridge)"
                                .into(),
                    })
                }
            }
        }
        if parent_of(options).is_none() {
            return Err(DriverError::Invalid {
                what: "option parent".into(),
                reason: "a transparent (macvlan) network needs -o parent=IFACE".into(),
            });
        }
        Ok(())
    }

    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        let parent = parent_of(&n.options).unwrap_or(&n.bridge);
        let err = |step| net_err(n, step);
        let link = nl
            .link(parent)
            .map_err(err("looking up the parent interface"))?
            .ok_or_else(|| DriverError::Invalid {
                what: "option parent".into(),
                reason: format!("interface {parent} does not exist"),
            })?;
        nl.set_up(link.index)
            .map_err(err("bringing the parent interface up"))?;
        Ok(link.index)
    }

    fn teardown_network(&self, _nl: &mut Netlink, _n: &Network) -> Result<(), Vec<String>> {
        // The parent is the host's: nothing of ours to remove.
        Ok(())
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        _n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
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

/// An endpoint that is a macvlan (bridge mode) of `index`, made directly in
/// the container's namespace (transparent, overlay). On failure nothing
/// of it remains.
pub(crate) fn macvlan_endpoint(
    nl: &mut Netlink,
    index: u32,
    ep: &EndpointSpec,
    ns: BorrowedFd<'_>,
) -> Result<(), DriverError> {
    let err = |step| ep_err(&ep.id, step);
    let tmp = format!("{}p", &ep.host_ifname[..ep.host_ifname.len().min(14)]);
    nl.add_macvlan(&tmp, index, Some(ns))
        .map_err(err("creating the macvlan"))?;
    let inside = nat::in_netns(ns, |nl| {
        let done = nat::configure_inside(nl, &tmp, ep);
        if done.is_err() {
            // Under whichever name it has by now.
            for name in [tmp.as_str(), ep.ifname.as_str()] {
                if let Ok(Some(l)) = nl.link(name) {
                    let _ = nl.del_link(l.index);
                    break;
                }
            }
        }
        done
    })
    .map_err(|source| DriverError::Namespace {
        endpoint: ep.id.clone(),
        source,
    })?;
    inside.map_err(err("configuring the macvlan"))
}

/// Removes a macvlan endpoint, in the container's namespace (a namespace
/// already gone took it along).
pub(crate) fn macvlan_teardown(ep: &Endpoint) -> Result<(), DriverError> {
    let Some(f) = crate::l2::endpoint_ns(ep) else {
        return Ok(());
    };
    use std::os::fd::AsFd;
    let r = nat::in_netns(f.as_fd(), |nl| match nl.link(&ep.ifname)? {
        Some(l) => nl.del_link(l.index),
        None => Ok(()),
    })
    .map_err(|source| DriverError::Namespace {
        endpoint: ep.id.clone(),
        source,
    })?;
    r.map_err(|source| DriverError::Endpoint {
        endpoint: ep.id.clone(),
        step: "deleting the macvlan",
        source,
    })
}

/// The nat driver: a Linux bridge whose address is the gateway, a veth
/// pair per endpoint, masquerade and isolation in nftables; `enable_icc`
/// off isolates the endpoints' bridge ports from each other.
#[derive(Debug, Clone, Copy)]
pub struct Nat;

pub(crate) fn bool_opt(options: &BTreeMap<String, String>, key: &str) -> Result<bool, DriverError> {
    match options.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(DriverError::Invalid {
            what: format!("option {key}"),
            reason: format!("{v:?} is not true or false"),
        }),
    }
}

/// The MTU option, if given.
pub fn mtu(options: &BTreeMap<String, String>) -> Result<Option<u32>, DriverError> {
    options
        .get(opt::MTU)
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| DriverError::Invalid {
                    what: format!("option {}", opt::MTU),
                    reason: format!("{v:?} is not an MTU (68-65535)"),
                })
        })
        .transpose()
}

impl Driver for Nat {
    fn hns_type(&self) -> &'static str {
        "NAT"
    }

    fn validate(&self, options: &BTreeMap<String, String>) -> Result<(), DriverError> {
        for k in options.keys() {
            let known = [
                opt::BRIDGE_NAME,
                opt::MTU,
                opt::MASQUERADE,
                opt::ICC,
                opt::HOST_BINDING,
            ];
            if !known.contains(&k.as_str()) {
                return Err(DriverError::Invalid {
                    what: format!("option {k}"),
                    reason: format!(
                        "the nat driver does not support it (it takes {})",
                        known.join(", ")
                    ),
                });
            }
        }
        if let Some(b) = options.get(opt::BRIDGE_NAME) {
            if !nat::valid_ifname(b) {
                return Err(DriverError::Invalid {
                    what: format!("option {}", opt::BRIDGE_NAME),
                    reason: format!("{b:?} is not a Linux interface name (1-15 bytes)"),
                });
            }
        }
        mtu(options)?;
        bool_opt(options, opt::MASQUERADE)?;
        bool_opt(options, opt::ICC)?;
        if let Some(ip) = options.get(opt::HOST_BINDING) {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(DriverError::Invalid {
                    what: format!("option {}", opt::HOST_BINDING),
                    reason: format!("{ip:?} is not an IPv4 address"),
                });
            }
        }
        Ok(())
    }

    fn setup_network(&self, nl: &mut Netlink, n: &Network) -> Result<u32, DriverError> {
        let spec = BridgeSpec {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            gateways: std::iter::once(&n.pool)
                .chain(&n.pool6)
                .map(|p| (p.gateway, p.subnet.prefix))
                .collect(),
            mtu: mtu(&n.options)?,
        };
        let index = nat::setup_bridge(nl, &spec)?;
        let subnets: Vec<_> = std::iter::once(&n.pool)
            .chain(&n.pool6)
            .map(|p| p.subnet)
            .collect();
        let rules = NetworkRules {
            id: &n.id,
            bridge: &n.bridge,
            subnets: &subnets,
            internal: n.internal,
            masquerade: bool_opt(&n.options, opt::MASQUERADE)?,
        };
        if let Err(e) = firewall::apply(&rules) {
            let _ = nat::teardown_bridge(nl, &spec);
            return Err(DriverError::Invalid {
                what: format!("network {}", n.name),
                reason: e.to_string(),
            });
        }
        if !n.internal {
            // Outbound needs forwarding (as dockerd sets it); published
            // ports reached from 127.0.0.1 need loopback sources routed
            // onto the bridge.
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
            if n.pool6.is_some() {
                let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1");
            }
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge),
                "1",
            );
        }
        Ok(index)
    }

    fn teardown_network(&self, nl: &mut Netlink, n: &Network) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Err(e) = firewall::remove(&n.id) {
            errors.push(e.to_string());
        }
        let spec = BridgeSpec {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            gateways: vec![],
            mtu: None,
        };
        if let Err(e) = nat::teardown_bridge(nl, &spec) {
            errors.push(e.to_string());
        }
        all_done(errors)
    }

    fn setup_endpoint(
        &self,
        nl: &mut Netlink,
        n: &Network,
        index: u32,
        ep: &EndpointSpec,
        ns: BorrowedFd<'_>,
    ) -> Result<(), DriverError> {
        let mut ep = ep.clone();
        ep.mtu = ep.mtu.or(mtu(&n.options)?);
        ep.isolated = !bool_opt(&n.options, opt::ICC)?;
        nat::setup_endpoint(nl, index, &ep, ns)
    }

    fn teardown_endpoint(
        &self,
        nl: &mut Netlink,
        _n: &Network,
        ep: &Endpoint,
    ) -> Result<(), DriverError> {
        nat::teardown_endpoint(nl, &ep.id, &ep.host_ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_unknown_ones_refused() {
        let o = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(Nat.validate(&o(opt::MTU, "1400")).is_ok());
        assert!(Nat.validate(&o(opt::MTU, "12")).is_err());
        assert!(Nat.validate(&o(opt::ICC, "false")).is_ok());
        assert!(Nat.validate(&o(opt::ICC, "maybe")).is_err());
        assert!(Nat
            .validate(&o(opt::BRIDGE_NAME, "br-way-too-long-name"))
            .is_err());
        assert!(Nat.validate(&o(opt::HOST_BINDING, "10.0.0.1")).is_ok());
        assert!(Nat.validate(&o(opt::HOST_BINDING, "::1")).is_err());
        let e = Nat
            .validate(&o("com.docker.network.bridge.gateway_mode_ipv4", "routed"))
            .unwrap_err();
        assert!(e.to_string().contains("gateway_mode_ipv4"), "{e}");
        assert!(for_name("bridge").is_some() && for_name("macvlan").is_some());
        assert!(for_name("hyperv").is_none());
        assert_eq!(canonical("ipvlan"), Some("l2bridge"));
        // The transparent driver needs a parent, and takes nothing else.
        assert!(Transparent.validate(&o("parent", "eth0")).is_ok());
        assert!(Transparent
            .validate(&o("com.docker.network.windowsshim.interface", "eth1"))
            .is_ok());
        assert!(Transparent.validate(&BTreeMap::new()).is_err());
        assert!(Transparent.validate(&o("parent", "a/b")).is_err());
        assert!(Transparent.validate(&o("parent", "x\" drop; #")).is_err());
        assert!(Transparent.validate(&o("parent", "eth0.100")).is_ok());
        assert!(Transparent.validate(&o(opt::MTU, "1400")).is_err());
    }
}

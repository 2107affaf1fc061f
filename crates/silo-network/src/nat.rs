//! The nat driver's kernel side (HNS "nat"): a Linux bridge per network
//! whose address is the gateway, and per endpoint a veth pair, one end on
//! the bridge and the other in the container's namespace with its MAC,
//! addresses and default route. Endpoint setup is a transaction: a failure
//! at any step removes the veth (its peer goes with it). Teardown carries on
//! past a failure and reports every one. (Masquerade, isolation and port
//! mappings are nftables work that comes with the service.)

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use thiserror::Error;

use crate::netlink::{Netlink, NetlinkError};

/// One step of the driver failed.
#[derive(Debug, Error)]
pub enum DriverError {
    #[error("network {network}: {step}: {source}")]
    Network {
        network: String,
        step: &'static str,
        source: NetlinkError,
    },
    #[error("endpoint {endpoint}: {step}: {source}")]
    Endpoint {
        endpoint: String,
        step: &'static str,
        source: NetlinkError,
    },
    #[error("endpoint {endpoint}: entering its network namespace: {source}")]
    Namespace {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// A nat network as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub network: String,
    /// The bridge's interface name (at most 15 bytes).
    pub bridge: String,
    /// Gateway addresses of the network's subnets, with their prefixes.
    pub gateways: Vec<(IpAddr, u8)>,
    /// The bridge's MTU (None: the kernel's default).
    pub mtu: Option<u32>,
}

/// One endpoint to set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub id: String,
    /// The host end's name (at most 15 bytes, unique on the host).
    pub host_ifname: String,
    /// The container end's name ("eth0").
    pub ifname: String,
    pub mac: [u8; 6],
    pub addresses: Vec<(IpAddr, u8)>,
    /// The default route's gateway, for the container's first network.
    pub default_gateway: Option<IpAddr>,
    /// The IPv6 default route's gateway, on an IPv6 network.
    pub default_gateway6: Option<IpAddr>,
    /// The MTU of both ends (None: the kernel's default).
    pub mtu: Option<u32>,
    /// An isolated bridge port: no traffic with the network's other
    /// isolated ports (Docker's enable_icc=false), only with the gateway.
    pub isolated: bool,
}

/// Interface names silo accepts: 1 to 15 bytes of letters, digits and
/// `_ . -` (Linux allows more, but these names are also written into
/// nftables scripts, where a quote or a brace must never arrive).
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Runs `f` with a netlink socket inside the namespace `ns`, on a thread of
/// its own (setns acts on the calling thread only; never on the caller's).
pub fn in_netns<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce(&mut Netlink) -> Result<T, NetlinkError> + Send,
) -> Result<Result<T, NetlinkError>, std::io::Error> {
    in_ns(ns, || Netlink::open().and_then(|mut nl| f(&mut nl)))
}

/// Runs `f` inside the namespace `ns` on a thread of its own (for work
/// that opens its own sockets there, such as nftables).
pub fn in_ns<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on an fd the caller keeps open for the call; it
            // moves only this short-lived thread.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

fn net_err<'a>(
    spec: &'a BridgeSpec,
    step: &'static str,
) -> impl FnOnce(NetlinkError) -> DriverError + 'a {
    move |source| DriverError::Network {
        network: spec.network.clone(),
        step,
        source,
    }
}

/// Creates the bridge if it is missing, gives it the gateway addresses and
/// brings it up. Idempotent (a restart re-runs it).
pub fn setup_bridge(host: &mut Netlink, spec: &BridgeSpec) -> Result<u32, DriverError> {
    if !valid_ifname(&spec.bridge) {
        return Err(DriverError::Invalid {
            what: "bridge name".into(),
            reason: format!(
                "{:?} is not a Linux interface name (1-15 bytes)",
                spec.bridge
            ),
        });
    }
    let existing = host
        .link(&spec.bridge)
        .map_err(net_err(spec, "looking up the bridge"))?;
    let (index, made) = match existing {
        Some(l) => (l.index, false),
        None => (
            host.add_bridge(&spec.bridge)
                .map_err(net_err(spec, "creating the bridge"))?,
            true,
        ),
    };
    let result = (|| {
        let have = host
            .addresses(index)
            .map_err(net_err(spec, "listing the bridge's addresses"))?;
        for (a, p) in &spec.gateways {
            if !have.contains(&(*a, *p)) {
                host.add_address(index, *a, *p)
                    .map_err(net_err(spec, "adding the gateway address"))?;
            }
        }
        if let Some(mtu) = spec.mtu {
            host.set_mtu(index, mtu)
                .map_err(net_err(spec, "setting the bridge's MTU"))?;
        }
        host.set_up(index)
            .map_err(net_err(spec, "bringing the bridge up"))
    })();
    if let Err(e) = result {
        if made {
            let _ = host.del_link(index);
        }
        return Err(e);
    }
    Ok(index)
}

/// Deletes the bridge (missing is fine).
pub fn teardown_bridge(host: &mut Netlink, spec: &BridgeSpec) -> Result<(), DriverError> {
    match host
        .link(&spec.bridge)
        .map_err(net_err(spec, "looking up the bridge"))?
    {
        Some(l) => host
            .del_link(l.index)
            .map_err(net_err(spec, "deleting the bridge")),
        None => Ok(()),
    }
}

/// Sets up an endpoint on the bridge `bridge` (its index) for the
/// namespace `ns`. On failure nothing of it remains.
pub fn setup_endpoint(
    host: &mut Netlink,
    bridge: u32,
    ep: &EndpointSpec,
    ns: BorrowedFd<'_>,
) -> Result<(), DriverError> {
    for (what, n) in [
        ("host interface name", &ep.host_ifname),
        ("interface name", &ep.ifname),
    ] {
        if !valid_ifname(n) {
            return Err(DriverError::Invalid {
                what: what.into(),
                reason: format!("{n:?} is not a Linux interface name (1-15 bytes)"),
            });
        }
    }
    let err = |step: &'static str| {
        let endpoint = ep.id.clone();
        move |source| DriverError::Endpoint {
            endpoint,
            step,
            source,
        }
    };
    // The peer arrives under a temporary name, renamed inside, so an
    // "eth0" already in the namespace is a clear error, not a clash here.
    let tmp_peer = format!("{}p", &ep.host_ifname[..ep.host_ifname.len().min(14)]);
    let veth = host
        .add_veth(&ep.host_ifname, &tmp_peer, ns)
        .map_err(err("creating the veth pair"))?;
    let result = (|| {
        if let Some(mtu) = ep.mtu {
            host.set_mtu(veth, mtu)
                .map_err(err("setting the host end's MTU"))?;
        }
        host.set_master(veth, bridge)
            .map_err(err("adding the veth to the bridge"))?;
        if ep.isolated {
            host.set_bridge_port(veth, vec![crate::netlink::InfoBridgePort::Isolated(true)])
                .map_err(err("isolating the bridge port"))?;
        }
        host.set_up(veth).map_err(err("bringing the host end up"))?;
        let inside = in_netns(ns, |nl| configure_inside(nl, &tmp_peer, ep)).map_err(|source| {
            DriverError::Namespace {
                endpoint: ep.id.clone(),
                source,
            }
        })?;
        inside.map_err(err("configuring the container end"))
    })();
    if let Err(e) = result {
        let _ = host.del_link(veth);
        return Err(e);
    }
    Ok(())
}

/// Inside the container's namespace: the interface that arrived as `tmp`
/// becomes the endpoint (its name, MAC, MTU, addresses, up, default
/// routes). Shared by the drivers whose endpoint is one link in there.
pub(crate) fn configure_inside(
    nl: &mut Netlink,
    tmp: &str,
    ep: &EndpointSpec,
) -> Result<(), NetlinkError> {
    let link = nl.link(tmp)?.ok_or_else(|| NetlinkError::Decode {
        what: "finding the container end".into(),
        message: format!("{tmp} did not arrive"),
    })?;
    nl.rename(link.index, &ep.ifname)?;
    nl.set_mac(link.index, ep.mac)?;
    if let Some(mtu) = ep.mtu {
        nl.set_mtu(link.index, mtu)?;
    }
    for (a, p) in &ep.addresses {
        nl.add_address(link.index, *a, *p)?;
    }
    nl.set_up(link.index)?;
    for gw in ep.default_gateway.iter().chain(&ep.default_gateway6) {
        nl.add_default_route(*gw)?;
    }
    Ok(())
}

/// Removes an endpoint's veth (missing is fine: the namespace may be gone,
/// which takes the pair with it).
pub fn teardown_endpoint(
    host: &mut Netlink,
    ep_id: &str,
    host_ifname: &str,
) -> Result<(), DriverError> {
    let err = |step: &'static str| {
        let endpoint = ep_id.to_string();
        move |source| DriverError::Endpoint {
            endpoint,
            step,
            source,
        }
    };
    match host.link(host_ifname).map_err(err("looking up the veth"))? {
        Some(l) => match host.del_link(l.index) {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(err("deleting the veth")),
        },
        None => Ok(()),
    }
}

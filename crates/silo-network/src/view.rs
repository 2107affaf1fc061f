//! The HNS view: networks, endpoints and policies as JSON shaped like the
//! Windows Host Networking Service's objects (ID, Name, Type, Subnets,
//! MacPools, Policies, the endpoint counts and, per endpoint, its address,
//! MAC and packet and byte counters), for `silo hns …` and `/hns/…`.

use serde_json::{json, Value};

use crate::ipam::mac_for;
use crate::netlink::Netlink;
use crate::{Endpoint, Network};

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// A network as HNS shows one.
pub fn network(n: &Network) -> Value {
    let pools = match (n.pool.subnet.addr, n.pool.subnet.prefix) {
        (std::net::IpAddr::V4(a), p) => {
            let first = u32::from(a);
            let last = first | (u32::MAX >> p);
            vec![json!({
                "StartMacAddress": mac_text(mac_for(first.saturating_add(1).into())),
                "EndMacAddress": mac_text(mac_for(last.saturating_sub(1).into())),
            })]
        }
        _ => vec![],
    };
    let mut policies: Vec<Value> = Vec::new();
    let mut extra = serde_json::Map::new();
    if n.driver == "overlay" {
        let s = crate::overlay::settings(&n.options, 0).ok();
        policies.push(json!({
            "Type": "VSID",
            "Settings": { "IsolationId": s.map(|s| s.vni) },
        }));
        for r in &n.remote_subnets {
            policies.push(json!({
                "Type": "RemoteSubnetRoute",
                "Settings": {
                    "ID": r.id,
                    "DestinationPrefix": r.prefix.to_string(),
                    "ProviderAddress": r.provider.to_string(),
                    "DistributedRouterMacAddress": r.router_mac.replace(':', "-").to_uppercase(),
                    "IsolationId": s.map(|s| s.vni),
                },
            }));
        }
        extra.insert("VxlanPort".into(), json!(s.map(|s| s.port)));
        extra.insert(
            "DistributedRouterMacAddress".into(),
            json!(mac_text(crate::overlay::bridge_mac(n))),
        );
        extra.insert(
            "RemoteEndpoints".into(),
            n.remotes
                .iter()
                .map(|r| {
                    json!({
                        "ID": r.id,
                        "IPAddress": r.ip.to_string(),
                        "MacAddress": r.mac.replace(':', "-").to_uppercase(),
                        "ProviderAddress": r.provider.to_string(),
                        "Name": r.name,
                        "IsRemoteEndpoint": true,
                    })
                })
                .collect::<Value>(),
        );
    }
    let mut v = json!({
        "ID": n.id,
        "Name": n.name,
        "Type": crate::driver::for_name(&n.driver).map_or(n.driver.as_str(), |d| d.hns_type()),
        "Subnets": [{
            "AddressPrefix": n.pool.subnet.to_string(),
            "GatewayAddress": n.pool.gateway.to_string(),
        }],
        "MacPools": pools,
        "Policies": policies,
        "Internal": n.internal,
        "NetworkAdapterName": n.bridge,
        "CurrentEndpointCount": n.endpoints.len(),
        "MaxConcurrentEndpoints": n.max_concurrent_endpoints,
        "TotalEndpoints": n.total_endpoints,
    });
    if let Some(o) = v.as_object_mut() {
        o.extend(extra);
    }
    v
}

/// An endpoint as HNS shows one; the counters are read from its host
/// interface with `nl` (sent by the container = received by the host end).
pub fn endpoint(n: &Network, ep: &Endpoint, nl: Option<&mut Netlink>) -> Value {
    let counters = nl
        .and_then(|nl| nl.link(&ep.host_ifname).ok().flatten())
        .and_then(|l| l.counters);
    let (rxp, txp, rxb, txb) = counters.unwrap_or_default();
    json!({
        "ID": ep.id,
        "Name": ep.host_ifname,
        "VirtualNetwork": n.id,
        "VirtualNetworkName": n.name,
        "IPAddress": ep.ip.to_string(),
        "PrefixLength": ep.prefix,
        "MacAddress": ep.mac.replace(':', "-").to_uppercase(),
        "GatewayAddress": n.pool.gateway.to_string(),
        "Policies": policies(ep),
        "SharedContainers": [ep.owner],
        "Aliases": ep.aliases,
        "Counters": {
            "PacketsSent": rxp,
            "PacketsReceived": txp,
            "BytesSent": rxb,
            "BytesReceived": txb,
        },
    })
}

/// An endpoint's policies as HNS (v2) shows them: each published port a
/// PortMapping with the IANA protocol number.
pub fn policies(ep: &Endpoint) -> Vec<Value> {
    let added = ep
        .policies
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or_default());
    ep.ports
        .iter()
        .map(|m| {
            let proto = match m.protocol {
                crate::ports::Protocol::Tcp => 6,
                crate::ports::Protocol::Udp => 17,
                crate::ports::Protocol::Sctp => 132,
            };
            json!({
                "Type": "PortMapping",
                "Settings": {
                    "Protocol": proto,
                    "InternalPort": m.container_port,
                    "ExternalPort": m.host_port,
                    "VIP": m.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                },
            })
        })
        .chain(added)
        .collect()
}

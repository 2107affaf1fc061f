//! Endpoint policies, with HNS's names and JSON shape (`{"Type": …,
//! "Settings": {…}}`), realised on Linux:
//! - ACL: allow or block rules by direction, protocol, addresses and
//!   ports, ordered by priority, in an nftables table of the endpoint's
//!   own (`inet silo-acl-<id12>`) inside the container's namespace, so they
//!   hold whatever the driver (a macvlan never crosses the host);
//! - QOS: a token bucket on the container's interface (tc `tbf` over
//!   netlink) caps outgoing bandwidth;
//! - OutBoundNAT: masquerade of the endpoint's traffic leaving the host,
//!   except to the exception prefixes, in the host table `ip silo-outbound`
//!   (rebuilt whole from the records in one transaction per change);
//! - Route: an extra route in the container's namespace.
//!
//! PortMapping (published ports) is made at start with `-p` and listed
//! with these. Policy settings are parsed strictly: an unknown field is
//! an error, never ignored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ipam::Subnet;

/// A policy was refused; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("the {kind} policy does not apply to {driver} networks: {reason}")]
    Driver {
        kind: &'static str,
        driver: String,
        reason: &'static str,
    },
}

/// One policy on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(flatten)]
    pub kind: PolicyKind,
}

/// The policy types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Type", content = "Settings", deny_unknown_fields)]
pub enum PolicyKind {
    #[serde(rename = "ACL")]
    Acl(Acl),
    #[serde(rename = "QOS")]
    Qos(Qos),
    #[serde(rename = "OutBoundNAT")]
    OutBoundNat(OutBoundNat),
    #[serde(rename = "Route")]
    Route(RoutePolicy),
}

impl PolicyKind {
    /// Its HNS type name.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyKind::Acl(_) => "ACL",
            PolicyKind::Qos(_) => "QOS",
            PolicyKind::OutBoundNat(_) => "OutBoundNAT",
            PolicyKind::Route(_) => "Route",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclAction {
    Allow,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    In,
    Out,
}

/// An ACL rule. Addresses are comma-separated IPs or prefixes; ports a
/// port or a range `a-b`; protocols an IANA number or tcp, udp, icmp,
/// icmpv6 (empty: any). Lower priority numbers match first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Acl {
    pub action: AclAction,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocols: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_addresses: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_addresses: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_ports: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_ports: String,
    #[serde(default = "default_priority")]
    pub priority: u16,
}

fn default_priority() -> u16 {
    1000
}

/// A bandwidth cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    #[serde(
        rename = "MaximumOutgoingBandwidthInBytes",
        deserialize_with = "bytes_per_sec"
    )]
    pub max_bytes_per_sec: u64,
}

/// The QOS rate: a whole number of bytes a second, named in the error.
fn bytes_per_sec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    v.as_u64().ok_or_else(|| {
        serde::de::Error::custom(format!(
            "MaximumOutgoingBandwidthInBytes is a whole number of bytes a second, not {v}"
        ))
    })
}

/// Masquerade with exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct OutBoundNat {
    #[serde(default)]
    pub exceptions: Vec<String>,
}

/// An extra route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RoutePolicy {
    pub destination_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_hop: String,
}

fn bad(what: &'static str, value: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses an address or prefix ("10.0.0.5", "10.0.0.0/8").
pub fn prefix(what: &'static str, s: &str) -> Result<Subnet, PolicyError> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Subnet {
            addr: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        });
    }
    s.parse::<Subnet>()
        .map_err(|e| bad(what, s, format!("not an IP address or prefix ({e})")))
}

fn prefixes(what: &'static str, s: &str) -> Result<Vec<Subnet>, PolicyError> {
    if s.trim().is_empty() {
        return Ok(vec![]);
    }
    s.split(',').map(|p| prefix(what, p)).collect()
}

fn ports(what: &'static str, s: &str) -> Result<Option<(u16, u16)>, PolicyError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(what, s, "a port is a number from 1 to 65535"))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(s)?, port(s)?),
    };
    if a > b {
        return Err(bad(what, s, "a range goes from low to high"));
    }
    Ok(Some((a, b)))
}

fn protocol(s: &str) -> Result<Option<u8>, PolicyError> {
    let s = s.trim();
    Ok(Some(match s.to_ascii_lowercase().as_str() {
        "" | "any" | "256" => return Ok(None),
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        n => n.parse::<u8>().map_err(|_| {
            bad(
                "protocol",
                s,
                "give an IANA protocol number or tcp, udp, icmp, icmpv6",
            )
        })?,
    }))
}

/// The family of a set of prefixes (all must agree).
fn family(all: &[&[Subnet]]) -> Result<Option<bool>, PolicyError> {
    let mut v4 = None;
    for s in all.iter().flat_map(|s| s.iter()) {
        match v4 {
            None => v4 = Some(s.addr.is_ipv4()),
            Some(f) if f != s.addr.is_ipv4() => {
                return Err(bad(
                    "addresses",
                    &s.to_string(),
                    "one rule mixes IPv4 and IPv6",
                ))
            }
            _ => {}
        }
    }
    Ok(v4)
}

/// Checks a policy for a network of `driver`.
pub fn validate(kind: &PolicyKind, driver: &str) -> Result<(), PolicyError> {
    match kind {
        PolicyKind::Acl(a) => acl_rule(a, "eth0").map(drop),
        PolicyKind::Qos(q) => {
            if q.max_bytes_per_sec == 0 {
                return Err(bad(
                    "MaximumOutgoingBandwidthInBytes",
                    "0",
                    "a rate is a positive number of bytes per second",
                ));
            }
            Ok(())
        }
        PolicyKind::OutBoundNat(o) => {
            for e in &o.exceptions {
                if !prefix("exception", e)?.addr.is_ipv4() {
                    return Err(bad("exception", e, "OutBoundNAT exceptions are IPv4"));
                }
            }
            if matches!(driver, "transparent" | "l2bridge") {
                return Err(PolicyError::Driver {
                    kind: "OutBoundNAT",
                    driver: driver.to_string(),
                    reason: "their traffic goes onto the segment without being routed by the host",
                });
            }
            Ok(())
        }
        PolicyKind::Route(r) => {
            let d = prefix("destination prefix", &r.destination_prefix)?;
            if !r.next_hop.is_empty() {
                let hop = r
                    .next_hop
                    .parse::<IpAddr>()
                    .map_err(|_| bad("next hop", &r.next_hop, "not an IP address"))?;
                if hop.is_ipv4() != d.addr.is_ipv4() {
                    return Err(bad(
                        "next hop",
                        &r.next_hop,
                        "not of the destination's family",
                    ));
                }
            }
            Ok(())
        }
    }
}

/// One ACL as an nftables rule for the interface `ifname`.
pub fn acl_rule(a: &Acl, ifname: &str) -> Result<String, PolicyError> {
    let local = prefixes("local addresses", &a.local_addresses)?;
    let remote = prefixes("remote addresses", &a.remote_addresses)?;
    let lports = ports("local ports", &a.local_ports)?;
    let rports = ports("remote ports", &a.remote_ports)?;
    let proto = protocol(&a.protocols)?;
    if (lports.is_some() || rports.is_some()) && !matches!(proto, Some(6 | 17)) {
        return Err(bad(
            "protocol",
            &a.protocols,
            "ports need the protocol tcp (6) or udp (17)",
        ));
    }
    let v4 = family(&[&local, &remote])?;
    let fam = match v4 {
        Some(true) => "ip",
        Some(false) => "ip6",
        None => "",
    };
    let set = |s: &[Subnet]| {
        let items: Vec<String> = s.iter().map(|p| p.to_string()).collect();
        format!("{{ {} }}", items.join(", "))
    };
    let range = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    // In: the remote side is the source; Out: the destination.
    let (iface, remote_dir, local_dir) = match a.direction {
        Direction::In => (format!("iifname \"{ifname}\""), "saddr", "daddr"),
        Direction::Out => (format!("oifname \"{ifname}\""), "daddr", "saddr"),
    };
    let (rport_dir, lport_dir) = match a.direction {
        Direction::In => ("sport", "dport"),
        Direction::Out => ("dport", "sport"),
    };
    let mut r = iface;
    if let Some(p) = proto {
        r.push_str(&format!(" meta l4proto {p}"));
    }
    if !remote.is_empty() {
        r.push_str(&format!(" {fam} {remote_dir} {}", set(&remote)));
    }
    if !local.is_empty() {
        r.push_str(&format!(" {fam} {local_dir} {}", set(&local)));
    }
    let l4 = match proto {
        Some(6) => "tcp",
        _ => "udp",
    };
    if let Some(p) = rports {
        r.push_str(&format!(" {l4} {rport_dir} {}", range(p)));
    }
    if let Some(p) = lports {
        r.push_str(&format!(" {l4} {lport_dir} {}", range(p)));
    }
    r.push_str(match a.action {
        AclAction::Allow => " accept",
        AclAction::Block => " drop",
    });
    Ok(r)
}

/// The table name of an endpoint's ACLs.
pub fn acl_table(endpoint_id: &str) -> String {
    format!("silo-acl-{}", &endpoint_id[..endpoint_id.len().min(12)])
}

/// The script that replaces an endpoint's ACL table (in its namespace)
/// with `policies`' ACLs, in priority order (then in the order added);
/// with none, it removes the table.
pub fn acl_script(
    endpoint_id: &str,
    ifname: &str,
    policies: &[Policy],
) -> Result<String, PolicyError> {
    let t = acl_table(endpoint_id);
    let mut acls: Vec<(usize, &Acl)> = policies
        .iter()
        .filter_map(|p| match &p.kind {
            PolicyKind::Acl(a) => Some(a),
            _ => None,
        })
        .enumerate()
        .collect();
    acls.sort_by_key(|(i, a)| (a.priority, *i));
    if acls.is_empty() {
        return Ok(crate::nft::drop_table("inet", &t));
    }
    let mut input = String::new();
    let mut output = String::new();
    for (_, a) in acls {
        let rule = acl_rule(a, ifname)?;
        match a.direction {
            Direction::In => input.push_str(&format!("    {rule}\n")),
            Direction::Out => output.push_str(&format!("    {rule}\n")),
        }
    }
    Ok(crate::nft::replace_table(
        "inet",
        &t,
        &format!(
            "  chain in {{\n    type filter hook input priority filter; policy accept;\n{input}  }}\n  chain out {{\n    type filter hook output priority filter; policy accept;\n{output}  }}\n"
        ),
    ))
}

/// One endpoint's OutBoundNAT, for [`outbound_script`].
#[derive(Debug, Clone)]
pub struct Outbound {
    pub ip: IpAddr,
    /// Its network's subnet and the link the network's own traffic leaves
    /// by (a nat bridge, an overlay's gateway link): neither is masqueraded.
    pub subnet: Subnet,
    pub link: String,
    pub exceptions: Vec<Subnet>,
}

/// The host table `ip silo-outbound`: for each endpoint, traffic to an
/// exception keeps its source (an identity SNAT, which stops later
/// masquerades), everything else leaving the network is masqueraded. Runs
/// before the networks' own tables.
pub fn outbound_script(entries: &[Outbound]) -> String {
    let mut rules = String::new();
    for Outbound {
        ip,
        subnet,
        link,
        exceptions,
    } in entries
    {
        if !ip.is_ipv4() {
            continue;
        }
        if !exceptions.is_empty() {
            let set: Vec<String> = exceptions.iter().map(|e| e.to_string()).collect();
            rules.push_str(&format!(
                "    ip saddr {ip} ip daddr {{ {} }} snat to {ip}\n",
                set.join(", ")
            ));
        }
        rules.push_str(&format!(
            "    ip saddr {ip} ip daddr != {subnet} oifname != \"{link}\" masquerade\n"
        ));
    }
    if rules.is_empty() {
        return crate::nft::drop_table("ip", "silo-outbound");
    }
    crate::nft::replace_table(
        "ip",
        "silo-outbound",
        &format!(
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat - 10; policy accept;\n{rules}  }}\n"
        ),
    )
}

/// A token bucket for `rate` bytes a second: a burst of 20 ms of traffic
/// (at least 64 KiB, so one GSO packet fits) and 100 ms of queue.
pub fn tbf_sizes(rate: u64) -> (u32, u32) {
    let burst = (rate / 50).clamp(64 * 1024, u32::MAX as u64 / 2) as u32;
    let limit = (rate / 10)
        .saturating_add(burst as u64)
        .min(u32::MAX as u64) as u32;
    (burst, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(json: &str) -> Result<PolicyKind, String> {
        serde_json::from_str::<PolicyKind>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn policies_parse_strictly_and_acls_become_rules() {
        let k = acl(r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"In","Protocols":"6","LocalPorts":"80","RemoteAddresses":"10.1.0.0/16,10.2.0.5","Priority":10}}"#).unwrap();
        let PolicyKind::Acl(a) = &k else { panic!() };
        assert_eq!(
            acl_rule(a, "eth0").unwrap(),
            "iifname \"eth0\" meta l4proto 6 ip saddr { 10.1.0.0/16, 10.2.0.5/32 } tcp dport 80 drop"
        );
        // An unknown field, a wrong type name: refused.
        assert!(acl(
            r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"In","Colour":"red"}}"#
        )
        .is_err());
        assert!(acl(r#"{"Type":"Firewall","Settings":{}}"#).is_err());
        // Bad prefixes, ports and protocols name what was wrong.
        for (field, value, words) in [
            ("RemoteAddresses", "10.0.0.0/33", "remote addresses"),
            ("LocalPorts", "70000", "local ports"),
            ("LocalPorts", "90-80", "low to high"),
        ] {
            let j = format!(
                r#"{{"Type":"ACL","Settings":{{"Action":"Allow","Direction":"Out","Protocols":"tcp","{field}":"{value}"}}}}"#
            );
            let e = validate(&acl(&j).unwrap(), "nat").unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
        let e = validate(
            &acl(r#"{"Type":"ACL","Settings":{"Action":"Allow","Direction":"Out","LocalPorts":"80"}}"#).unwrap(),
            "nat",
        )
        .unwrap_err();
        assert!(e.to_string().contains("tcp (6) or udp"), "{e}");
        let e = validate(
            &acl(r#"{"Type":"ACL","Settings":{"Action":"Allow","Direction":"Out","LocalAddresses":"10.0.0.1","RemoteAddresses":"fd00::1"}}"#).unwrap(),
            "nat",
        )
        .unwrap_err();
        assert!(e.to_string().contains("mixes"), "{e}");
        // Priority orders the rules.
        let p = |prio: u16, port: &str| Policy {
            id: String::new(),
            kind: PolicyKind::Acl(Acl {
                action: AclAction::Block,
                direction: Direction::Out,
                protocols: "udp".into(),
                local_addresses: String::new(),
                remote_addresses: String::new(),
                local_ports: String::new(),
                remote_ports: port.into(),
                priority: prio,
            }),
        };
        let s = acl_script("abcdef0123456789", "eth1", &[p(200, "53"), p(100, "123")]).unwrap();
        assert!(
            s.find("dport 123").unwrap() < s.find("dport 53").unwrap(),
            "{s}"
        );
        assert!(s.contains("silo-acl-abcdef012345"));
        assert!(!acl_script("abc", "eth0", &[]).unwrap().contains('{'));
    }

    #[test]
    fn qos_outbound_nat_and_routes_are_checked() {
        let q = acl(r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":0}}"#).unwrap();
        assert!(validate(&q, "nat").is_err());
        assert!(
            acl(r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":"fast"}}"#).is_err()
        );
        let o = acl(r#"{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.0.0.0/8"]}}"#).unwrap();
        assert!(validate(&o, "l2tunnel").is_ok());
        assert!(validate(&o, "transparent").is_err());
        let bad =
            acl(r#"{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.0.0.0/40"]}}"#).unwrap();
        assert!(validate(&bad, "nat").is_err());
        let r = acl(r#"{"Type":"Route","Settings":{"DestinationPrefix":"10.9.0.0/16","NextHop":"fd00::1"}}"#).unwrap();
        assert!(validate(&r, "nat").is_err());
        let s = outbound_script(&[Outbound {
            ip: "10.0.0.5".parse().unwrap(),
            subnet: "10.0.0.0/24".parse().unwrap(),
            link: "silo0".into(),
            exceptions: vec!["192.168.0.0/16".parse().unwrap()],
        }]);
        assert!(
            s.contains("ip saddr 10.0.0.5 ip daddr { 192.168.0.0/16 } snat to 10.0.0.5"),
            "{s}"
        );
        assert!(
            s.contains("ip daddr != 10.0.0.0/24 oifname != \"silo0\" masquerade"),
            "{s}"
        );
        // The type's envelope is strict too.
        assert!(acl(
            r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":5},"Priority":1}"#
        )
        .is_err());
        assert!(!outbound_script(&[]).contains('{'));
        let (burst, limit) = tbf_sizes(1_250_000);
        assert_eq!(burst, 64 * 1024);
        assert!(limit > burst);
    }
}

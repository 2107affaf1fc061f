//! The nftables side of a nat network: one table per network
//! (`inet silo-<id12>`), so adding or removing a network is one `nft`
//! transaction that touches nothing else. Its chains: outbound masquerade
//! for the network's subnets (not for `internal` networks), and a forward
//! filter that keeps the network to itself (no traffic to another silo
//! bridge; for `internal`, to nothing but its own bridge), and the hairpin
//! masquerade that lets a container reach its own published port through
//! the host's address. Scripts run through [`crate::nft`].

use thiserror::Error;

use crate::ipam::Subnet;

/// Applying a rule set failed.
#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("nftables rules for network {network}: {source}")]
    Nft {
        network: String,
        source: crate::nft::NftError,
    },
}

/// The prefix of silo's bridge names, for the isolation rules.
pub const BRIDGE_GLOB: &str = "silo*";

/// What the firewall needs to know of a network.
#[derive(Debug, Clone)]
pub struct NetworkRules<'a> {
    /// The network id (its first 12 characters name the table).
    pub id: &'a str,
    pub bridge: &'a str,
    pub subnets: &'a [Subnet],
    pub internal: bool,
    /// Masquerade outbound traffic (Docker's enable_ip_masquerade).
    pub masquerade: bool,
}

/// The name of a network's table (`silo-<id12>`).
pub fn table(id: &str) -> String {
    format!("silo-{}", &id[..id.len().min(12)])
}

/// The nft script that (re)creates the network's table.
pub fn script(r: &NetworkRules<'_>) -> String {
    let t = table(r.id);
    let br = r.bridge;
    let mut s = String::new();
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    if r.internal {
        s.push_str(&format!(
            "    iifname \"{br}\" oifname != \"{br}\" drop\n    oifname \"{br}\" iifname != \"{br}\" drop\n"
        ));
    } else {
        s.push_str(&format!(
            "    iifname \"{br}\" oifname != \"{br}\" oifname \"{BRIDGE_GLOB}\" drop\n"
        ));
    }
    s.push_str("  }\n");
    if !r.internal {
        s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        for sn in r.subnets {
            let fam = if sn.addr.is_ipv4() { "ip" } else { "ip6" };
            if r.masquerade {
                s.push_str(&format!(
                    "    {fam} saddr {sn} oifname != \"{br}\" masquerade\n"
                ));
            }
            s.push_str(&format!(
                "    {fam} saddr {sn} oifname \"{br}\" ct status dnat masquerade\n"
            ));
        }
        s.push_str("  }\n");
    }
    crate::nft::replace_table("inet", &t, &s)
}

fn nft(network: &str, script: &str) -> Result<(), FirewallError> {
    crate::nft::run(script, false)
        .map(drop)
        .map_err(|source| FirewallError::Nft {
            network: network.to_string(),
            source,
        })
}

/// Installs (or replaces) the network's table, in one transaction.
pub fn apply(r: &NetworkRules<'_>) -> Result<(), FirewallError> {
    nft(r.id, &script(r))
}

/// The names of silo's tables (`silo-…`) in `family` (inet, bridge),
/// from nft's JSON output (its machine interface).
pub fn tables(family: &str) -> Result<Vec<String>, FirewallError> {
    let out = crate::nft::run(&format!("list tables {family}"), true).map_err(|source| {
        FirewallError::Nft {
            network: "(listing tables)".into(),
            source,
        }
    })?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["table"]["name"].as_str())
        .filter(|n| n.starts_with("silo-"))
        .map(str::to_string)
        .collect())
}

/// Removes the network's table (missing is fine).
pub fn remove(id: &str) -> Result<(), FirewallError> {
    let t = table(id);
    nft(
        id,
        &format!(
            "{}{}",
            crate::nft::drop_table("inet", &t),
            crate::nft::drop_table("bridge", &t)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_masquerade_and_isolate() {
        let subnets = ["10.1.0.0/24".parse().unwrap()];
        let s = script(&NetworkRules {
            id: "0123456789abcdef",
            bridge: "silo1",
            subnets: &subnets,
            internal: false,
            masquerade: true,
        });
        assert!(s.contains("table inet silo-0123456789ab {"), "{s}");
        assert!(
            s.contains("ip saddr 10.1.0.0/24 oifname != \"silo1\" masquerade"),
            "{s}"
        );
        assert!(s.contains("oifname \"silo*\" drop"), "{s}");
        let s = script(&NetworkRules {
            id: "0123456789abcdef",
            bridge: "silo1",
            subnets: &subnets,
            internal: true,
            masquerade: false,
        });
        assert!(!s.contains("masquerade"), "{s}");
        assert!(
            s.contains("iifname \"silo1\" oifname != \"silo1\" drop"),
            "{s}"
        );
    }
}

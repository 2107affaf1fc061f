//! Docker's networks API over the engine's network service: list, inspect,
//! create, remove and prune, in dockerd's shapes. The network service's
//! nat driver is Docker's "bridge" (so Docker clients see that driver
//! name); `host` and `none` are listed as Docker lists them.

use std::collections::BTreeMap;

use bollard_stubs::models::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use serde_json::{json, Value};
use silo_network::{CreateNetwork, Network};

use crate::inspect::Filters;
use crate::{invalid, Docker, Result};

fn shape(n: &Network, containers: Value) -> Value {
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        // Docker's names for silo's drivers.
        "Driver": match n.driver.as_str() {
            "nat" => "bridge",
            "transparent" => "macvlan",
            other => other,
        },
        "EnableIPv4": true,
        "EnableIPv6": n.pool6.is_some(),
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": std::iter::once(&n.pool).chain(&n.pool6).map(|p| json!({
                "Subnet": p.subnet.to_string(),
                "Gateway": p.gateway.to_string(),
                "IPRange": p.range.map(|r| r.to_string()),
            })).collect::<Vec<_>>(),
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// Docker's pseudo-networks: the host's namespace and none.
fn pseudo(name: &str, driver: &str) -> Value {
    json!({
        "Name": name, "Id": format!("{:0>64}", name.len()), "Created": "0001-01-01T00:00:00Z",
        "Scope": "local", "Driver": driver, "EnableIPv4": false, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {},
    })
}

fn matches(v: &Value, filters: &Filters) -> bool {
    filters.iter().all(|(key, wanted)| {
        let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
        if key == "label" {
            return wanted.iter().all(|w| {
                crate::inspect::label_matches(|k| v["Labels"][k].as_str().map(str::to_string), w)
            });
        }
        wanted.iter().any(|w| match key.as_str() {
            "name" => field("Name").contains(w.as_str()),
            "id" => field("Id").starts_with(w.as_str()),
            "driver" => field("Driver") == *w,
            "type" => {
                let builtin = ["nat", "host", "none"].contains(&field("Name").as_str());
                (w == "builtin") == builtin
            }
            _ => false,
        })
    })
}

impl Docker {
    fn containers_of(&self, n: &Network) -> Value {
        let mut m = serde_json::Map::new();
        for ep in n.endpoints.values() {
            let name = self
                .engine
                .container(&ep.owner)
                .map(|c| c.name)
                .unwrap_or_else(|_| ep.owner.clone());
            m.insert(
                ep.owner.clone(),
                json!({
                    "Name": name,
                    "EndpointID": ep.id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                    "IPv6Address": match (ep.ip6, &n.pool6) {
                        (Some(a), Some(p)) => format!("{a}/{}", p.subnet.prefix),
                        _ => String::new(),
                    },
                }),
            );
        }
        Value::Object(m)
    }

    /// `GET /networks`.
    pub fn networks(&self, filters: &Filters) -> Result<Vec<Value>> {
        for k in filters.keys() {
            if !["name", "id", "driver", "type", "label"].contains(&k.as_str()) {
                return Err(invalid("filters", format!("invalid filter '{k}'")));
            }
        }
        let mut out: Vec<Value> = self
            .engine
            .networks()?
            .iter()
            .map(|n| shape(n, json!({})))
            .collect();
        out.push(pseudo("host", "host"));
        out.push(pseudo("none", "null"));
        Ok(out.into_iter().filter(|v| matches(v, filters)).collect())
    }

    /// `GET /networks/{id}`.
    pub fn network_inspect(&self, name: &str) -> Result<Value> {
        match name {
            "host" => return Ok(pseudo("host", "host")),
            "none" => return Ok(pseudo("none", "null")),
            _ => {}
        }
        let n = self.engine.network(name)?;
        Ok(shape(&n, self.containers_of(&n)))
    }

    /// `POST /networks/create`.
    pub fn network_create(&self, body: &NetworkCreateRequest) -> Result<Value> {
        let ipam_driver = body.ipam.as_ref().and_then(|i| i.driver.as_deref());
        let unsupported = [
            (
                "IPAM.Driver",
                ipam_driver.is_some_and(|d| !d.is_empty() && d != "default"),
            ),
            (
                "IPAM.Options",
                body.ipam
                    .as_ref()
                    .and_then(|i| i.options.as_ref())
                    .is_some_and(|o| !o.is_empty()),
            ),
            ("Ingress", body.ingress == Some(true)),
            // Every silo network has IPv4.
            ("EnableIPv4", body.enable_ipv4 == Some(false)),
            ("ConfigOnly", body.config_only == Some(true)),
            ("ConfigFrom", body.config_from.is_some()),
            (
                "Scope",
                body.scope
                    .as_deref()
                    .is_some_and(|s| s != "local" && !s.is_empty()),
            ),
        ];
        for (field, given) in unsupported {
            if given {
                return Err(invalid(field, format!("{field} is not supported by silo")));
            }
        }
        let configs = body
            .ipam
            .as_ref()
            .and_then(|i| i.config.clone())
            .unwrap_or_default();
        let parse = |field: &str, v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<silo_network::ipam::Subnet>()
                        .map_err(|e| invalid(field, e.to_string()))
                })
                .transpose()
        };
        // At most one IPv4 and one IPv6 pool (dual stack).
        let mut v4 = None;
        let mut v6 = None;
        for cfg in &configs {
            if cfg
                .auxiliary_addresses
                .as_ref()
                .is_some_and(|a| !a.is_empty())
            {
                return Err(invalid(
                    "IPAM.Config.AuxiliaryAddresses",
                    "auxiliary addresses are not supported by silo",
                ));
            }
            let subnet = parse("IPAM.Config.Subnet", &cfg.subnet)?;
            let gateway = cfg
                .gateway
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|g| {
                    g.parse::<std::net::IpAddr>().map_err(|_| {
                        invalid("IPAM.Config.Gateway", format!("invalid gateway {g:?}"))
                    })
                })
                .transpose()?;
            let range = parse("IPAM.Config.IPRange", &cfg.ip_range)?;
            let is_v6 = subnet
                .map(|s| s.addr.is_ipv6())
                .or(gateway.map(|g| g.is_ipv6()))
                .unwrap_or(false);
            let slot = if is_v6 { &mut v6 } else { &mut v4 };
            if slot.is_some() {
                return Err(invalid(
                    "IPAM.Config",
                    format!(
                        "one {} subnet per network is supported",
                        if is_v6 { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
            *slot = Some((subnet, gateway, range));
        }
        let (subnet, gateway, ip_range) = v4.unwrap_or_default();
        let ipv6 = body.enable_ipv6 == Some(true);
        if v6.is_some() && !ipv6 {
            return Err(invalid(
                "EnableIPv6",
                "an IPv6 subnet needs EnableIPv6 (docker network create --ipv6)",
            ));
        }
        let (subnet6, gateway6, ip_range6) = v6.unwrap_or_default();
        let req = CreateNetwork {
            name: body.name.clone(),
            driver: body.driver.clone(),
            subnet,
            gateway,
            ip_range,
            ipv6,
            subnet6,
            gateway6,
            ip_range6,
            internal: body.internal == Some(true),
            attachable: body.attachable == Some(true),
            options: body
                .options
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            labels: body
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        };
        let n = self.engine.create_network(&req)?;
        Ok(json!({ "Id": n.id, "Warning": "" }))
    }

    /// `DELETE /networks/{id}`.
    pub fn network_remove(&self, name: &str) -> Result<()> {
        if name == "host" || name == "none" {
            return Err(crate::Error::Engine(silo_engine::Error::conflict(format!(
                "{name} is a pre-defined network and cannot be removed"
            ))));
        }
        Ok(self.engine.remove_network(name)?)
    }

    /// `POST /networks/prune`.
    /// `POST /networks/{id}/connect`.
    pub fn network_connect(&self, network: &str, req: &NetworkConnectRequest) -> Result<()> {
        let n = self.engine.network(network)?;
        if let Some(st) = &req.endpoint_config {
            if st.links.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(invalid(
                    "EndpointConfig.Links",
                    "EndpointConfig.Links: links are given when a container is created (--link), not on connect",
                ));
            }
        }
        let join = crate::create::endpoint_join(&n.name, req.endpoint_config.as_ref())?;
        Ok(self.engine.connect_network(&req.container, join)?)
    }

    /// `POST /networks/{id}/disconnect` (`Force` changes nothing: a
    /// disconnect never waits for anything).
    pub fn network_disconnect(&self, network: &str, req: &NetworkDisconnectRequest) -> Result<()> {
        Ok(self.engine.disconnect_network(&req.container, network)?)
    }

    pub fn network_prune(&self) -> Result<Value> {
        let gone = self.engine.prune_networks()?;
        Ok(json!({ "NetworksDeleted": gone }))
    }
}

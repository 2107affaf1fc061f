//! Networks: the network service (silo-network, the HNS) behind the
//! engine's [`NetworkService`] seam, and the engine's operations on
//! networks for front ends (create, list, inspect, remove, prune; the
//! endpoints of a container). A container in the default mode joins the
//! default network (`nat`); [`NetworkMode::Networks`] names others.

use std::sync::Arc;

use silo_network::{
    AttachSpec, CreateNetwork, Endpoint, JoinRequest, Network, Service, ServiceError,
};

use crate::error::{Error, Kind, Result};
use crate::events::{Action, Scope};
use crate::model::{NetworkJoin, NetworkMode};
use crate::network::{AttachRequest, Attachment, NetworkService};
use crate::Engine;

/// The network service as the engine's seam.
#[derive(Debug)]
pub struct Hns(pub Arc<Service>);

impl NetworkService for Hns {
    fn attach(&self, req: &AttachRequest<'_>) -> std::result::Result<Attachment, String> {
        let joins: Vec<JoinRequest> = match req.mode {
            NetworkMode::Default => vec![join_request(&NetworkJoin::default_network())],
            NetworkMode::Networks(joins) => joins.iter().map(join_request).collect(),
            _ => return Ok(Attachment::default()),
        };
        let eps = self
            .0
            .attach(&AttachSpec {
                owner: req.owner,
                netns: req.netns,
                joins: &joins,
                ports: req.ports,
                names: req.names,
                dns_servers: req.dns_servers,
            })
            .map_err(|e| e.to_string())?;
        Ok(attachment_of(req.hostname, &eps))
    }

    fn detach(&self, owner: &str) -> std::result::Result<(), String> {
        self.0.detach(owner)
    }

    fn connect(
        &self,
        req: &AttachRequest<'_>,
        join: &crate::model::NetworkJoin,
    ) -> std::result::Result<(), String> {
        let joins = [join_request(join)];
        self.0
            .connect(&AttachSpec {
                owner: req.owner,
                netns: req.netns,
                joins: &joins,
                ports: &[],
                names: req.names,
                dns_servers: req.dns_servers,
            })
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn disconnect(&self, owner: &str, network: &str) -> std::result::Result<(), String> {
        self.0.disconnect(owner, network).map_err(|e| e.to_string())
    }
}

/// A container's wish to join a network, for the network service.
fn join_request(j: &NetworkJoin) -> JoinRequest {
    JoinRequest {
        network: j.network.clone(),
        aliases: j.aliases.clone(),
        ip: j.ip,
        ip6: j.ip6,
        mac: j.mac,
    }
}

/// The /etc/hosts entries and resolver of a running container, from its
/// endpoints (after a connect or disconnect).
fn attachment_of(hostname: &str, eps: &[(Network, Endpoint)]) -> Attachment {
    Attachment {
        hosts: eps
            .iter()
            .map(|(_, ep)| {
                let mut names = vec![hostname.to_string()];
                names.extend(ep.aliases.iter().filter(|a| *a != hostname).cloned());
                (ep.ip.to_string(), names)
            })
            .collect(),
        embedded_dns: eps
            .iter()
            .any(|(n, _)| n.name != silo_network::service::DEFAULT_NETWORK),
    }
}

fn service_error(name: &str, e: ServiceError) -> Error {
    use ServiceError as S;
    match e {
        S::NotFound(_) => Error::not_found(Kind::Network, name),
        S::EndpointNotFound(id) => Error::not_found(Kind::Network, format!("endpoint {id}")),
        S::PolicyNotFound { .. } | S::RemoteNotFound { .. } => {
            Error::not_found(Kind::Network, e.to_string())
        }
        S::QosExists { .. } | S::MacInUse { .. } => Error::conflict(e.to_string()),
        S::Ambiguous(_) | S::Policy { .. } | S::Remote { .. } => {
            Error::invalid("policy", e.to_string())
        }
        S::Duplicate(_) | S::InUse { .. } | S::Predefined(_) | S::AlreadyConnected { .. } => {
            Error::conflict(e.to_string())
        }
        S::BadName(_)
        | S::Driver(_)
        | S::Overlap { .. }
        | S::NoSubnet
        | S::Ipam { .. }
        | S::Driver2(silo_network::nat::DriverError::Invalid { .. }) => {
            Error::invalid("network", e.to_string())
        }
        other => Error::internal("network service", other),
    }
}

impl Engine {
    fn hns(&self) -> Result<&Arc<Service>> {
        self.hns.as_ref().ok_or_else(|| {
            Error::Unavailable("this daemon runs without the network service".to_string())
        })
    }

    /// Every network.
    pub fn networks(&self) -> Result<Vec<Network>> {
        Ok(self.hns()?.list())
    }

    /// One network by name, id or id prefix ("bridge" is the default one).
    pub fn network(&self, name: &str) -> Result<Network> {
        self.hns()?.get(name).map_err(|e| service_error(name, e))
    }

    /// Creates a network.
    pub fn create_network(&self, req: &CreateNetwork) -> Result<Network> {
        let n = self
            .hns()?
            .create(req)
            .map_err(|e| service_error(&req.name, e))?;
        self.emit_with(
            Scope::Network,
            Action::Create,
            &n.id,
            [
                ("name".to_string(), n.name.clone()),
                ("type".to_string(), n.driver.clone()),
            ]
            .into(),
        );
        Ok(n)
    }

    /// The containers (by name) configured to join network `n`.
    fn members(&self, n: &Network) -> Vec<String> {
        self.lock()
            .values()
            .filter(|c| match &c.config.namespaces.network {
                NetworkMode::Networks(j) => {
                    j.iter().any(|j| j.network == n.name || j.network == n.id)
                }
                _ => false,
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// Removes a network no container uses.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let n = self.network(name)?;
        let members = self.members(&n);
        if !members.is_empty() {
            return Err(Error::conflict(format!(
                "error while removing network: network {} id {} has active endpoints (containers {})",
                n.name,
                n.id,
                members.join(", ")
            )));
        }
        self.hns()?
            .remove(&n.id)
            .map_err(|e| service_error(name, e))?;
        self.emit_with(
            Scope::Network,
            Action::Destroy,
            &n.id,
            [("name".to_string(), n.name.clone())].into(),
        );
        Ok(())
    }

    /// Removes every user network no container uses; returns their names.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.networks()? {
            if n.name == silo_network::service::DEFAULT_NETWORK || !self.members(&n).is_empty() {
                continue;
            }
            self.remove_network(&n.id)?;
            out.push(n.name);
        }
        Ok(out)
    }

    /// A container's endpoints: (network, endpoint).
    pub fn endpoints_of(&self, container_id: &str) -> Vec<(Network, Endpoint)> {
        let Ok(svc) = self.hns() else {
            return Vec::new();
        };
        svc.endpoints_of(container_id)
            .into_iter()
            .filter_map(|(name, ep)| svc.get(&name).ok().map(|n| (n, ep)))
            .collect()
    }

    /// The HNS view of every network.
    pub fn hns_networks(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .networks()?
            .iter()
            .map(silo_network::view::network)
            .collect())
    }

    /// The HNS view of one network (name, id or id prefix).
    pub fn hns_network(&self, name: &str) -> Result<serde_json::Value> {
        Ok(silo_network::view::network(&self.network(name)?))
    }

    /// The HNS view of every endpoint, with its counters.
    pub fn hns_endpoints(&self) -> Result<Vec<serde_json::Value>> {
        let mut nl = silo_network::netlink::Netlink::open().ok();
        let mut out = Vec::new();
        for n in self.networks()? {
            for ep in n.endpoints.values() {
                let mut v = silo_network::view::endpoint(&n, ep, nl.as_mut());
                self.add_pod(&mut v, &ep.owner);
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Names the pod behind an endpoint or compute system: its owner is
    /// the pod itself (a pod's endpoint) or a container of it.
    pub(crate) fn add_pod(&self, v: &mut serde_json::Value, owner: &str) {
        let pod = if self.pods_lock().contains_key(owner) {
            Some(owner.to_string())
        } else {
            self.lock().get(owner).and_then(|c| c.config.pod.clone())
        };
        if let Some(p) = pod {
            let name = self.pods_lock().get(&p).map(|p| p.name.clone());
            v["Pod"] = serde_json::json!({ "Id": p, "Name": name });
        }
    }

    /// Every endpoint policy, with the endpoint it applies to.
    pub fn hns_policies(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for n in self.networks()? {
            for ep in n.endpoints.values() {
                for mut p in silo_network::view::policies(ep) {
                    p["EndpointID"] = serde_json::json!(ep.id);
                    p["Container"] = serde_json::json!(ep.owner);
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// The HNS view of one endpoint (id or unique id prefix).
    pub fn hns_endpoint(&self, id: &str) -> Result<serde_json::Value> {
        let mut hits = Vec::new();
        for n in self.networks()? {
            for ep in n.endpoints.values() {
                if ep.id.starts_with(id) && !id.is_empty() {
                    hits.push((n.clone(), ep.clone()));
                }
            }
        }
        match hits.as_slice() {
            [(n, ep)] => {
                let mut nl = silo_network::netlink::Netlink::open().ok();
                let mut v = silo_network::view::endpoint(n, ep, nl.as_mut());
                self.add_pod(&mut v, &ep.owner);
                Ok(v)
            }
            [] => Err(Error::not_found(Kind::Network, format!("endpoint {id}"))),
            _ => Err(Error::invalid(
                "id",
                format!("endpoint id prefix {id} is ambiguous"),
            )),
        }
    }

    /// The joins of a container that may change networks: its own list,
    /// the default network for the default mode; others refuse.
    fn joins_of(c: &crate::model::Container) -> Result<Vec<NetworkJoin>> {
        if c.config.pod.is_some() {
            return Err(Error::invalid(
                "container",
                format!("container {} is in a pod: its pod owns the network", c.name),
            ));
        }
        match &c.config.namespaces.network {
            NetworkMode::Networks(j) => Ok(j.clone()),
            NetworkMode::Default => Ok(vec![NetworkJoin::default_network()]),
            NetworkMode::Host => Err(Error::invalid(
                "container",
                format!("container {} is on the host's network: it cannot join or leave networks", c.name),
            )),
            NetworkMode::None => Err(Error::invalid(
                "container",
                format!("container {} has --network none: it cannot join networks", c.name),
            )),
            NetworkMode::Container(_) => Err(Error::invalid(
                "container",
                format!("container {} shares another container's network namespace: it cannot join or leave networks", c.name),
            )),
        }
    }

    /// Rewrites a running container's /etc/hosts and resolv.conf after its
    /// networks changed (the files are bind-mounted, so in place).
    fn refresh_etc(&self, c: &crate::model::Container) -> Result<()> {
        let att = attachment_of(&c.hostname(), &self.endpoints_of(&c.id));
        self.write_etc(c, &att)
    }

    /// `docker network connect`: adds `join` to the container's networks;
    /// a running container gains the interface at once.
    pub fn connect_network(&self, container: &str, join: NetworkJoin) -> Result<()> {
        let id = self.resolve_id(container)?;
        let lock = self.op_lock(&id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get(&id)?;
        let mut joins = Self::joins_of(&c)?;
        let mut one = NetworkMode::Networks(vec![join]);
        self.resolve_networks(&mut one)?;
        let NetworkMode::Networks(mut one) = one else {
            return Err(Error::invalid("network", "no network given"));
        };
        let join = one.remove(0);
        if joins.iter().any(|j| j.network == join.network) {
            return Err(Error::conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.name, join.network
            )));
        }
        joins.push(join.clone());
        let mode = NetworkMode::Networks(joins);
        let running = c.state.status.run().is_some();
        if running {
            let names = vec![c.name.clone(), c.id.chars().take(12).collect()];
            self.network
                .connect(
                    &AttachRequest {
                        owner: &c.id,
                        netns: &self.netns_path(&c.id),
                        mode: &mode,
                        hostname: &c.hostname(),
                        ports: &[],
                        names: &names,
                        dns_servers: &c.config.dns.servers,
                    },
                    &join,
                )
                .map_err(Error::conflict)?;
        }
        let saved = self.modify(&id, |c| {
            c.config.namespaces.network = mode.clone();
            Ok(())
        });
        match saved {
            Ok((c, ())) => {
                if running {
                    self.refresh_etc(&c)?;
                }
            }
            Err(e) => {
                if running {
                    let _ = self.network.disconnect(&id, &join.network);
                }
                return Err(e);
            }
        }
        let n = self.network(&join.network)?;
        self.emit_membership(Action::Connect, &n, &id);
        Ok(())
    }

    /// A connect or disconnect event, as dockerd sends them.
    fn emit_membership(&self, action: Action, n: &Network, container: &str) {
        self.emit_with(
            Scope::Network,
            action,
            &n.id,
            [
                ("container".to_string(), container.to_string()),
                ("name".to_string(), n.name.clone()),
                ("type".to_string(), n.driver.clone()),
            ]
            .into(),
        );
    }

    /// `docker network disconnect`: removes the network from the
    /// container's; a running container loses the interface at once.
    pub fn disconnect_network(&self, container: &str, network: &str) -> Result<()> {
        let id = self.resolve_id(container)?;
        let lock = self.op_lock(&id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get(&id)?;
        let n = self.network(network)?;
        let mut joins = Self::joins_of(&c)?;
        let before = joins.len();
        joins.retain(|j| j.network != n.name && j.network != n.id);
        if joins.len() == before {
            return Err(Error::conflict(format!(
                "container {} is not connected to network {}",
                c.name, n.name
            )));
        }
        if c.state.status.run().is_some() {
            self.network
                .disconnect(&id, &n.name)
                .map_err(Error::conflict)?;
        }
        let (c, ()) = self.modify(&id, |c| {
            c.config.namespaces.network = NetworkMode::Networks(joins.clone());
            Ok(())
        })?;
        if c.state.status.run().is_some() {
            self.refresh_etc(&c)?;
        }
        self.emit_membership(Action::Disconnect, &n, &id);
        Ok(())
    }

    /// Resolves the networks a container asks for to their names, refusing
    /// unknown ones and duplicates.
    pub(crate) fn resolve_networks(&self, mode: &mut NetworkMode) -> Result<()> {
        let NetworkMode::Networks(joins) = mode else {
            return Ok(());
        };
        let mut seen = Vec::new();
        for j in joins.iter_mut() {
            // A 400, not a 404: the docker CLI reads a 404 from create as a
            // missing image and goes to pull it.
            let n = self.network(&j.network).map_err(|e| match e {
                Error::NotFound { .. } => {
                    Error::invalid("networks", format!("network {} not found", j.network))
                }
                other => other,
            })?;
            if seen.contains(&n.id) {
                return Err(Error::invalid(
                    "networks",
                    format!("network {} is listed twice", n.name),
                ));
            }
            seen.push(n.id.clone());
            if let Some(ip) = j.ip {
                if !n.pool.subnet.contains(ip) {
                    return Err(Error::invalid(
                        "networks",
                        format!(
                            "address {ip} is not in network {}'s subnet {}",
                            n.name, n.pool.subnet
                        ),
                    ));
                }
            }
            if let Some(ip6) = j.ip6 {
                match &n.pool6 {
                    Some(p6) if p6.subnet.contains(ip6) => {}
                    Some(p6) => {
                        return Err(Error::invalid(
                            "networks",
                            format!(
                                "address {ip6} is not in network {}'s IPv6 subnet {}",
                                n.name, p6.subnet
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::invalid(
                            "networks",
                            format!("network {} has no IPv6 (create it with --ipv6)", n.name),
                        ))
                    }
                }
            }
            j.network = n.name;
        }
        Ok(())
    }
}

/// A remote endpoint as `POST /hns/networks/{id}/remote-endpoints` takes
/// it (HNS's names; unknown fields are refused).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RemoteEndpointRequest {
    #[serde(rename = "IPAddress")]
    ip_address: std::net::IpAddr,
    #[serde(default)]
    mac_address: Option<String>,
    provider_address: std::net::IpAddr,
    #[serde(default)]
    name: Option<String>,
}

/// A remote subnet route as `POST /hns/networks/{id}/remote-subnets`
/// takes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RemoteSubnetRequest {
    destination_prefix: String,
    provider_address: std::net::IpAddr,
    distributed_router_mac_address: String,
}

fn body<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::invalid(what, format!("invalid {what}: {e}")))
}

fn mac(s: &str) -> Result<[u8; 6]> {
    silo_network::overlay::parse_mac(s)
        .ok_or_else(|| Error::invalid("MacAddress", format!("{s:?} is not a MAC address")))
}

impl Engine {
    /// Adds a policy (HNS JSON: `{"Type": …, "Settings": {…}}`) to a
    /// running endpoint; returns it with its id.
    pub fn hns_add_policy(&self, endpoint: &str, json: &[u8]) -> Result<serde_json::Value> {
        let kind: silo_network::policy::PolicyKind = body("policy", json)?;
        let (ep, p) = self
            .hns()?
            .add_policy(endpoint, kind)
            .map_err(|e| service_error(endpoint, e))?;
        let mut v = serde_json::to_value(&p).unwrap_or_default();
        v["EndpointID"] = serde_json::json!(ep);
        Ok(v)
    }

    /// Removes a policy from an endpoint.
    pub fn hns_remove_policy(&self, endpoint: &str, policy: &str) -> Result<()> {
        self.hns()?
            .remove_policy(endpoint, policy)
            .map_err(|e| service_error(endpoint, e))
    }

    /// Adds a remote endpoint to an overlay network.
    pub fn hns_add_remote(&self, network: &str, json: &[u8]) -> Result<serde_json::Value> {
        let r: RemoteEndpointRequest = body("remote endpoint", json)?;
        let m = r.mac_address.as_deref().map(mac).transpose()?;
        let made = self
            .hns()?
            .add_remote(network, r.ip_address, m, r.provider_address, r.name)
            .map_err(|e| service_error(network, e))?;
        Ok(serde_json::json!({
            "ID": made.id,
            "IPAddress": made.ip.to_string(),
            "MacAddress": made.mac,
            "ProviderAddress": made.provider.to_string(),
            "Name": made.name,
        }))
    }

    /// Removes a remote endpoint (id, id prefix or address).
    pub fn hns_remove_remote(&self, network: &str, which: &str) -> Result<()> {
        self.hns()?
            .remove_remote(network, which)
            .map_err(|e| service_error(network, e))
    }

    /// Adds a remote subnet route to an overlay network.
    pub fn hns_add_remote_subnet(&self, network: &str, json: &[u8]) -> Result<serde_json::Value> {
        let r: RemoteSubnetRequest = body("remote subnet", json)?;
        let prefix = r.destination_prefix.parse().map_err(|e| {
            Error::invalid(
                "DestinationPrefix",
                format!("{:?}: {e}", r.destination_prefix),
            )
        })?;
        let m = mac(&r.distributed_router_mac_address)?;
        let made = self
            .hns()?
            .add_remote_subnet(network, prefix, r.provider_address, m)
            .map_err(|e| service_error(network, e))?;
        Ok(serde_json::json!({
            "ID": made.id,
            "DestinationPrefix": made.prefix.to_string(),
            "ProviderAddress": made.provider.to_string(),
            "DistributedRouterMacAddress": made.router_mac,
        }))
    }

    /// Removes a remote subnet route (id, id prefix or prefix).
    pub fn hns_remove_remote_subnet(&self, network: &str, which: &str) -> Result<()> {
        self.hns()?
            .remove_remote_subnet(network, which)
            .map_err(|e| service_error(network, e))
    }
}

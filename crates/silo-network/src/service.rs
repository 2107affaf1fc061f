//! The network service: networks and endpoints with their persisted state
//! (`<state>/networks/<id>.json`, written atomically), IPAM, and the nat
//! driver underneath. Kernel objects are made when first needed and
//! re-made idempotently, so a restart (or a reboot) finds them again.
//!
//! Namespace work runs on threads of its own ([`crate::nat::in_netns`]);
//! the host side runs in the namespace of the thread calling the service.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dns;
use crate::driver::{self, Driver};
use crate::firewall::{self, FirewallError};
use crate::ipam::{mac_for, IpamError, Pool, Subnet};
use crate::nat::{DriverError, EndpointSpec};
use crate::netlink::{Netlink, NetlinkError};
use crate::overlay::{RemoteEndpoint, RemoteSubnet};
use crate::policy::{Policy, PolicyKind};
use crate::ports::{self, PortError, PortMapping, PortRequest};

/// The default network's name (Windows'); `bridge` is its Docker alias.
pub const DEFAULT_NETWORK: &str = "nat";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "silo0";

/// A network service operation failed; nothing changed.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Duplicate(String),
    #[error("invalid network name {0:?}: use letters, digits and . _ - (at most 64)")]
    BadName(String),
    #[error("driver {0:?} is not supported (nat, transparent, l2bridge, l2tunnel, overlay; bridge is accepted as nat, macvlan as transparent, ipvlan as l2bridge)")]
    Driver(String),
    #[error("endpoint {0} not found")]
    EndpointNotFound(String),
    #[error("endpoint id prefix {0} is ambiguous")]
    Ambiguous(String),
    #[error("endpoint {endpoint} has no policy {policy}")]
    PolicyNotFound { endpoint: String, policy: String },
    #[error("endpoint {endpoint}: {source}")]
    Policy {
        endpoint: String,
        source: crate::policy::PolicyError,
    },
    #[error("endpoint {endpoint} already has a QOS policy ({policy}); remove it first")]
    QosExists { endpoint: String, policy: String },
    #[error("applying the policy to endpoint {endpoint}: {reason}")]
    Apply { endpoint: String, reason: String },
    #[error("network {network}: {reason}")]
    Remote { network: String, reason: String },
    #[error("network {network} has no remote {what} {id}")]
    RemoteNotFound {
        network: String,
        what: &'static str,
        id: String,
    },
    #[error("subnet {subnet} overlaps network {other}'s {theirs}")]
    Overlap {
        subnet: Subnet,
        other: String,
        theirs: Subnet,
    },
    #[error("no free subnet left for a new network; give --subnet")]
    NoSubnet,
    #[error("network {name} has active endpoints ({count}); disconnect or remove their containers first")]
    InUse { name: String, count: usize },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("container {owner} is already connected to network {network}")]
    AlreadyConnected { owner: String, network: String },
    #[error("MAC address {mac} is already used on network {network} by container {owner}")]
    MacInUse {
        mac: String,
        network: String,
        owner: String,
    },
    #[error("container {owner} is not connected to network {network}")]
    NotConnected { owner: String, network: String },
    #[error("network {network}: {source}")]
    Ipam { network: String, source: IpamError },
    #[error(transparent)]
    Driver2(#[from] DriverError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("publishing ports: {0}")]
    Nft(#[from] crate::nft::NftError),
    #[error("ports cannot be published: the container has no network with outbound access (only internal networks, or none)")]
    NoGateway,
    #[error("{what}: {source}")]
    Netlink { what: String, source: NetlinkError },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ServiceError>;

/// One endpoint: a container's interface on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    /// The container (or pod) it belongs to.
    pub owner: String,
    pub host_ifname: String,
    pub ifname: String,
    pub ip: IpAddr,
    pub prefix: u8,
    /// The IPv6 address, on an IPv6 network (its prefix is the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpAddr>,
    pub mac: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Published ports (HNS's PortMapping policy), on the endpoint that
    /// holds the container's default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The owner's names for the embedded DNS server (container name and
    /// short id; aliases are above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The owner's pinned network namespace (to serve DNS in it again
    /// after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// The owner's upstream DNS servers (`--dns`; empty: the host's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<IpAddr>,
    /// Policies added to it (HNS's ACL, QOS, OutBoundNAT, Route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
}

/// A network and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub bridge: String,
    pub pool: Pool,
    /// The IPv6 pool of an IPv6 network (`--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<Pool>,
    #[serde(default)]
    pub internal: bool,
    /// Docker's `Attachable`: containers may join by hand. Every local
    /// network allows that; the flag is kept to be reported back.
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// By endpoint id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// HNS's MaxConcurrentEndpoints: the most endpoints it ever had at once.
    #[serde(default)]
    pub max_concurrent_endpoints: u64,
    /// HNS's TotalEndpoints: endpoints ever created.
    #[serde(default)]
    pub total_endpoints: u64,
    /// An overlay's endpoints on other hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<RemoteEndpoint>,
    /// An overlay's subnets on other hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_subnets: Vec<RemoteSubnet>,
}

/// A network to create.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    /// "nat" (default); "bridge" is the same.
    pub driver: Option<String>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<IpAddr>,
    pub ip_range: Option<Subnet>,
    /// An IPv6 network too (dual stack).
    pub ipv6: bool,
    /// Its IPv6 subnet (None: a ULA /64 made from the network's id).
    pub subnet6: Option<Subnet>,
    pub gateway6: Option<IpAddr>,
    pub ip_range6: Option<Subnet>,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A container's wish to join a network.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub network: String,
    pub aliases: Vec<String>,
    pub ip: Option<IpAddr>,
    /// A fixed IPv6 address, on an IPv6 network.
    pub ip6: Option<IpAddr>,
    /// A fixed MAC (else derived from the address, from the MAC pool).
    pub mac: Option<[u8; 6]>,
}

/// What to connect: an owner's namespace to networks.
#[derive(Debug, Clone, Copy)]
pub struct AttachSpec<'a> {
    /// The container (or pod).
    pub owner: &'a str,
    /// Its pinned network namespace.
    pub netns: &'a Path,
    /// Its networks in order (`eth0`, `eth1`…).
    pub joins: &'a [JoinRequest],
    /// Ports to publish on the network with the default route.
    pub ports: &'a [PortRequest],
    /// Its names for the embedded DNS server.
    pub names: &'a [String],
    /// Upstream DNS servers for it (empty: the host's).
    pub dns_servers: &'a [IpAddr],
}

type Networks = Arc<Mutex<BTreeMap<String, Network>>>;

/// The embedded DNS server's view of the networks: a name resolves for an
/// owner on the user networks it shares with the name's endpoints.
struct Directory(Networks);

impl dns::Names for Directory {
    fn lookup(&self, owner: &str, name: &str) -> Option<Vec<IpAddr>> {
        let nets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        let mut out = Vec::new();
        let mine = nets.values().filter(|n| {
            n.name != DEFAULT_NETWORK && n.endpoints.values().any(|e| e.owner == owner)
        });
        for n in mine {
            for e in n.endpoints.values() {
                let named = e
                    .names
                    .iter()
                    .chain(&e.aliases)
                    .any(|x| x.eq_ignore_ascii_case(name));
                if named {
                    found = true;
                    for a in std::iter::once(e.ip).chain(e.ip6) {
                        if !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
            }
            for r in &n.remotes {
                if r.name
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(name))
                {
                    found = true;
                    if !out.contains(&r.ip) {
                        out.push(r.ip);
                    }
                }
            }
        }
        found.then_some(out)
    }
}

/// The service.
#[derive(Debug)]
pub struct Service {
    dir: PathBuf,
    networks: Networks,
    dns: Arc<dns::Server>,
    /// Networks whose bridge and table this process has made or checked:
    /// a start then costs no `nft` process and no bridge set-up.
    realized: Mutex<std::collections::HashMap<String, u32>>,
    /// The sockets holding published host ports, by endpoint id.
    held: Mutex<std::collections::HashMap<String, Vec<std::os::fd::OwnedFd>>>,
    /// Whether this process has (re)made the port table.
    ports_ready: std::sync::atomic::AtomicBool,
    /// The reaper thread's queue (started with the first detach).
    reaper: Mutex<Option<std::sync::mpsc::Sender<(String, Endpoint)>>>,
    pending: Arc<Pending>,
    /// Serializes policy changes with each other and with detaches, so a
    /// policy list is never written from a stale copy.
    policy_lock: Mutex<()>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn nl_err(what: &str) -> impl FnOnce(NetlinkError) -> ServiceError + '_ {
    move |source| ServiceError::Netlink {
        what: what.to_string(),
        source,
    }
}

impl Service {
    /// Opens the service's state under `dir` (created if missing) and makes
    /// sure the default network is on record (its bridge is made on first use).
    pub fn open(dir: &Path) -> Result<Service> {
        let nets = dir.join("networks");
        std::fs::create_dir_all(&nets).map_err(|source| ServiceError::Io {
            op: "creating",
            path: nets.clone(),
            source,
        })?;
        let mut networks = BTreeMap::new();
        for e in std::fs::read_dir(&nets).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let bytes = std::fs::read(&p).map_err(|source| ServiceError::Io {
                    op: "reading",
                    path: p.clone(),
                    source,
                })?;
                let n: Network = serde_json::from_slice(&bytes).map_err(|e| ServiceError::Io {
                    op: "parsing",
                    path: p.clone(),
                    source: std::io::Error::other(e),
                })?;
                networks.insert(n.id.clone(), n);
            }
        }
        let networks: Networks = Arc::new(Mutex::new(networks));
        let svc = Service {
            dir: dir.to_path_buf(),
            dns: dns::Server::new(Box::new(Directory(Arc::clone(&networks)))),
            networks,
            realized: Mutex::new(std::collections::HashMap::new()),
            held: Mutex::new(std::collections::HashMap::new()),
            ports_ready: std::sync::atomic::AtomicBool::new(false),
            reaper: Mutex::new(None),
            pending: Arc::new(Pending::default()),
            policy_lock: Mutex::new(()),
        };
        if svc.lookup(DEFAULT_NETWORK).is_none() {
            let pool = Pool::new(
                "172.17.0.0/16".parse().map_err(|e| ServiceError::Ipam {
                    network: DEFAULT_NETWORK.into(),
                    source: e,
                })?,
                None,
                None,
            )
            .map_err(|source| ServiceError::Ipam {
                network: DEFAULT_NETWORK.into(),
                source,
            })?;
            let n = Network {
                id: silo_sys::id::random_hex(32),
                name: DEFAULT_NETWORK.into(),
                driver: "nat".into(),
                bridge: DEFAULT_BRIDGE.into(),
                pool,
                pool6: None,
                internal: false,
                attachable: false,
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                created: silo_units_now(),
                endpoints: BTreeMap::new(),
                max_concurrent_endpoints: 0,
                total_endpoints: 0,
                remotes: Vec::new(),
                remote_subnets: Vec::new(),
            };
            svc.save(&n)?;
            svc.lock().insert(n.id.clone(), n);
        }
        Ok(svc)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Network>> {
        self.networks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join("networks").join(format!("{id}.json"))
    }

    fn save(&self, n: &Network) -> Result<()> {
        self.save_with(n, silo_sys::fs::Durability::Durable)
    }

    /// Endpoint changes are written atomically but not fsynced: endpoints
    /// are kernel objects a host crash ends anyway (reconcile drops their
    /// records at the next start), and an fsync per start and stop would
    /// cost more than the endpoint itself. Networks are written durably.
    fn save_endpoints(&self, n: &Network) -> Result<()> {
        self.save_with(n, silo_sys::fs::Durability::Atomic)
    }

    fn save_with(&self, n: &Network, durability: silo_sys::fs::Durability) -> Result<()> {
        save_network(&self.dir, n, durability)
    }

    /// A network's id by name ("bridge" means the default), full id or a
    /// unique id prefix.
    fn lookup(&self, name: &str) -> Option<String> {
        let name = if name == "bridge" {
            DEFAULT_NETWORK
        } else {
            name
        };
        let nets = self.lock();
        if let Some(n) = nets.values().find(|n| n.name == name) {
            return Some(n.id.clone());
        }
        let mut hits = nets
            .keys()
            .filter(|k| k.starts_with(name) && !name.is_empty());
        match (hits.next(), hits.next()) {
            (Some(h), None) => Some(h.clone()),
            _ => None,
        }
    }

    /// Every network, by name.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One network by name, id or id prefix.
    pub fn get(&self, name: &str) -> Result<Network> {
        let id = self
            .lookup(name)
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))?;
        self.lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))
    }

    /// Picks a free /16 for a network without a subnet (Docker's order).
    fn free_subnet(nets: &BTreeMap<String, Network>) -> Option<Subnet> {
        let candidates = (18..=31u8)
            .map(|b| format!("172.{b}.0.0/16"))
            .chain((0..=240u8).step_by(16).map(|c| format!("192.168.{c}.0/20")));
        candidates
            .filter_map(|c| c.parse::<Subnet>().ok())
            .find(|c| !nets.values().any(|n| n.pool.subnet.overlaps(c)))
    }

    /// Creates a network and its bridge and firewall table.
    pub fn create(&self, req: &CreateNetwork) -> Result<Network> {
        if !valid_name(&req.name) {
            return Err(ServiceError::BadName(req.name.clone()));
        }
        let given = req.driver.as_deref().unwrap_or("");
        let driver =
            driver::canonical(given).ok_or_else(|| ServiceError::Driver(given.to_string()))?;
        driver::for_name(driver)
            .ok_or_else(|| ServiceError::Driver(driver.to_string()))?
            .validate(&req.options)?;
        if req.ipv6 && driver != "nat" && driver != "transparent" {
            return Err(ServiceError::Driver2(DriverError::Invalid {
                what: "--ipv6".into(),
                reason: format!(
                    "{driver} networks are IPv4 only (IPv6 is on nat and transparent networks)"
                ),
            }));
        }
        let mut nets = self.lock();
        let mut options = req.options.clone();
        if driver == "overlay" {
            let s = crate::overlay::settings(&req.options, 0)?;
            let used = |vni: u32| {
                nets.values().find(|n| {
                    n.driver == "overlay"
                        && crate::overlay::settings(&n.options, 0)
                            .is_ok_and(|o| o.vni == vni && o.port == s.port)
                })
            };
            if s.vni == 0 {
                // Docker's overlay VNIs start at 4096.
                let free = (4096..).find(|v| used(*v).is_none()).unwrap_or(4096);
                options.insert(crate::overlay::key::VNI.into(), free.to_string());
            } else if let Some(other) = used(s.vni) {
                return Err(ServiceError::Driver2(DriverError::Invalid {
                    what: "option vni".into(),
                    reason: format!(
                        "VNI {} on port {} is in use by network {}",
                        s.vni, s.port, other.name
                    ),
                }));
            }
        }
        if req.name == "bridge" || nets.values().any(|n| n.name == req.name) {
            return Err(ServiceError::Duplicate(req.name.clone()));
        }
        let subnet = match req.subnet {
            Some(s) => {
                if let Some(n) = nets.values().find(|n| n.pool.subnet.overlaps(&s)) {
                    return Err(ServiceError::Overlap {
                        subnet: s,
                        other: n.name.clone(),
                        theirs: n.pool.subnet,
                    });
                }
                s
            }
            None => Self::free_subnet(&nets).ok_or(ServiceError::NoSubnet)?,
        };
        let pool =
            Pool::new(subnet, req.gateway, req.ip_range).map_err(|source| ServiceError::Ipam {
                network: req.name.clone(),
                source,
            })?;
        let id = silo_sys::id::random_hex(32);
        if !req.ipv6 && (req.subnet6.is_some() || req.gateway6.is_some() || req.ip_range6.is_some())
        {
            return Err(ServiceError::Ipam {
                network: req.name.clone(),
                source: IpamError::Invalid(
                    "an IPv6 subnet, gateway or range needs an IPv6 network (--ipv6)".into(),
                ),
            });
        }
        let pool6 = if req.ipv6 {
            let subnet6 = match req.subnet6 {
                Some(s6) => {
                    if s6.addr.is_ipv4() {
                        return Err(ServiceError::Ipam {
                            network: req.name.clone(),
                            source: IpamError::Invalid(format!("{s6} is not an IPv6 subnet")),
                        });
                    }
                    if let Some(other) = nets
                        .values()
                        .find(|n| n.pool6.as_ref().is_some_and(|p| p.subnet.overlaps(&s6)))
                    {
                        return Err(ServiceError::Overlap {
                            subnet: s6,
                            other: other.name.clone(),
                            theirs: other.pool6.as_ref().map(|p| p.subnet).unwrap_or(s6),
                        });
                    }
                    s6
                }
                None => ula_subnet(&id),
            };
            Some(
                Pool::new(subnet6, req.gateway6, req.ip_range6).map_err(|source| {
                    ServiceError::Ipam {
                        network: req.name.clone(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        let parent = matches!(driver, "transparent" | "l2bridge")
            .then(|| driver::parent_of(&req.options).map(str::to_string))
            .flatten();
        if let Some(p) = &parent {
            let holds = |n: &Network| &n.bridge == p;
            if let Some(other) = nets.values().find(|n| holds(n)) {
                return Err(ServiceError::Driver2(DriverError::Invalid {
                    what: "option parent".into(),
                    reason: format!("interface {p} is busy: network {} uses it", other.name),
                }));
            }
        }
        let bridge = match parent
            .as_ref()
            .filter(|_| driver == "transparent" || driver == "l2bridge")
            .or(req.options.get(driver::opt::BRIDGE_NAME))
        {
            Some(b) => {
                if nets.values().any(|n| &n.bridge == b) {
                    return Err(ServiceError::Driver2(DriverError::Invalid {
                        what: format!("option {}", driver::opt::BRIDGE_NAME),
                        reason: format!("bridge {b} belongs to another network"),
                    }));
                }
                b.clone()
            }
            None => format!("silo{}", &id[..11]),
        };
        let n = Network {
            bridge,
            id,
            name: req.name.clone(),
            driver: driver.into(),
            pool,
            pool6,
            internal: req.internal,
            attachable: req.attachable,
            options,
            labels: req.labels.clone(),
            created: silo_units_now(),
            endpoints: BTreeMap::new(),
            max_concurrent_endpoints: 0,
            total_endpoints: 0,
            remotes: Vec::new(),
            remote_subnets: Vec::new(),
        };
        self.realize(&n)?;
        if let Err(e) = self.save(&n) {
            let _ = self.unrealize(&n);
            return Err(e);
        }
        nets.insert(n.id.clone(), n.clone());
        Ok(n)
    }

    /// The driver of a network.
    fn driver(n: &Network) -> Result<&'static dyn Driver> {
        driver::for_name(&n.driver).ok_or_else(|| ServiceError::Driver(n.driver.clone()))
    }

    /// A network's shared kernel objects, through its driver (idempotent).
    fn realize(&self, n: &Network) -> Result<u32> {
        let mut nl = Netlink::open().map_err(nl_err("opening netlink"))?;
        let index = Self::driver(n)?.setup_network(&mut nl, n)?;
        self.realized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n.id.clone(), index);
        Ok(index)
    }

    /// The bridge's index, making the bridge and table first unless this
    /// process already did.
    fn bridge_index(&self, nl: &mut Netlink, n: &Network) -> Result<u32> {
        let known = self
            .realized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n.id)
            .copied();
        match known {
            // A driver without a shared link (l2tunnel).
            Some(0) => return Ok(0),
            // Still there (it may have been deleted under us: then made again).
            Some(_) => {
                if let Some(l) = nl
                    .link(&n.bridge)
                    .map_err(nl_err("looking up the bridge"))?
                {
                    return Ok(l.index);
                }
            }
            None => {}
        }
        self.realize(n)
    }

    /// Removes a network's kernel objects; carries on past a failure.
    fn unrealize(&self, n: &Network) -> std::result::Result<(), Vec<String>> {
        self.realized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n.id);
        let driver = Self::driver(n).map_err(|e| vec![e.to_string()])?;
        match Netlink::open() {
            Ok(mut nl) => driver.teardown_network(&mut nl, n),
            Err(e) => Err(vec![e.to_string()]),
        }
    }

    /// Removes a network without endpoints.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.settle();
        let id = self
            .lookup(name)
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))?;
        let mut nets = self.lock();
        let Some(n) = nets.get(&id).cloned() else {
            return Err(ServiceError::NotFound(name.to_string()));
        };
        if n.name == DEFAULT_NETWORK {
            return Err(ServiceError::Predefined(n.name));
        }
        if !n.endpoints.is_empty() {
            return Err(ServiceError::InUse {
                name: n.name,
                count: n.endpoints.len(),
            });
        }
        if let Err(errs) = self.unrealize(&n) {
            return Err(ServiceError::Io {
                op: "removing the kernel objects of",
                path: PathBuf::from(&n.name),
                source: std::io::Error::other(errs.join("; ")),
            });
        }
        let p = self.path(&id);
        std::fs::remove_file(&p).map_err(|source| ServiceError::Io {
            op: "deleting",
            path: p,
            source,
        })?;
        nets.remove(&id);
        Ok(())
    }

    /// Connects `owner`'s namespace (the pinned file at `netns`) to each
    /// network of `joins`, in order: `eth0`, `eth1`…, the default route
    /// through the first non-internal one, which also gets the published
    /// `ports`. All or nothing.
    /// User networks also get the embedded DNS server at 127.0.0.11.
    pub fn attach(&self, spec: &AttachSpec<'_>) -> Result<Vec<(Network, Endpoint)>> {
        let AttachSpec {
            owner,
            netns,
            joins,
            ports,
            ..
        } = *spec;
        let ns = File::open(netns).map_err(|source| ServiceError::Io {
            op: "opening the network namespace",
            path: netns.to_path_buf(),
            source,
        })?;
        let mut done: Vec<(Network, Endpoint)> = Vec::new();
        let mut default_route = false;
        for (i, j) in joins.iter().enumerate() {
            let step = self.attach_one(spec, &ns, j, i, &mut default_route);
            match step {
                Ok(pair) => done.push(pair),
                Err(e) => {
                    for (n, ep) in done.iter().rev() {
                        let _ = self.detach_endpoint(&n.id, ep);
                    }
                    return Err(e);
                }
            }
        }
        let finish = (|| {
            if !ports.is_empty() {
                self.publish(owner, &mut done, ports)?;
            }
            if done.iter().any(|(n, _)| n.name != DEFAULT_NETWORK) {
                let sock = dns::bind_in(ns.as_fd()).map_err(|source| ServiceError::Io {
                    op: "opening the embedded DNS server's socket (127.0.0.11:53) in",
                    path: netns.to_path_buf(),
                    source,
                })?;
                self.dns.add(owner, sock, spec.dns_servers.to_vec());
            }
            Ok(())
        })();
        if let Err(e) = finish {
            for (n, ep) in done.iter().rev() {
                let _ = self.detach_endpoint(&n.id, ep);
            }
            return Err(e);
        }
        Ok(done)
    }

    /// Connects a running owner to one more network (`spec.joins` holds
    /// it): the next free `ethN`, the default route if the owner has none
    /// yet, and the embedded DNS server if this is its first user network.
    pub fn connect(&self, spec: &AttachSpec<'_>) -> Result<(Network, Endpoint)> {
        let [join] = spec.joins else {
            return Err(ServiceError::Io {
                op: "connecting",
                path: spec.netns.to_path_buf(),
                source: std::io::Error::other("connect takes exactly one network"),
            });
        };
        let ns = File::open(spec.netns).map_err(|source| ServiceError::Io {
            op: "opening the network namespace",
            path: spec.netns.to_path_buf(),
            source,
        })?;
        let mine = self.endpoints_of(spec.owner);
        let index = (0..)
            .find(|i| !mine.iter().any(|(_, e)| e.ifname == format!("eth{i}")))
            .unwrap_or(0);
        let mut default_route = mine
            .iter()
            .any(|(name, _)| self.get(name).is_ok_and(|n| !n.internal));
        let (n, ep) = self.attach_one(spec, &ns, join, index, &mut default_route)?;
        if n.name != DEFAULT_NETWORK && !self.dns.serves(spec.owner) {
            match dns::bind_in(ns.as_fd()) {
                Ok(sock) => self.dns.add(spec.owner, sock, spec.dns_servers.to_vec()),
                Err(source) => {
                    let _ = self.detach_endpoint(&n.id, &ep);
                    return Err(ServiceError::Io {
                        op: "opening the embedded DNS server's socket (127.0.0.11:53) in",
                        path: spec.netns.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok((n, ep))
    }

    /// Disconnects `owner` from one network (its interface goes, with the
    /// ports published on it); the embedded DNS server stops with its last
    /// user network.
    pub fn disconnect(&self, owner: &str, network: &str) -> Result<()> {
        let n = self.get(network)?;
        let ep = n
            .endpoints
            .values()
            .find(|e| e.owner == owner)
            .cloned()
            .ok_or_else(|| ServiceError::NotConnected {
                owner: owner.to_string(),
                network: n.name.clone(),
            })?;
        self.detach_endpoint(&n.id, &ep)
            .map_err(|e| ServiceError::Io {
                op: "disconnecting from",
                path: PathBuf::from(&n.name),
                source: std::io::Error::other(e),
            })?;
        let user_left = self
            .endpoints_of(owner)
            .iter()
            .any(|(name, _)| name != DEFAULT_NETWORK);
        if !user_left {
            self.dns.remove(owner);
        }
        Ok(())
    }

    /// Every published port with its owner.
    fn published(&self) -> Vec<(PortMapping, String)> {
        self.lock()
            .values()
            .flat_map(|n| n.endpoints.values())
            .flat_map(|e| {
                let who = format!("container {}", &e.owner[..e.owner.len().min(12)]);
                e.ports.iter().map(move |p| (*p, who.clone()))
            })
            .collect()
    }

    /// Every published port with the address it forwards to.
    fn targets(&self) -> Vec<(PortMapping, std::net::Ipv4Addr)> {
        self.lock()
            .values()
            .flat_map(|n| n.endpoints.values())
            .filter_map(|e| match e.ip {
                IpAddr::V4(v4) => Some(e.ports.iter().map(move |p| (*p, v4))),
                IpAddr::V6(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Makes the port table once per process, with every mapping on record.
    fn ensure_port_table(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if !self.ports_ready.load(Ordering::Acquire) {
            crate::nft::run(&ports::table_script(&self.targets()), false)?;
            self.ports_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Publishes `ports` on the endpoint of `done` with the default route:
    /// holds each host port, adds the DNAT elements (one transaction) and
    /// turns on hairpin mode on the endpoint's bridge port.
    fn publish(
        &self,
        owner: &str,
        done: &mut [(Network, Endpoint)],
        ports: &[PortRequest],
    ) -> Result<()> {
        let Some((n, ep)) = done.iter_mut().find(|(n, _)| !n.internal) else {
            return Err(ServiceError::NoGateway);
        };
        if n.driver != "nat" {
            return Err(ServiceError::Driver2(DriverError::Invalid {
                what: "ports".into(),
                reason: format!(
                    "ports are published on nat networks; network {} ({}) puts containers on the segment itself",
                    n.name, n.driver
                ),
            }));
        }
        let IpAddr::V4(target) = ep.ip else {
            return Err(ServiceError::NoGateway);
        };
        let mut taken = self.published();
        let mut got = Vec::new();
        let mut fds = Vec::new();
        let default_ip = n
            .options
            .get(driver::opt::HOST_BINDING)
            .and_then(|ip| ip.parse().ok());
        for r in ports {
            let mut r = *r;
            if r.host_ip.is_none() {
                r.host_ip = default_ip;
            }
            let (m, fd) = ports::reserve(&r, &taken)?;
            taken.push((m, format!("container {}", &owner[..owner.len().min(12)])));
            got.push(m);
            fds.extend(fd);
        }
        self.ensure_port_table()?;
        let pairs: Vec<(PortMapping, std::net::Ipv4Addr)> =
            got.iter().map(|m| (*m, target)).collect();
        crate::nft::run(&ports::add_script(&pairs), false)?;
        let finish = (|| {
            let mut nl = Netlink::open().map_err(nl_err("opening netlink"))?;
            let l = nl
                .link(&ep.host_ifname)
                .map_err(nl_err("looking up the endpoint's veth"))?
                .ok_or_else(|| ServiceError::Netlink {
                    what: "looking up the endpoint's veth".into(),
                    source: NetlinkError::Decode {
                        what: ep.host_ifname.clone(),
                        message: "it is gone".into(),
                    },
                })?;
            nl.set_bridge_port(
                l.index,
                vec![crate::netlink::InfoBridgePort::HairpinMode(true)],
            )
            .map_err(nl_err("turning on hairpin mode"))?;
            let mut nets = self.lock();
            let rec = nets
                .get_mut(&n.id)
                .ok_or_else(|| ServiceError::NotFound(n.name.clone()))?;
            if let Some(e) = rec.endpoints.get_mut(&ep.id) {
                e.ports = got.clone();
            }
            let snapshot = rec.clone();
            drop(nets);
            self.save_endpoints(&snapshot)
        })();
        if let Err(e) = finish {
            let _ = crate::nft::run(&ports::delete_script(&got), false);
            return Err(e);
        }
        ep.ports = got;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ep.id.clone(), fds);
        Ok(())
    }

    fn attach_one(
        &self,
        spec: &AttachSpec<'_>,
        ns: &File,
        j: &JoinRequest,
        index: usize,
        default_route: &mut bool,
    ) -> Result<(Network, Endpoint)> {
        let owner = spec.owner;
        let id = self
            .lookup(&j.network)
            .ok_or_else(|| ServiceError::NotFound(j.network.clone()))?;
        let mut nets = self.lock();
        let Some(n) = nets.get_mut(&id) else {
            return Err(ServiceError::NotFound(j.network.clone()));
        };
        if n.endpoints.values().any(|e| e.owner == owner) {
            return Err(ServiceError::AlreadyConnected {
                owner: owner.to_string(),
                network: n.name.clone(),
            });
        }
        let before = n.clone();
        let ep_id = silo_sys::id::random_hex(32);
        let ip = n
            .pool
            .allocate(&ep_id, j.ip)
            .map_err(|source| ServiceError::Ipam {
                network: n.name.clone(),
                source,
            })?;
        let ip6 = match n.pool6.as_mut() {
            Some(p6) => match p6.allocate(&ep_id, j.ip6) {
                Ok(a) => Some(a),
                Err(source) => {
                    n.pool.release(&ep_id);
                    return Err(ServiceError::Ipam {
                        network: n.name.clone(),
                        source,
                    });
                }
            },
            None if j.ip6.is_some() => {
                n.pool.release(&ep_id);
                return Err(ServiceError::Ipam {
                    network: n.name.clone(),
                    source: IpamError::Invalid(
                        "an IPv6 address was given, but the network has no IPv6 (--ipv6)".into(),
                    ),
                });
            }
            None => None,
        };
        let mac = match (j.mac, ip) {
            (Some(m), _) => m,
            (None, IpAddr::V4(v4)) => mac_for(v4),
            (None, IpAddr::V6(_)) => {
                let b = ep_id.as_bytes();
                [0x02, 0x42, b[0], b[1], b[2], b[3]]
            }
        };
        let text = crate::netlink::mac_str(mac);
        if let Some(other) = n.endpoints.values().find(|e| e.mac == text) {
            n.pool.release(&ep_id);
            if let Some(p6) = n.pool6.as_mut() {
                p6.release(&ep_id);
            }
            return Err(ServiceError::MacInUse {
                mac: text,
                network: n.name.clone(),
                owner: other.owner[..other.owner.len().min(12)].to_string(),
            });
        }
        let ep = Endpoint {
            host_ifname: format!("sv{}", &ep_id[..13]),
            ifname: format!("eth{index}"),
            id: ep_id,
            owner: owner.to_string(),
            ip,
            prefix: n.pool.subnet.prefix,
            ip6,
            ports: Vec::new(),
            names: spec.names.to_vec(),
            netns: Some(spec.netns.to_path_buf()),
            dns_servers: spec.dns_servers.to_vec(),
            policies: Vec::new(),
            mac: text,
            aliases: j.aliases.clone(),
        };
        let gateway = (!n.internal && !*default_route).then_some(n.pool.gateway);
        let made = (|| {
            let mut nl = Netlink::open().map_err(nl_err("opening netlink"))?;
            let bridge = self.bridge_index(&mut nl, n)?;
            Self::driver(n)?.setup_endpoint(
                &mut nl,
                n,
                bridge,
                &EndpointSpec {
                    id: ep.id.clone(),
                    host_ifname: ep.host_ifname.clone(),
                    ifname: ep.ifname.clone(),
                    mac,
                    addresses: std::iter::once((ip, ep.prefix))
                        .chain(ip6.zip(n.pool6.as_ref().map(|p| p.subnet.prefix)))
                        .collect(),
                    default_gateway: gateway,
                    default_gateway6: gateway.and(n.pool6.as_ref().map(|p| p.gateway)),
                    mtu: None,
                    isolated: false,
                },
                ns.as_fd(),
            )?;
            n.endpoints.insert(ep.id.clone(), ep.clone());
            n.total_endpoints += 1;
            n.max_concurrent_endpoints = n.max_concurrent_endpoints.max(n.endpoints.len() as u64);
            let snapshot = n.clone();
            if let Err(e) = self.save_endpoints(&snapshot) {
                if let Ok(d) = Self::driver(n) {
                    let _ = d.teardown_endpoint(&mut nl, &snapshot, &ep);
                }
                return Err(e);
            }
            Ok(snapshot)
        })();
        match made {
            Ok(snapshot) => {
                if gateway.is_some() {
                    *default_route = true;
                }
                Ok((snapshot, ep))
            }
            Err(e) => {
                *n = before;
                Err(e)
            }
        }
    }

    fn detach_endpoint(&self, network_id: &str, ep: &Endpoint) -> std::result::Result<(), String> {
        let mut errors = Vec::new();
        if !ep.ports.is_empty() {
            // A table this process never made holds none of them.
            if self.ports_ready.load(std::sync::atomic::Ordering::Acquire) {
                if let Err(e) = crate::nft::run(&ports::delete_script(&ep.ports), false) {
                    errors.push(format!("removing the published ports of {}: {e}", ep.owner));
                }
            }
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ep.id);
        let serial = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        // The record's policies, which may be newer than `ep`'s.
        let fresh = self
            .lock()
            .get(network_id)
            .and_then(|n| n.endpoints.get(&ep.id).cloned());
        let policies = fresh.as_ref().unwrap_or(ep).policies.clone();
        errors.extend(self.drop_policies(fresh.as_ref().unwrap_or(ep)));
        {
            let mut nets = self.lock();
            if let Some(n) = nets.get_mut(network_id) {
                n.endpoints.remove(&ep.id);
                if let Err(e) = self.save_endpoints(n) {
                    errors.push(e.to_string());
                }
            }
        }
        let nat = policies
            .iter()
            .any(|p| matches!(p.kind, PolicyKind::OutBoundNat(_)));
        if nat {
            if let Err(e) = self.apply_outbound() {
                errors.push(format!("removing the OutBoundNAT of {}: {e}", ep.owner));
            }
        }
        drop(serial);
        self.queue_deletion(network_id, ep);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Hands an endpoint's kernel objects (and then its address) to the
    /// reaper thread.
    fn queue_deletion(&self, network_id: &str, ep: &Endpoint) {
        *self.pending.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let mut reaper = self.reaper.lock().unwrap_or_else(|e| e.into_inner());
        if reaper.is_none() {
            let (tx, rx) = std::sync::mpsc::channel();
            let (dir, nets, pending) = (
                self.dir.clone(),
                Arc::clone(&self.networks),
                Arc::clone(&self.pending),
            );
            // Spawned from the caller's thread, so it works in the same
            // network namespace as the service.
            let spawned = std::thread::Builder::new()
                .name("silo-net-reaper".into())
                .spawn(move || reap(dir, nets, pending, rx));
            if spawned.is_ok() {
                *reaper = Some(tx);
            }
        }
        let job = (network_id.to_string(), ep.clone());
        let sent = match reaper.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        };
        if let Err((nid, ep)) = sent {
            // No thread: delete here.
            drop(reaper);
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = tx.send((nid, ep));
            drop(tx);
            reap(
                self.dir.clone(),
                Arc::clone(&self.networks),
                Arc::clone(&self.pending),
                rx,
            );
        }
    }

    /// Waits until every detached endpoint's kernel objects are gone and
    /// its address is free again.
    pub fn settle(&self) {
        let mut c = self.pending.count.lock().unwrap_or_else(|e| e.into_inner());
        while *c > 0 {
            c = self.pending.done.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Disconnects every endpoint of `owner`; carries on past a failure and
    /// reports every one. An owner without endpoints is fine.
    pub fn detach(&self, owner: &str) -> std::result::Result<(), String> {
        self.dns.remove(owner);
        let eps: Vec<(String, Endpoint)> = self
            .lock()
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .filter(|e| e.owner == owner)
                    .map(|e| (n.id.clone(), e.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let errors: Vec<String> = eps
            .iter()
            .filter_map(|(nid, ep)| self.detach_endpoint(nid, ep).err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Brings the kernel in line with the records after a restart: endpoints
    /// of owners that no longer run are removed (with their leases), and
    /// host veths (`sv…`), silo bridges and silo nftables tables that belong
    /// to no record are deleted; networks with endpoints get their bridge
    /// and table back. Carries on past a failure; returns every one.
    pub fn reconcile(&self, live: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut errors = Vec::new();
        let stale: Vec<(String, Endpoint)> = self
            .lock()
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .filter(|e| !live(&e.owner))
                    .map(|e| (n.id.clone(), e.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (nid, ep) in &stale {
            if let Err(e) = self.detach_endpoint(nid, ep) {
                errors.push(e);
            }
        }
        self.settle();
        // Addresses whose endpoint is gone (a crash between the two steps
        // of a detach) are free again.
        {
            let mut nets = self.lock();
            for n in nets.values_mut() {
                let orphans: Vec<String> = n
                    .pool
                    .leases
                    .values()
                    .filter(|owner| {
                        !n.endpoints.contains_key(*owner)
                            && !n.remotes.iter().any(|r| &r.id == *owner)
                    })
                    .cloned()
                    .collect();
                let orphans6: Vec<String> = n
                    .pool6
                    .iter()
                    .flat_map(|p| p.leases.values())
                    .filter(|owner| !n.endpoints.contains_key(*owner))
                    .cloned()
                    .collect();
                for o in &orphans {
                    n.pool.release(o);
                }
                if let Some(p6) = n.pool6.as_mut() {
                    for o in &orphans6 {
                        p6.release(o);
                    }
                }
                let orphans = [orphans, orphans6].concat();
                if !orphans.is_empty() {
                    if let Err(e) = self.save_endpoints(n) {
                        errors.push(e.to_string());
                    }
                }
            }
        }
        // The port table again from the records, and the live endpoints'
        // host ports held again (the sockets went with the last process).
        self.ports_ready
            .store(false, std::sync::atomic::Ordering::Release);
        if let Err(e) = self.ensure_port_table() {
            errors.push(e.to_string());
        }
        if let Err(e) = self.apply_outbound() {
            errors.push(e.to_string());
        }
        // Policies in the endpoints' namespaces again (a crash may have
        // come between the record and the kernel); each is idempotent.
        for n in self.list() {
            for ep in n.endpoints.values() {
                for p in &ep.policies {
                    if matches!(p.kind, PolicyKind::OutBoundNat(_)) {
                        continue;
                    }
                    if let Err(e) = self.realize_policy(ep, &p.kind, &ep.policies, true) {
                        let exists = e.contains("File exists");
                        if !exists {
                            errors.push(format!("policy {} of endpoint {}: {e}", p.id, ep.id));
                        }
                    }
                }
            }
        }
        for n in self.list() {
            for ep in n.endpoints.values().filter(|e| !e.ports.is_empty()) {
                let mut fds = Vec::new();
                for m in &ep.ports {
                    let again = PortRequest {
                        protocol: m.protocol,
                        host_ip: m.host_ip,
                        host_first: m.host_port,
                        host_last: m.host_port,
                        container_port: m.container_port,
                    };
                    match ports::reserve(&again, &[]) {
                        Ok((_, fd)) => fds.extend(fd),
                        Err(e) => errors.push(format!("container {}: {e}", ep.owner)),
                    }
                }
                self.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ep.id.clone(), fds);
            }
        }
        // The embedded DNS server again for owners on user networks.
        for n in self.list().iter().filter(|n| n.name != DEFAULT_NETWORK) {
            for ep in n.endpoints.values() {
                let Some(netns) = &ep.netns else { continue };
                if self.dns.serves(&ep.owner) {
                    continue;
                }
                let bound = File::open(netns).and_then(|f| dns::bind_in(f.as_fd()));
                match bound {
                    Ok(sock) => self.dns.add(&ep.owner, sock, ep.dns_servers.clone()),
                    Err(e) => errors.push(format!(
                        "container {}: the embedded DNS server in {}: {e}",
                        ep.owner,
                        netns.display()
                    )),
                }
            }
        }
        let nets = self.list();
        for n in nets.iter().filter(|n| !n.endpoints.is_empty()) {
            if let Err(e) = self.realize(n) {
                errors.push(e.to_string());
            }
        }
        let veths: Vec<&str> = nets
            .iter()
            .flat_map(|n| n.endpoints.values().map(|e| e.host_ifname.as_str()))
            .collect();
        match Netlink::open() {
            Ok(mut nl) => match nl.links() {
                Ok(links) => {
                    for l in links {
                        let ours_veth =
                            l.name.starts_with("sv") && l.kind.as_deref() == Some("veth");
                        let ours_bridge =
                            l.name.starts_with("silo") && l.kind.as_deref() == Some("bridge");
                        let ours_vxlan =
                            l.name.starts_with("sx") && l.kind.as_deref() == Some("vxlan");
                        let orphan = (ours_veth && !veths.contains(&l.name.as_str()))
                            || (ours_bridge && !nets.iter().any(|n| n.bridge == l.name))
                            || (ours_vxlan
                                && !nets.iter().any(|n| {
                                    n.driver == "overlay" && crate::overlay::vxlan_name(n) == l.name
                                }));
                        if orphan {
                            match nl.del_link(l.index) {
                                // A veth's peer went with its other end.
                                Err(e) if e.errno() == Some(libc::ENODEV) => {}
                                Err(e) => {
                                    errors.push(format!("deleting stray link {}: {e}", l.name))
                                }
                                Ok(()) => {}
                            }
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
        match firewall::tables("inet") {
            Ok(tables) => {
                for t in tables {
                    let known = nets
                        .iter()
                        .any(|n| t == format!("silo-{}", &n.id[..n.id.len().min(12)]));
                    if !known {
                        if let Some(id) = t.strip_prefix("silo-") {
                            if let Err(e) = firewall::remove(id) {
                                errors.push(e.to_string());
                            }
                        }
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        // The l2bridge and overlay (netdev family) tables of networks gone.
        for (family, prefix) in [("netdev", "silo-l2-"), ("netdev", "silo-ov-")] {
            match firewall::tables(family) {
                Ok(tables) => {
                    for t in tables.iter().filter(|t| t.starts_with(prefix)) {
                        let known = nets
                            .iter()
                            .any(|n| *t == format!("{prefix}{}", &n.id[..n.id.len().min(12)]));
                        if !known {
                            let script = format!("delete table {family} {t}\n");
                            if let Err(e) = crate::nft::run(&script, false) {
                                errors.push(format!("removing stray table {t}: {e}"));
                            }
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        errors
    }

    /// The endpoints of `owner`, with their networks' names.
    pub fn endpoints_of(&self, owner: &str) -> Vec<(String, Endpoint)> {
        self.lock()
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .filter(|e| e.owner == owner)
                    .map(|e| (n.name.clone(), e.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A unique local IPv6 /64 (fdXX:…) made from a network's id, for an IPv6
/// network created without a subnet.
fn ula_subnet(id: &str) -> Subnet {
    let hex: Vec<u16> = (0..3)
        .map(|i| u16::from_str_radix(id.get(i * 4..i * 4 + 4).unwrap_or("0"), 16).unwrap_or(0))
        .collect();
    let a = std::net::Ipv6Addr::new(
        0xfd00 | (hex[0] >> 8),
        hex[1],
        hex[2],
        hex[0] & 0xff,
        0,
        0,
        0,
        0,
    );
    Subnet {
        addr: IpAddr::V6(a),
        prefix: 64,
    }
}

/// Writes a network's record atomically.
fn save_network(dir: &Path, n: &Network, durability: silo_sys::fs::Durability) -> Result<()> {
    let p = dir.join("networks").join(format!("{}.json", n.id));
    let bytes = serde_json::to_vec_pretty(n).map_err(|e| ServiceError::Io {
        op: "encoding",
        path: p.clone(),
        source: std::io::Error::other(e),
    })?;
    silo_sys::fs::write_atomic(&p, &bytes, durability).map_err(|source| ServiceError::Io {
        op: "writing",
        path: p,
        source,
    })
}

/// Endpoint deletions in flight, for [`Service::settle`].
#[derive(Debug, Default)]
struct Pending {
    count: Mutex<usize>,
    done: std::sync::Condvar,
}

/// The reaper thread: deletes detached endpoints' kernel objects, then
/// gives their addresses back (not before, so an address and the MAC made
/// from it are never on the bridge twice). A veth's deletion waits for RCU
/// grace periods (~15 ms here), which no container start or exit should
/// wait for. Failures go to the log; a restart's reconcile removes what a
/// crash left.
fn reap(
    dir: PathBuf,
    networks: Networks,
    pending: Arc<Pending>,
    rx: std::sync::mpsc::Receiver<(String, Endpoint)>,
) {
    for (nid, ep) in rx {
        // A socket per deletion: an idle reaper holds no descriptor.
        let mut nl = Netlink::open().ok();
        let network = networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&nid)
            .cloned();
        let driver = network
            .as_ref()
            .and_then(|n| driver::for_name(&n.driver))
            .unwrap_or(&driver::Nat);
        match (nl.as_mut(), network.as_ref()) {
            (Some(nl), Some(n)) => {
                if let Err(e) = driver.teardown_endpoint(nl, n, &ep) {
                    eprintln!("network service: removing endpoint {}: {e}", ep.id);
                }
            }
            _ => eprintln!(
                "network service: no netlink socket (or network) to remove endpoint {}",
                ep.id
            ),
        }
        {
            let mut nets = networks.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = nets.get_mut(&nid) {
                n.pool.release(&ep.id);
                if let Some(p6) = n.pool6.as_mut() {
                    p6.release(&ep.id);
                }
                if let Err(e) = save_network(&dir, n, silo_sys::fs::Durability::Atomic) {
                    eprintln!("network service: {e}");
                }
            }
        }
        let mut c = pending.count.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.saturating_sub(1);
        pending.done.notify_all();
    }
}

fn silo_units_now() -> String {
    silo_units::now_rfc3339()
}

/// Endpoint policies and an overlay's remote objects.
impl Service {
    /// The network id and endpoint for an endpoint id (or unique prefix).
    fn find_endpoint(&self, id: &str) -> Result<(String, Endpoint)> {
        let nets = self.lock();
        let hits: Vec<(String, Endpoint)> = nets
            .values()
            .flat_map(|n| n.endpoints.values().map(move |e| (n.id.clone(), e)))
            .filter(|(_, e)| !id.is_empty() && e.id.starts_with(id))
            .map(|(n, e)| (n, e.clone()))
            .collect();
        match hits.len() {
            1 => Ok(hits.into_iter().next().unwrap_or_else(|| unreachable!())),
            0 => Err(ServiceError::EndpointNotFound(id.to_string())),
            _ => Err(ServiceError::Ambiguous(id.to_string())),
        }
    }

    /// Replaces an endpoint's policy list on record.
    fn store_policies(&self, network_id: &str, ep_id: &str, policies: Vec<Policy>) -> Result<()> {
        let mut nets = self.lock();
        let n = nets
            .get_mut(network_id)
            .ok_or_else(|| ServiceError::NotFound(network_id.to_string()))?;
        let ep = n
            .endpoints
            .get_mut(ep_id)
            .ok_or_else(|| ServiceError::EndpointNotFound(ep_id.to_string()))?;
        let old = std::mem::replace(&mut ep.policies, policies);
        let snapshot = n.clone();
        drop(nets);
        let saved = self.save_endpoints(&snapshot);
        if saved.is_err() {
            let mut nets = self.lock();
            if let Some(e) = nets
                .get_mut(network_id)
                .and_then(|n| n.endpoints.get_mut(ep_id))
            {
                e.policies = old;
            }
        }
        saved
    }

    /// The host's OutBoundNAT table again, from the records (one
    /// transaction).
    fn apply_outbound(&self) -> Result<()> {
        let entries: Vec<crate::policy::Outbound> = self
            .lock()
            .values()
            .flat_map(|n| {
                n.endpoints.values().flat_map(move |e| {
                    e.policies.iter().filter_map(move |p| match &p.kind {
                        PolicyKind::OutBoundNat(o) => Some(crate::policy::Outbound {
                            ip: e.ip,
                            subnet: n.pool.subnet,
                            link: n.bridge.clone(),
                            exceptions: o
                                .exceptions
                                .iter()
                                .filter_map(|x| crate::policy::prefix("exception", x).ok())
                                .collect(),
                        }),
                        _ => None,
                    })
                })
            })
            .collect();
        crate::nft::run(&crate::policy::outbound_script(&entries), false)?;
        Ok(())
    }

    /// Makes `policies` (the endpoint's whole new list) true for `kind`'s
    /// part: ACLs are one table in the endpoint's namespace, OutBoundNAT
    /// the host's table; QOS and Route change one object.
    fn realize_policy(
        &self,
        ep: &Endpoint,
        kind: &PolicyKind,
        policies: &[Policy],
        adding: bool,
    ) -> std::result::Result<(), String> {
        match kind {
            PolicyKind::Acl(_) => {
                let script = crate::policy::acl_script(&ep.id, &ep.ifname, policies)
                    .map_err(|e| e.to_string())?;
                let ns = crate::l2::endpoint_ns(ep)
                    .ok_or_else(|| "its container's network namespace is gone".to_string())?;
                crate::nat::in_ns(ns.as_fd(), || crate::nft::run(&script, false))
                    .map_err(|e| e.to_string())?
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            PolicyKind::Qos(q) => crate::l2::with_endpoint_link(ep, |nl, index| {
                if adding {
                    let (burst, limit) = crate::policy::tbf_sizes(q.max_bytes_per_sec);
                    nl.set_tbf(index, q.max_bytes_per_sec, burst, limit)
                } else {
                    nl.del_root_qdisc(index)
                }
            }),
            PolicyKind::Route(r) => {
                let d = crate::policy::prefix("destination prefix", &r.destination_prefix)
                    .map_err(|e| e.to_string())?;
                let via = r.next_hop.parse::<IpAddr>().ok();
                crate::l2::with_endpoint_link(ep, |nl, index| {
                    let route = crate::netlink::Route {
                        dst: d.addr,
                        prefix: d.prefix,
                        via,
                        oif: Some(index),
                        onlink: false,
                        unreachable: false,
                    };
                    if adding {
                        nl.add_route(&route)
                    } else {
                        nl.del_route(&route)
                    }
                })
            }
            PolicyKind::OutBoundNat(_) => self.apply_outbound().map_err(|e| e.to_string()),
        }
    }

    /// Adds a policy to a running endpoint (id or unique prefix); returns
    /// it with its new id. Refused policies change nothing.
    pub fn add_policy(&self, endpoint: &str, kind: PolicyKind) -> Result<(String, Policy)> {
        let _serial = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (nid, ep) = self.find_endpoint(endpoint)?;
        let driver = self
            .lock()
            .get(&nid)
            .map(|n| n.driver.clone())
            .unwrap_or_default();
        crate::policy::validate(&kind, &driver).map_err(|source| ServiceError::Policy {
            endpoint: ep.id.clone(),
            source,
        })?;
        if let PolicyKind::Qos(_) = kind {
            if let Some(p) = ep
                .policies
                .iter()
                .find(|p| matches!(p.kind, PolicyKind::Qos(_)))
            {
                return Err(ServiceError::QosExists {
                    endpoint: ep.id.clone(),
                    policy: p.id.clone(),
                });
            }
        }
        let policy = Policy {
            id: silo_sys::id::random_hex(12),
            kind,
        };
        let mut list = ep.policies.clone();
        list.push(policy.clone());
        // On record first (OutBoundNAT is made from the records), then in
        // the kernel; a kernel failure puts the record back.
        self.store_policies(&nid, &ep.id, list)?;
        if let Err(reason) = self.realize_policy(&ep, &policy.kind, &ep_with(&ep, &policy), true) {
            let _ = self.store_policies(&nid, &ep.id, ep.policies.clone());
            if let PolicyKind::OutBoundNat(_) = policy.kind {
                let _ = self.apply_outbound();
            }
            return Err(ServiceError::Apply {
                endpoint: ep.id.clone(),
                reason,
            });
        }
        Ok((ep.id, policy))
    }

    /// Removes a policy (by id) from an endpoint.
    pub fn remove_policy(&self, endpoint: &str, policy: &str) -> Result<()> {
        let _serial = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let (nid, ep) = self.find_endpoint(endpoint)?;
        let Some(p) = ep.policies.iter().find(|p| p.id == policy).cloned() else {
            return Err(ServiceError::PolicyNotFound {
                endpoint: ep.id.clone(),
                policy: policy.to_string(),
            });
        };
        let rest: Vec<Policy> = ep
            .policies
            .iter()
            .filter(|x| x.id != policy)
            .cloned()
            .collect();
        let failed = |reason| ServiceError::Apply {
            endpoint: ep.id.clone(),
            reason,
        };
        if let PolicyKind::OutBoundNat(_) = p.kind {
            // Made from the records: the record first.
            self.store_policies(&nid, &ep.id, rest.clone())?;
            if let Err(reason) = self.realize_policy(&ep, &p.kind, &rest, false) {
                let _ = self.store_policies(&nid, &ep.id, ep.policies.clone());
                return Err(failed(reason));
            }
            return Ok(());
        }
        // The kernel first: a crash in between leaves the policy on record,
        // and a restart makes it again, so record and kernel agree.
        self.realize_policy(&ep, &p.kind, &rest, false)
            .map_err(failed)?;
        if let Err(e) = self.store_policies(&nid, &ep.id, rest) {
            let _ = self.realize_policy(&ep, &p.kind, &ep.policies, true);
            return Err(e);
        }
        Ok(())
    }

    /// Undoes an endpoint's policies that outlive its interface: the ACL
    /// table in its namespace (a namespace kept by `disconnect`).
    fn drop_policies(&self, ep: &Endpoint) -> Vec<String> {
        let mut errors = Vec::new();
        if ep
            .policies
            .iter()
            .any(|p| matches!(p.kind, PolicyKind::Acl(_)))
        {
            if let Some(ns) = crate::l2::endpoint_ns(ep) {
                let t = crate::policy::acl_table(&ep.id);
                let script = crate::nft::drop_table("inet", &t);
                match crate::nat::in_ns(ns.as_fd(), || crate::nft::run(&script, false)) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => errors.push(format!("removing the ACLs of {}: {e}", ep.id)),
                    Err(e) => errors.push(format!("removing the ACLs of {}: {e}", ep.id)),
                }
            }
        }
        errors
    }

    fn overlay(&self, network: &str) -> Result<Network> {
        let n = self.get(network)?;
        if n.driver != "overlay" {
            return Err(ServiceError::Remote {
                network: n.name,
                reason: "remote endpoints and subnets are for overlay networks".into(),
            });
        }
        Ok(n)
    }

    /// The indexes of an overlay's gateway and VXLAN links (made if
    /// missing).
    fn overlay_links(&self, nl: &mut Netlink, n: &Network) -> Result<(u32, u32)> {
        let gw = self.bridge_index(nl, n)?;
        let vx = nl
            .link(&crate::overlay::vxlan_name(n))
            .map_err(nl_err("looking up the VXLAN link"))?
            .map(|l| l.index)
            .ok_or_else(|| ServiceError::Io {
                op: "finding the VXLAN link of",
                path: PathBuf::from(&n.name),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
        Ok((gw, vx))
    }

    /// Runs `f` on overlay `n`'s record, under the lock, with a netlink
    /// socket and the indexes of its gateway and VXLAN links.
    fn in_overlay<T>(
        &self,
        n: &Network,
        f: impl FnOnce(&mut Network, &mut Netlink, u32, u32) -> Result<T>,
    ) -> Result<T> {
        let mut nets = self.lock();
        let rec = nets
            .get_mut(&n.id)
            .ok_or_else(|| ServiceError::NotFound(n.name.clone()))?;
        let mut nl = Netlink::open().map_err(nl_err("opening netlink"))?;
        let (gw, vx) = self.overlay_links(&mut nl, rec)?;
        f(rec, &mut nl, gw, vx)
    }

    /// The one remote object of `items` that `which` names (its id, a
    /// unique id prefix, or `key`).
    fn pick<'a, T>(
        n: &Network,
        what: &'static str,
        items: &'a [T],
        which: &str,
        id: impl Fn(&T) -> &str,
        key: impl Fn(&T) -> String,
    ) -> Result<&'a T> {
        let hits: Vec<&T> = items
            .iter()
            .filter(|r| key(r) == which || (!which.is_empty() && id(r).starts_with(which)))
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(ServiceError::RemoteNotFound {
                network: n.name.clone(),
                what,
                id: which.to_string(),
            }),
            _ => Err(ServiceError::Ambiguous(which.to_string())),
        }
    }

    /// Adds a remote endpoint to an overlay: its address is leased here (it
    /// must be in the subnet and free), frames for it go to its VTEP. On
    /// record first (a restart re-makes the kernel side from the records),
    /// then in the kernel; a kernel failure takes both back.
    pub fn add_remote(
        &self,
        network: &str,
        ip: IpAddr,
        mac: Option<[u8; 6]>,
        provider: IpAddr,
        name: Option<String>,
    ) -> Result<RemoteEndpoint> {
        let n = self.overlay(network)?;
        if !provider.is_ipv4() || provider.is_unspecified() || provider.is_loopback() {
            return Err(ServiceError::Remote {
                network: n.name,
                reason: format!("provider address {provider} is not a host's IPv4 address"),
            });
        }
        if let Some(x) = &name {
            if !valid_name(x) {
                return Err(ServiceError::Remote {
                    network: n.name,
                    reason: format!("{x:?} is not a name (letters, digits and . _ -)"),
                });
            }
        }
        let id = silo_sys::id::random_hex(32);
        let mac = match (mac, ip) {
            (Some(m), _) => m,
            (None, IpAddr::V4(v4)) => mac_for(v4),
            (None, IpAddr::V6(_)) => {
                return Err(ServiceError::Remote {
                    network: n.name,
                    reason: "overlay networks are IPv4".into(),
                })
            }
        };
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(ServiceError::Remote {
                network: n.name,
                reason: "a remote endpoint's MAC must be a unicast address".into(),
            });
        }
        let r = RemoteEndpoint {
            id: id.clone(),
            ip,
            mac: crate::netlink::mac_str(mac),
            provider,
            name,
        };
        self.in_overlay(&n, |rec, nl, gw, vx| {
            rec.pool
                .allocate(&id, Some(ip))
                .map_err(|source| ServiceError::Ipam {
                    network: rec.name.clone(),
                    source,
                })?;
            let taken = rec
                .endpoints
                .values()
                .map(|e| (&e.mac, &e.owner))
                .chain(rec.remotes.iter().map(|x| (&x.mac, &x.id)))
                .find(|(m, _)| **m == r.mac)
                .map(|(_, o)| o.clone());
            if let Some(owner) = taken {
                rec.pool.release(&id);
                return Err(ServiceError::MacInUse {
                    mac: r.mac.clone(),
                    network: rec.name.clone(),
                    owner,
                });
            }
            let shared = rec.remotes.iter().any(|x| x.provider == provider);
            rec.remotes.push(r.clone());
            let undo = |rec: &mut Network| {
                rec.remotes.retain(|x| x.id != id);
                rec.pool.release(&id);
            };
            if let Err(e) = self.save_endpoints(rec) {
                undo(rec);
                return Err(e);
            }
            if let Err(source) = crate::overlay::add_remote(nl, gw, vx, &r) {
                let _ = crate::overlay::remove_remote(nl, gw, vx, &r, shared);
                undo(rec);
                let _ = self.save_endpoints(rec);
                return Err(ServiceError::Netlink {
                    what: format!("adding remote endpoint {ip}"),
                    source,
                });
            }
            Ok(r)
        })
    }

    /// Removes a remote endpoint (by id, unique id prefix or address):
    /// from the kernel first, then from the records.
    pub fn remove_remote(&self, network: &str, which: &str) -> Result<()> {
        let n = self.overlay(network)?;
        let r = Self::pick(
            &n,
            "endpoint",
            &n.remotes,
            which,
            |r| &r.id,
            |r| r.ip.to_string(),
        )?
        .clone();
        self.in_overlay(&n, |rec, nl, gw, vx| {
            let shared = rec
                .remotes
                .iter()
                .any(|x| x.id != r.id && x.provider == r.provider);
            let errors = crate::overlay::remove_remote(nl, gw, vx, &r, shared);
            rec.remotes.retain(|x| x.id != r.id);
            rec.pool.release(&r.id);
            self.save_endpoints(rec)?;
            removed("removing a remote endpoint of", rec, errors)
        })
    }

    /// Routes another host's subnet through it (HNS's RemoteSubnetRoute).
    pub fn add_remote_subnet(
        &self,
        network: &str,
        prefix: crate::ipam::Subnet,
        provider: IpAddr,
        router_mac: [u8; 6],
    ) -> Result<RemoteSubnet> {
        let n = self.overlay(network)?;
        if !prefix.addr.is_ipv4() || !provider.is_ipv4() || provider.is_loopback() {
            return Err(ServiceError::Remote {
                network: n.name,
                reason: "remote subnets and provider addresses are IPv4 (and not loopback)".into(),
            });
        }
        if router_mac[0] & 1 == 1 || router_mac == [0; 6] {
            return Err(ServiceError::Remote {
                network: n.name,
                reason: "the router MAC must be a unicast address".into(),
            });
        }
        if let Some(other) = self.list().iter().find(|o| o.pool.subnet.overlaps(&prefix)) {
            return Err(ServiceError::Overlap {
                subnet: prefix,
                other: other.name.clone(),
                theirs: other.pool.subnet,
            });
        }
        if let Some(o) = n.remote_subnets.iter().find(|o| o.prefix.overlaps(&prefix)) {
            return Err(ServiceError::Remote {
                network: n.name.clone(),
                reason: format!(
                    "remote subnet {prefix} overlaps remote subnet {} ({})",
                    o.prefix, o.id
                ),
            });
        }
        let r = RemoteSubnet {
            id: silo_sys::id::random_hex(32),
            prefix,
            provider,
            router_mac: crate::netlink::mac_str(router_mac),
        };
        self.in_overlay(&n, |rec, nl, gw, vx| {
            let shared = rec
                .remote_subnets
                .iter()
                .any(|x| x.provider == r.provider && x.router_mac == r.router_mac);
            rec.remote_subnets.push(r.clone());
            if let Err(e) = self.save_endpoints(rec) {
                rec.remote_subnets.retain(|x| x.id != r.id);
                return Err(e);
            }
            if let Err(source) = crate::overlay::add_remote_subnet(nl, gw, vx, &r, false) {
                let _ = crate::overlay::remove_remote_subnet(nl, gw, vx, &r, shared);
                rec.remote_subnets.retain(|x| x.id != r.id);
                let _ = self.save_endpoints(rec);
                return Err(ServiceError::Netlink {
                    what: format!("adding remote subnet {prefix}"),
                    source,
                });
            }
            Ok(r)
        })
    }

    /// Removes a remote subnet (by id, unique id prefix or prefix).
    pub fn remove_remote_subnet(&self, network: &str, which: &str) -> Result<()> {
        let n = self.overlay(network)?;
        let r = Self::pick(
            &n,
            "subnet",
            &n.remote_subnets,
            which,
            |r| &r.id,
            |r| r.prefix.to_string(),
        )?
        .clone();
        self.in_overlay(&n, |rec, nl, gw, vx| {
            let shared = rec
                .remote_subnets
                .iter()
                .any(|x| x.id != r.id && x.provider == r.provider && x.router_mac == r.router_mac);
            let errors = crate::overlay::remove_remote_subnet(nl, gw, vx, &r, shared);
            rec.remote_subnets.retain(|x| x.id != r.id);
            self.save_endpoints(rec)?;
            removed("removing a remote subnet of", rec, errors)
        })
    }
}

/// A removal that went on past kernel failures: they, if any, as its error.
fn removed(op: &'static str, n: &Network, errors: Vec<String>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Io {
            op,
            path: PathBuf::from(&n.name),
            source: std::io::Error::other(errors.join("; ")),
        })
    }
}

/// An endpoint's policies with one more.
fn ep_with(ep: &Endpoint, p: &Policy) -> Vec<Policy> {
    let mut v = ep.policies.clone();
    v.push(p.clone());
    v
}

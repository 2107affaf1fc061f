//! The engine core behind `silod` (the HCS of the slides): containers,
//! pods, images and volumes in silo's own terms, persisted in a
//! transactional store, each running container supervised by its own
//! `silo-monitor`.
//!
//! Front ends sit above it and translate: the Docker adapter
//! (`silo-docker`) turns Docker's requests into [`ContainerConfig`]s and
//! the engine's state into Docker's shapes; a CRI server will do the same
//! for Kubernetes. Nothing here knows either protocol.
//!
//! A container's life is a series of stages, each with an inverse:
//! create (reserve the name) → prepare (directory, snapshot, volumes, OCI
//! spec) → attach network (pin a network namespace, let the
//! [`NetworkService`] connect it, write /etc files) → spawn (the monitor)
//! → running → exit → detach (network) → remove. Teardown runs the
//! inverses, carries on past a failure and reports every one
//! ([`TeardownError`]); recovery after a crash runs the inverses of what a
//! dead container still holds.
//!
//! Every method is blocking and thread-safe; front ends call them from
//! blocking tasks.
//!
//! Layout: `<data_root>/silo.db` (SQLite: a row per container and per pod),
//! `<data_root>/containers/<id>/` (bundle config.json, the monitor's state
//! dir with the log and exit.json, the generated /etc files),
//! `<data_root>/storage/` (images, layers, snapshots, volumes),
//! `<exec_root>/runtime/` (the compute service's state),
//! `<exec_root>/netns/<id>` (pinned network namespaces),
//! `<exec_root>/pods/<id>/` (a pod's pinned namespaces and /etc files).

use std::collections::{HashMap, HashSet};

/// How many removed containers' exit codes are kept for their waiters.
pub(crate) const REMOVED_EXITS_KEPT: usize = 1024;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

mod containers;
pub mod distribution;
pub mod error;
mod events;
mod health;
mod images;
mod io;
mod lifecycle;
pub mod model;
pub mod network;
mod networks;
pub mod pods;
mod reaper;
mod recover;
pub mod sandbox;
mod spec;
mod store;
mod teardown;
mod volumes;

pub use distribution::{Progress, TransferRequest};
pub use error::{Error, Kind, RegistryFailure, Result, Step, TeardownError};
pub use events::{Action, Event, Scope};
pub use images::CommitRequest;
pub use io::exec::{ExecInfo, ExecSpec};
pub use io::stats::{InterfaceCounters, StatsSample};
pub use io::{AttachOptions, AttachStream, LogChunk, LogOptions, PathStat, ProcessTable};
pub use lifecycle::{CreateRequest, Created, Outcome, UpdateRequest, WaitCondition, WaitResult};
pub use model::*;
pub use network::{Attachment, LoopbackOnly, NetworkService};
pub use networks::Hns;
pub use pods::{Pod, PodConfig, PodStatus};
pub use silo_registry::{Config as RegistryConfig, Credentials};
pub use spec::{host_device, ALL_CAPS, INIT_TARGET};
pub use store::{LegacyRecords, SCHEMA_VERSION};
pub use volumes::VolumeUsage;

/// Where the engine keeps things and which helper binaries it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Persistent data: the store, images, volumes (default /var/lib/silo).
    pub data_root: PathBuf,
    /// Runtime state: monitors' sockets, runtime root, pinned namespaces
    /// (default /run/silo).
    pub exec_root: PathBuf,
    /// The `silo-monitor` binary.
    pub monitor_binary: PathBuf,
    /// The `silo-runtime` binary (used for exec).
    pub runtime_binary: PathBuf,
    /// A static init (tini) for [`ContainerConfig::init`]. None: refused.
    pub init_binary: Option<PathBuf>,
    /// Insecure registries and Docker Hub mirrors.
    pub registry: silo_registry::Config,
    /// A sandbox disk of this size for every container that asks for none
    /// (None: containers write to the data root's filesystem).
    pub sandbox_disk: Option<u64>,
}

/// What the engine is given besides its configuration.
pub struct Services<'a> {
    /// Connects containers' network namespaces.
    pub network: Arc<dyn NetworkService>,
    /// The network service itself, for network management (None: a daemon
    /// without networks; network operations answer "unavailable").
    pub hns: Option<Arc<silo_network::Service>>,
    /// Reads container rows of an older store schema, if any are left.
    pub legacy: Option<&'a dyn LegacyRecords>,
}

impl Default for Services<'_> {
    fn default() -> Self {
        Services {
            network: Arc::new(LoopbackOnly),
            hns: None,
            legacy: None,
        }
    }
}

/// Facts about the engine for front ends' info pages.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub containers: usize,
    pub running: usize,
    pub paused: usize,
    pub images: usize,
    /// The host is pure cgroup v2.
    pub cgroup_v2: bool,
    pub data_root: PathBuf,
    pub runtime_binary: PathBuf,
}

/// The engine.
pub struct Engine {
    config: Config,
    /// Weak self-reference so watcher threads can hold the engine.
    me: Weak<Engine>,
    db: store::Db,
    /// Every container on record, by id (the store's rows, in memory).
    containers: Mutex<HashMap<String, Container>>,
    /// Every pod on record, by id.
    pods: Mutex<HashMap<String, Pod>>,
    /// Signalled on every container state change (wait, stop, probes).
    changed: Condvar,
    /// One lock per container for lifecycle operations (start/stop/rm...).
    op_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    events: events::Bus,
    host: OnceLock<silo_compute::Host>,
    /// Images, layers, snapshots and volumes (`<data_root>/storage`).
    storage: silo_storage::Store,
    /// The registry client (pulls and pushes).
    registry: silo_registry::Client,
    network: Arc<dyn NetworkService>,
    hns: Option<Arc<silo_network::Service>>,
    /// Pure cgroup v2 host: containers get a cgroup namespace.
    cgroupns: bool,
    /// Exit codes of recently removed containers, for the waits that were
    /// waiting for the removal (bounded: waiters read it at once).
    removed_exits: Mutex<std::collections::VecDeque<(String, i64)>>,
    /// Containers being restarted by hand: their exit does not trigger
    /// auto-remove.
    restarting_by_hand: Mutex<HashSet<String>>,
    /// The default seccomp profile per capability set (compiling it costs
    /// milliseconds).
    seccomp_profiles: Mutex<Vec<(Vec<String>, silo_oci::Seccomp)>>,
    /// The probe thread that should run for each container: a newer one
    /// (after an unpause, a restart, a re-adoption) replaces an older one.
    health_threads: Mutex<HashMap<String, u64>>,
    next_health_thread: AtomicU64,
    /// Attach clients waiting for a container to start, by id.
    pending_attaches: Mutex<HashMap<String, u32>>,
    /// Exec instances of this engine.
    execs: io::exec::Registry,
}

impl Engine {
    /// Opens (or creates) the store, migrates it, and re-adopts running
    /// containers.
    pub fn open(config: Config, services: Services<'_>) -> Result<Arc<Engine>> {
        let t0 = std::time::Instant::now();
        let containers_dir = config.data_root.join("containers");
        for dir in [&config.data_root, &config.exec_root, &containers_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal(format!("creating {}", dir.display()), e))?;
        }
        let storage_root = config.data_root.join("storage");
        let storage = silo_storage::Store::open(&storage_root).map_err(|e| {
            Error::internal(format!("opening storage {}", storage_root.display()), e)
        })?;
        let cgroupns = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let t_storage = t0.elapsed();
        let db = store::Db::open(&config.data_root.join("silo.db"), services.legacy)?;
        let containers = db
            .load_containers()?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let pods = db
            .load_pods()?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        let t_load = t0.elapsed();
        let registry = silo_registry::Client::new(config.registry.clone());
        let engine = Arc::new_cyclic(|me| Engine {
            registry,
            config,
            me: me.clone(),
            db,
            containers: Mutex::new(containers),
            pods: Mutex::new(pods),
            changed: Condvar::new(),
            op_locks: Mutex::new(HashMap::new()),
            events: events::Bus::default(),
            host: OnceLock::new(),
            storage,
            network: services.network,
            hns: services.hns,
            cgroupns,
            removed_exits: Mutex::new(std::collections::VecDeque::new()),
            restarting_by_hand: Mutex::new(HashSet::new()),
            seccomp_profiles: Mutex::new(Vec::new()),
            health_threads: Mutex::new(HashMap::new()),
            next_health_thread: AtomicU64::new(1),
            pending_attaches: Mutex::new(HashMap::new()),
            execs: io::exec::Registry::default(),
        });
        engine.recover();
        reaper::start(Arc::downgrade(&engine));
        tracing::info!(
            storage_ms = t_storage.as_secs_f64() * 1e3,
            load_ms = t_load.as_secs_f64() * 1e3,
            recover_ms = t0.elapsed().as_secs_f64() * 1e3,
            containers = engine.lock().len(),
            "engine opened"
        );
        Ok(engine)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The image, layer, snapshot and volume store.
    pub fn storage(&self) -> &silo_storage::Store {
        &self.storage
    }

    /// The per-container directory under the data root: bundle
    /// (config.json), the monitor's state dir (log, exit.json, sockets) and
    /// the generated /etc files. Under the data root so logs and exit
    /// records survive a daemon restart.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.config.data_root.join("containers").join(id)
    }

    /// The monitor's state dir as handed to it and to the I/O code: a
    /// short symlink `<exec_root>/s/<id>` to [`Engine::container_dir`], so
    /// attach.sock and control.sock stay under the 108-byte limit of unix
    /// socket paths whatever the data root is.
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("s").join(id)
    }

    /// A container's pinned network namespace.
    pub(crate) fn netns_path(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("netns").join(id)
    }

    /// Creates the state-dir symlink if it is missing (exec_root is
    /// usually a tmpfs, so it is recreated after a reboot).
    pub(crate) fn ensure_state_link(&self, id: &str) -> Result<PathBuf> {
        let link = self.state_dir(id);
        if std::fs::symlink_metadata(&link).is_ok() {
            return Ok(link);
        }
        let parent = self.config.exec_root.join("s");
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::internal(format!("creating {}", parent.display()), e))?;
        match std::os::unix::fs::symlink(self.container_dir(id), &link) {
            Ok(()) => Ok(link),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(link),
            Err(e) => Err(Error::internal(format!("linking {}", link.display()), e)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Finds the id for a name or id (exact id, exact name, unique id prefix).
    pub fn resolve_id(&self, name_or_id: &str) -> Result<String> {
        let map = self.lock();
        model::find(&map, name_or_id).map(|c| c.id.clone())
    }

    /// A copy of the container's record.
    pub fn container(&self, name_or_id: &str) -> Result<Container> {
        let map = self.lock();
        model::find(&map, name_or_id).cloned()
    }

    /// Copies of every container's record (not those being created).
    pub fn containers(&self) -> Vec<Container> {
        self.lock()
            .values()
            .filter(|c| c.state.status != Status::Creating)
            .cloned()
            .collect()
    }

    /// Publishes an event. Container events get the container's name,
    /// image and labels as attributes.
    pub(crate) fn emit(&self, scope: Scope, action: Action, id: &str) {
        let mut attributes = std::collections::BTreeMap::new();
        if scope == Scope::Container {
            let map = self.lock();
            if let Some(c) = map.get(id) {
                attributes = container_attributes(c);
            }
        }
        self.events.publish(scope, action, id, attributes);
    }

    /// Publishes an event with the given attributes.
    pub(crate) fn emit_with(
        &self,
        scope: Scope,
        action: Action,
        id: &str,
        attributes: std::collections::BTreeMap<String, String>,
    ) {
        self.events.publish(scope, action, id, attributes);
    }

    /// Subscribes to events; past ones since `since` (unix seconds) come first.
    pub fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> std::sync::mpsc::Receiver<Event> {
        self.events.subscribe(since, until)
    }

    /// The compute service's host (runtime state root under exec_root).
    pub(crate) fn compute_host(&self) -> Result<silo_compute::Host> {
        if let Some(h) = self.host.get() {
            return Ok(h.clone());
        }
        let root = self.config.exec_root.join("runtime");
        let host = silo_compute::Host::detect(&root, false)
            .map_err(|e| Error::internal(format!("compute host {}", root.display()), e))?;
        Ok(self.host.get_or_init(|| host).clone())
    }

    /// Counts and host facts.
    pub fn info(&self) -> EngineInfo {
        let (mut containers, mut running, mut paused) = (0, 0, 0);
        for c in self.lock().values() {
            match c.state.status {
                Status::Creating => continue,
                Status::Running(_) => running += 1,
                Status::Paused(_) => paused += 1,
                _ => {}
            }
            containers += 1;
        }
        EngineInfo {
            containers,
            running,
            paused,
            images: self.storage.images().len(),
            cgroup_v2: self.cgroupns,
            data_root: self.config.data_root.clone(),
            runtime_binary: self.config.runtime_binary.clone(),
        }
    }
}

/// A container's event attributes: name, image, labels.
fn container_attributes(c: &Container) -> std::collections::BTreeMap<String, String> {
    let mut a = c.config.labels.clone();
    a.insert("name".into(), c.name.clone());
    a.insert("image".into(), c.config.image.name.clone());
    a
}

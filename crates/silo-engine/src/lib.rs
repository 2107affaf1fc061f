//! The engine behind `silod` (dockerd plus HCS on Windows): containers,
//! images and volumes with Docker's semantics, persisted in a transactional
//! store, each running container supervised by its own `silo-monitor`.
//!
//! Every method is blocking and thread-safe; the HTTP layer (`silo-api`)
//! calls them from blocking tasks. Wire types are Docker's own, from
//! `bollard-stubs`, so the real `docker` CLI understands every answer.
//!
//! Layout: `<data_root>/silo.db` (SQLite, WAL, synchronous=NORMAL: one row
//! per container, every state change one transaction), and
//! `<data_root>/containers/<id>/` per container (bundle config.json, the
//! monitor's state dir with container-json.log and exit.json, generated
//! hostname/hosts/resolv.conf). The runtime state root is
//! `<exec_root>/runtime`.

use bollard_stubs::models::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

mod containers;
#[cfg(test)]
mod e2e_tests;
mod events;
mod health;
mod images;
mod io;
mod model;
mod query;
mod recover;
mod spec;
mod store;
mod system;
mod volumes;

/// Errors with the HTTP status Docker uses for them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 400
    #[error("{0}")]
    BadParameter(String),
    /// 304 (e.g. stopping a stopped container)
    #[error("{0}")]
    NotModified(String),
    /// 501
    #[error("{0}")]
    NotImplemented(String),
    /// 500
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::BadParameter(_) => 400,
            EngineError::NotModified(_) => 304,
            EngineError::NotImplemented(_) => 501,
            EngineError::Internal(_) => 500,
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Where the engine keeps things and which helper binaries it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Persistent data: the store, images, volumes (default /var/lib/silo).
    pub data_root: PathBuf,
    /// Runtime state: monitors' sockets, runtime root (default /run/silo).
    pub exec_root: PathBuf,
    /// The `silo-monitor` binary.
    pub monitor_binary: PathBuf,
    /// The `silo-runtime` binary (used for `exec`).
    pub runtime_binary: PathBuf,
    /// A static init (tini) for `HostConfig.Init`, bind-mounted read-only at
    /// /sbin/docker-init as Docker does. None: `--init` is refused.
    pub init_binary: Option<PathBuf>,
}

/// Filters as the Docker API sends them: `{"status":["running"],"label":["a=b"]}`.
pub type Filters = HashMap<String, Vec<String>>;

/// `GET /containers/{id}/logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Unix seconds (fractions allowed), 0 = no bound.
    pub since: f64,
    pub until: f64,
    pub timestamps: bool,
    /// Number of lines from the end; None = all.
    pub tail: Option<usize>,
}

/// One chunk of container output.
#[derive(Debug, Clone)]
pub struct LogChunk {
    /// 1 = stdout, 2 = stderr.
    pub stream: u8,
    pub bytes: Vec<u8>,
}

/// `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// A live attach (or exec start): a socket carrying Docker's stream format
/// (8-byte frame headers without a TTY, raw bytes with one) in both directions.
pub struct AttachStream {
    pub tty: bool,
    pub socket: UnixStream,
}

/// What the I/O operations need to know about one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerRef {
    pub id: String,
    pub name: String,
    /// The monitor's state dir: container-json.log, attach.sock, control.sock, exit.json.
    pub state_dir: PathBuf,
    /// The container's merged root filesystem (mounted while it exists).
    pub rootfs: PathBuf,
    pub running: bool,
    pub paused: bool,
    /// Host pid of the init (0 when not running).
    #[allow(dead_code)]
    pub pid: i32,
    pub tty: bool,
    /// The OCI spec the container runs with (process defaults for exec).
    pub spec: silo_oci::Spec,
    /// The container's user, unresolved ([`model::Container::user`]): what
    /// an exec without its own runs as.
    pub user: String,
}

/// The engine.
pub struct Engine {
    config: Config,
    /// Weak self-reference so watcher threads can hold the engine.
    me: Weak<Engine>,
    db: store::Db,
    /// Every container on record, by id (the store's rows, in memory).
    containers: Mutex<HashMap<String, model::Container>>,
    /// Signalled on every container state change (wait, stop).
    changed: Condvar,
    /// One lock per container for lifecycle operations (start/stop/rm...).
    op_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    events: events::Bus,
    host: OnceLock<silo_compute::Host>,
    /// Images, layers, snapshots and volumes (`<data_root>/storage`).
    storage: silo_storage::Store,
    /// Pure cgroup v2 host: containers get a cgroup namespace.
    cgroupns: bool,
    /// Exit codes of removed containers (for `wait --condition removed`).
    removed_exits: Mutex<HashMap<String, i64>>,
    /// Containers being restarted by hand: their exit does not trigger
    /// AutoRemove (as in dockerd, `docker restart` keeps a --rm container).
    restarting_by_hand: Mutex<std::collections::HashSet<String>>,
}

#[allow(dead_code)] // kept for operations still being filled in
pub(crate) fn todo<T>(what: &str) -> Result<T> {
    Err(EngineError::NotImplemented(format!(
        "{what} is not implemented yet"
    )))
}

impl Engine {
    /// Opens (or creates) the store and re-adopts running containers.
    pub fn open(config: Config) -> Result<Arc<Engine>> {
        let t0 = std::time::Instant::now();
        for dir in [&config.data_root, &config.exec_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(config.data_root.join("containers")).map_err(|e| {
            EngineError::Internal(format!(
                "creating {}: {e}",
                config.data_root.join("containers").display()
            ))
        })?;
        let storage_root = config.data_root.join("storage");
        let storage = silo_storage::Store::open(&storage_root).map_err(|e| {
            EngineError::Internal(format!("opening storage {}: {e}", storage_root.display()))
        })?;
        let cgroupns = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let t_storage = t0.elapsed();
        let db = store::Db::open(&config.data_root.join("silo.db"))?;
        let rows = db.load_all()?;
        let t_load = t0.elapsed();
        let containers = rows.into_iter().map(|c| (c.id.clone(), c)).collect();
        let engine = Arc::new_cyclic(|me| Engine {
            config,
            me: me.clone(),
            db,
            containers: Mutex::new(containers),
            changed: Condvar::new(),
            op_locks: Mutex::new(HashMap::new()),
            events: events::Bus::new(),
            host: OnceLock::new(),
            storage,
            cgroupns,
            removed_exits: Mutex::new(HashMap::new()),
            restarting_by_hand: Mutex::new(Default::default()),
        });
        engine.recover();
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

    /// The per-container directory under the data root: bundle
    /// (config.json), the monitor's state dir (log, exit.json, sockets) and
    /// the generated /etc files. It lives under the data root so logs and
    /// exit records survive a daemon restart.
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.config.data_root.join("containers").join(id)
    }

    /// The monitor's state dir as handed to it and to the I/O code: a
    /// short symlink `<exec_root>/s/<id>` to [`Engine::container_dir`], so
    /// attach.sock and control.sock stay under the 108-byte limit of unix
    /// socket paths whatever the data root is.
    pub(crate) fn state_dir(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("s").join(id)
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
            .map_err(|e| EngineError::Internal(format!("creating {}: {e}", parent.display())))?;
        match std::os::unix::fs::symlink(self.container_dir(id), &link) {
            Ok(()) => Ok(link),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(link),
            Err(e) => Err(EngineError::Internal(format!(
                "linking {}: {e}",
                link.display()
            ))),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, model::Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Finds the id for a name or id (exact id, exact name, unique id prefix).
    pub(crate) fn resolve_id(&self, name_or_id: &str) -> Result<String> {
        let map = self.lock();
        model::find(&map, name_or_id).map(|c| c.id.clone())
    }

    /// Looks a container up by full id, unique id prefix, or name (with or
    /// without the leading '/'). Used by every per-container operation.
    pub(crate) fn resolve(&self, name_or_id: &str) -> Result<ContainerRef> {
        let r = self.resolve_locked(name_or_id)?;
        // Recreated lazily (after a reboot wiped the exec root) rather than
        // for every container at startup. A failure here is not the
        // caller's: what needs the link reports its own error.
        if let Err(e) = self.ensure_state_link(&r.id) {
            tracing::warn!("state link of {}: {e}", r.id);
        }
        Ok(r)
    }

    fn resolve_locked(&self, name_or_id: &str) -> Result<ContainerRef> {
        let map = self.lock();
        let c = model::find(&map, name_or_id)?;
        Ok(ContainerRef {
            id: c.id.clone(),
            name: c.name.clone(),
            state_dir: self.state_dir(&c.id),
            rootfs: PathBuf::from(
                c.spec
                    .root
                    .as_ref()
                    .map(|r| r.path.clone())
                    .unwrap_or_default(),
            ),
            running: c.state.running,
            paused: c.state.paused,
            pid: if c.state.running { c.state.pid } else { 0 },
            tty: c.body.tty.unwrap_or(false),
            spec: (*c.spec).clone(),
            user: c.user(),
        })
    }

    /// Publishes an event (`typ` "container", "image", "volume"; `action`
    /// like "start", "die", "exec_start: sh") to subscribers. Container
    /// events get the container's `name` and `image` attributes added.
    pub(crate) fn emit(
        &self,
        typ: &str,
        action: &str,
        id: &str,
        mut attributes: HashMap<String, String>,
    ) {
        if typ == "container" {
            let map = self.lock();
            if let Some(c) = map.get(id) {
                attributes
                    .entry("name".into())
                    .or_insert_with(|| c.name.clone());
                attributes
                    .entry("image".into())
                    .or_insert_with(|| c.image.clone());
                for (k, v) in c.body.labels.iter().flatten() {
                    attributes.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        self.events.publish(typ, action, id, attributes);
    }

    /// The compute service's host (runtime state root under exec_root).
    pub(crate) fn compute_host(&self) -> Result<silo_compute::Host> {
        if let Some(h) = self.host.get() {
            return Ok(h.clone());
        }
        let root = self.config.exec_root.join("runtime");
        let host = silo_compute::Host::detect(&root, false)
            .map_err(|e| EngineError::Internal(format!("compute host {}: {e}", root.display())))?;
        Ok(self.host.get_or_init(|| host).clone())
    }

    // ---- system ----
    /// Subscribe to events; past events since `since` (unix seconds) are replayed first.
    pub fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filters: &Filters,
    ) -> Result<Receiver<EventMessage>> {
        Ok(self.events.subscribe(since, until, filters))
    }
}

//! The engine behind `silod` (dockerd plus HCS on Windows): containers,
//! images and volumes with Docker's semantics, persisted in a transactional
//! store, each running container supervised by its own `silo-monitor`.
//!
//! Every method is blocking and thread-safe; the HTTP layer (`silo-api`)
//! calls them from blocking tasks. Wire types are Docker's own, from
//! `bollard-stubs`, so the real `docker` CLI understands every answer.
//!
//! Layout: `<data_root>/silo.db` (SQLite, WAL, synchronous=FULL: one row
//! per container, every state change one transaction), and
//! `<data_root>/containers/<id>/` per container (bundle config.json, the
//! monitor's state dir with container-json.log and exit.json, generated
//! hostname/hosts/resolv.conf). The runtime state root is
//! `<exec_root>/runtime`.

// Temporary: parts of the engine are used only once the lifecycle lands.
#![allow(dead_code)]

use bollard_stubs::models::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

mod events;
mod io;
mod model;
mod recover;
mod spec;
mod store;

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
    pub pid: i32,
    pub tty: bool,
    /// The OCI spec the container runs with (process defaults for exec).
    pub spec: silo_oci::Spec,
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
}

pub(crate) fn todo<T>(what: &str) -> Result<T> {
    Err(EngineError::NotImplemented(format!(
        "{what} is not implemented yet"
    )))
}

impl Engine {
    /// Opens (or creates) the store and re-adopts running containers.
    pub fn open(config: Config) -> Result<Arc<Engine>> {
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
        let db = store::Db::open(&config.data_root.join("silo.db"))?;
        let rows = db.load_all()?;
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
        });
        engine.recover();
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
        let map = self.lock();
        let c = model::find(&map, name_or_id)?;
        Ok(ContainerRef {
            id: c.id.clone(),
            name: c.name.clone(),
            state_dir: self.container_dir(&c.id),
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
            spec: c.spec.clone(),
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
    pub fn version(&self) -> SystemVersion {
        SystemVersion::default()
    }
    pub fn info(&self) -> Result<SystemInfo> {
        todo("info")
    }
    /// Subscribe to events; past events since `since` (unix seconds) are replayed first.
    pub fn events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filters: &Filters,
    ) -> Result<Receiver<EventMessage>> {
        Ok(self.events.subscribe(since, until, filters))
    }
    pub fn system_df(&self) -> Result<SystemDataUsageResponse> {
        todo("system df")
    }

    // ---- containers ----
    /// Returns the id and warnings (Docker's `Warnings`).
    pub fn create_container(
        &self,
        _name: Option<&str>,
        _body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        todo("container create")
    }
    pub fn start(&self, _id: &str) -> Result<()> {
        todo("container start")
    }
    pub fn stop(&self, _id: &str, _signal: Option<&str>, _timeout: Option<i64>) -> Result<()> {
        todo("container stop")
    }
    pub fn restart(&self, _id: &str, _signal: Option<&str>, _timeout: Option<i64>) -> Result<()> {
        todo("container restart")
    }
    pub fn kill(&self, _id: &str, _signal: Option<&str>) -> Result<()> {
        todo("container kill")
    }
    pub fn pause(&self, _id: &str) -> Result<()> {
        todo("container pause")
    }
    pub fn unpause(&self, _id: &str) -> Result<()> {
        todo("container unpause")
    }
    /// Blocks until the condition holds.
    pub fn wait(&self, _id: &str, _condition: WaitCondition) -> Result<ContainerWaitResponse> {
        todo("container wait")
    }
    pub fn remove(&self, _id: &str, _force: bool, _volumes: bool) -> Result<()> {
        todo("container remove")
    }
    pub fn rename(&self, _id: &str, _new_name: &str) -> Result<()> {
        todo("container rename")
    }
    pub fn update(&self, _id: &str, _body: ContainerUpdateBody) -> Result<ContainerUpdateResponse> {
        todo("container update")
    }
    pub fn list(
        &self,
        _all: bool,
        _limit: Option<usize>,
        _size: bool,
        _filters: &Filters,
    ) -> Result<Vec<ContainerSummary>> {
        todo("container list")
    }
    pub fn inspect(&self, _id: &str, _size: bool) -> Result<ContainerInspectResponse> {
        todo("container inspect")
    }
    pub fn prune_containers(&self, _filters: &Filters) -> Result<ContainerPruneResponse> {
        todo("container prune")
    }

    // ---- images ----
    /// `POST /images/create?fromSrc=-` (docker import): returns the image id.
    pub fn import_image(
        &self,
        _tar: &mut dyn Read,
        _repo: Option<&str>,
        _tag: Option<&str>,
        _changes: &[String],
        _message: Option<&str>,
    ) -> Result<String> {
        todo("image import")
    }
    pub fn images(&self, _all: bool, _filters: &Filters) -> Result<Vec<ImageSummary>> {
        todo("image list")
    }
    pub fn image_inspect(&self, _name: &str) -> Result<ImageInspect> {
        todo("image inspect")
    }
    pub fn tag_image(&self, _name: &str, _repo: &str, _tag: Option<&str>) -> Result<()> {
        todo("image tag")
    }
    pub fn remove_image(
        &self,
        _name: &str,
        _force: bool,
        _noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        todo("image remove")
    }
    pub fn prune_images(&self, _filters: &Filters) -> Result<ImagePruneResponse> {
        todo("image prune")
    }

    // ---- volumes ----
    pub fn volume_create(&self, _req: VolumeCreateRequest) -> Result<Volume> {
        todo("volume create")
    }
    pub fn volumes(&self, _filters: &Filters) -> Result<VolumeListResponse> {
        todo("volume list")
    }
    pub fn volume_inspect(&self, _name: &str) -> Result<Volume> {
        todo("volume inspect")
    }
    pub fn volume_remove(&self, _name: &str, _force: bool) -> Result<()> {
        todo("volume remove")
    }
    pub fn prune_volumes(&self, _filters: &Filters) -> Result<VolumePruneResponse> {
        todo("volume prune")
    }
}

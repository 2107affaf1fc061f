//! The engine behind `silod` (dockerd plus HCS on Windows): containers,
//! images and volumes with Docker's semantics, persisted in a transactional
//! store, each running container supervised by its own `silo-monitor`.
//!
//! Every method is blocking and thread-safe; the HTTP layer (`silo-api`)
//! calls them from blocking tasks. Wire types are Docker's own, from
//! `bollard-stubs`, so the real `docker` CLI understands every answer.
//!
//! This file fixes the interface; the bodies marked `NotImplemented` are
//! being filled in.

use bollard_stubs::models::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

mod io;

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
#[allow(dead_code)] // until io.rs uses it
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
}

pub(crate) fn todo<T>(what: &str) -> Result<T> {
    Err(EngineError::NotImplemented(format!(
        "{what} is not implemented yet"
    )))
}

impl Engine {
    /// Opens (or creates) the store and re-adopts running containers.
    pub fn open(config: Config) -> Result<Arc<Engine>> {
        Ok(Arc::new(Engine { config }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Looks a container up by full id, unique id prefix, or name (with or
    /// without the leading '/'). Used by every per-container operation.
    #[allow(dead_code)]
    pub(crate) fn resolve(&self, name_or_id: &str) -> Result<ContainerRef> {
        todo(&format!("resolve {name_or_id}"))
    }

    /// Publishes an event (`typ` "container", "image", "volume"; `action`
    /// like "start", "die", "exec_start: sh") to subscribers.
    #[allow(dead_code)]
    pub(crate) fn emit(
        &self,
        _typ: &str,
        _action: &str,
        _id: &str,
        _attributes: HashMap<String, String>,
    ) {
    }

    /// The compute service's host (runtime state root under exec_root).
    #[allow(dead_code)]
    pub(crate) fn compute_host(&self) -> Result<silo_compute::Host> {
        todo("compute host")
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
        _since: Option<i64>,
        _until: Option<i64>,
        _filters: &Filters,
    ) -> Result<Receiver<EventMessage>> {
        todo("events")
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

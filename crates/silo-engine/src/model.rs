//! What the engine knows of a container, in its own words: the
//! [`ContainerConfig`] that says what it is, the [`Status`] that says where
//! it is in its life (each phase carrying its own data, so "exited but
//! running" cannot be written down), and the [`Container`] record the
//! store keeps. Front ends (the Docker adapter, later the CRI) translate
//! their requests into these and their answers out of them; nothing here is
//! any front end's wire format.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{Error, Kind};

/// The image a container is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The image as the user named it ("busybox", "sha256:…").
    pub name: String,
    /// Its id ("sha256:<hex>").
    pub id: String,
}

/// The container's process, final: front ends have already merged the
/// image's defaults in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// argv; never empty.
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Absolute.
    pub cwd: String,
    /// Unresolved ("", "uid", "uid:gid", "name", "name:group"), looked up
    /// in the container's own /etc/passwd and /etc/group at each start.
    /// Execs and health probes without a user of their own run as it too.
    pub user: String,
    /// Supplementary groups added to the user's (by gid, or by name in the
    /// container's /etc/group), resolved at each start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub terminal: bool,
    /// Keep stdin open (attach clients feed it).
    pub stdin: bool,
    /// The whole capability set (`CAP_…`).
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub rlimits: Vec<silo_oci::Rlimit>,
    pub oom_score_adj: Option<i32>,
}

/// A mount the container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountRequest {
    /// A host path.
    Bind {
        source: String,
        destination: String,
        readonly: bool,
        /// `rprivate`, `rshared`, `rslave`, …
        propagation: String,
        /// Create a missing source directory (else it must exist).
        create_source: bool,
        /// The options as the front end spelled them, shown back to it.
        #[serde(default)]
        mode: String,
    },
    /// A volume: `name` None asks for a new anonymous one, removed with the
    /// container when asked. A named one is created if missing.
    Volume {
        name: Option<String>,
        destination: String,
        readonly: bool,
    },
    /// A tmpfs with OCI mount options (`size=…`, `mode=…`, `noexec`, …).
    Tmpfs {
        destination: String,
        options: Vec<String>,
    },
}

impl MountRequest {
    pub fn destination(&self) -> &str {
        match self {
            MountRequest::Bind { destination, .. }
            | MountRequest::Volume { destination, .. }
            | MountRequest::Tmpfs { destination, .. } => destination,
        }
    }
}

/// What a mount resolved to at create (what inspect reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    pub kind: MountKind,
    /// The volume's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host path (a volume's data directory); empty for tmpfs.
    pub source: String,
    pub destination: String,
    pub readonly: bool,
    pub propagation: String,
    /// See [`MountRequest::Bind`]'s `mode`.
    #[serde(default)]
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// How a seccomp filter is chosen at each start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompPolicy {
    /// silo's default profile (Docker's) for the container's capabilities;
    /// none when privileged.
    #[default]
    Default,
    Unconfined,
    Profile(Box<silo_oci::Seccomp>),
}

/// The container's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityConfig {
    /// Every capability, every device, nothing masked, no seccomp filter.
    pub privileged: bool,
    pub seccomp: SeccompPolicy,
    pub readonly_rootfs: bool,
    pub sysctls: BTreeMap<String, String>,
    /// Paths made unreadable in the container; None: silo's defaults
    /// (none when privileged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only in the container; None: silo's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
}

/// Where the container's network namespace comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Its own pinned namespace, attached to the default network by the
    /// network service (until that lands: loopback only).
    #[default]
    Default,
    /// Its own pinned namespace with loopback only, never attached.
    None,
    /// The host's namespace.
    Host,
    /// The namespace of another, running, container (by id).
    Container(String),
    /// Its own pinned namespace, connected to these networks of the
    /// network service, in order (the first one gets the default route).
    Networks(Vec<NetworkJoin>),
}

/// A legacy link (`--link NAME:ALIAS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The linked container (its id once created).
    pub container: String,
    pub alias: String,
}

/// A container's membership of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkJoin {
    /// The network's name or id.
    pub network: String,
    /// Extra names of the container on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A fixed address (else the network's IPAM picks one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
    /// A fixed IPv6 address, on an IPv6 network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<std::net::IpAddr>,
    /// A fixed MAC address (else one derived from the IPv4 address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
}

impl NetworkJoin {
    /// Joining the default network (`nat`) with nothing fixed: what the
    /// default mode means.
    pub fn default_network() -> NetworkJoin {
        NetworkJoin {
            network: silo_network::service::DEFAULT_NETWORK.to_string(),
            aliases: Vec::new(),
            ip: None,
            ip6: None,
            mac: None,
        }
    }
}

impl NetworkMode {
    /// The container has a namespace of its own that silo pins and the
    /// network service may connect.
    pub fn owns_namespace(&self) -> bool {
        matches!(
            self,
            NetworkMode::Default | NetworkMode::None | NetworkMode::Networks(_)
        )
    }
}

/// Where an IPC, PID or UTS namespace comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// Its own.
    #[default]
    Private,
    /// The host's.
    Host,
    /// That of another, running, container (by id).
    Container(String),
}

/// Where each namespace comes from. A container in a pod
/// ([`ContainerConfig::pod`]) takes the pod's network, IPC and UTS
/// namespaces, and keeps these at their defaults for those.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceConfig {
    pub network: NetworkMode,
    pub ipc: Sharing,
    pub pid: Sharing,
    pub uts: Sharing,
}

/// When a container that exited is started again by the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    /// As `Always`, except after a stop by hand (also across an engine restart).
    UnlessStopped,
    /// After a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure {
        max_retries: u32,
    },
}

/// A healthcheck: `test` runs in the container every `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    /// The probe's argv (a shell command already wrapped in its shell).
    pub test: Vec<String>,
    pub interval: Duration,
    /// A probe running longer is killed and fails.
    pub timeout: Duration,
    /// Failures while still starting inside this period do not count.
    pub start_period: Duration,
    /// The probe interval while starting inside the start period.
    pub start_interval: Duration,
    /// Consecutive failures that make the container unhealthy.
    pub retries: u32,
}

/// The per-container disk (windowsfilter's sandbox.vhdx): room for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfig {
    /// The size of the container's own sandbox disk (an ext4 image holding
    /// what it writes); None: it writes to the data root's filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
}

/// The container's output log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Whether output is logged at all (attached clients get it either way).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Rotate the log once it would grow beyond this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// How many files the log may span, the current one included (at
    /// least 1: with 1, a full log starts again empty).
    #[serde(default = "one")]
    pub max_files: u32,
    /// Write the log in the Kubernetes CRI format to this file (which the
    /// kubelet reads and rotates) instead of Docker's json-file log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_path: Option<std::path::PathBuf>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            enabled: true,
            max_bytes: None,
            max_files: 1,
            cri_path: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn one() -> u32 {
    1
}

/// What a container is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub image: ImageRef,
    pub process: ProcessConfig,
    /// Empty: the first 12 characters of the id.
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    pub mounts: Vec<MountRequest>,
    /// Host devices made in the container's /dev (and allowed by its
    /// device cgroup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<silo_oci::Device>,
    /// Size of /dev/shm in bytes; 0: 64 MiB.
    pub shm_size: u64,
    pub resources: silo_oci::Resources,
    /// The cgroup the container's own is made under (absolute, such as
    /// `/kubepods/besteffort/pod…`); None: `/silo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    pub security: SecurityConfig,
    pub namespaces: NamespaceConfig,
    /// The pod whose namespaces the container joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Run a small init as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    pub restart: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthPolicy>,
    /// The signal `stop` sends first (default SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Seconds `stop` waits before SIGKILL (default 10; negative: for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Legacy links: other containers reachable under an alias (an
    /// /etc/hosts entry with their address on a network both joined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Published ports, on the network that holds the default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<silo_network::ports::PortRequest>,
    /// Name resolution settings for /etc/resolv.conf (and the embedded
    /// DNS server's upstreams).
    #[serde(default, skip_serializing_if = "DnsConfig::is_empty")]
    pub dns: DnsConfig,
    /// Extra /etc/hosts entries: (name, address); the address
    /// `host-gateway` means the default network's gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, String)>,
}

/// `--dns`, `--dns-search`, `--dns-option`: each, when given, replaces the
/// matching lines of the resolv.conf the container would get.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsConfig {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// One run of a container: its init, its monitor, when it began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Host pid of the init.
    pub pid: i32,
    /// The silo-monitor supervising it.
    pub monitor_pid: i32,
    /// RFC 3339.
    pub started_at: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The status, or 128 + the signal; 255 when the monitor was lost.
    pub code: i64,
    pub oom_killed: bool,
    /// When the run that ended began (RFC 3339; empty if it never ran).
    pub started_at: String,
    pub finished_at: String,
}

/// Where a container is in its life; each phase carries what is true of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Its name is reserved and a create is under way (invisible).
    Creating,
    /// Prepared, never started (or started and failed before running).
    #[default]
    Created,
    Running(Run),
    Paused(Run),
    /// Exited; its restart policy will start it again shortly.
    Restarting(Exit),
    Exited(Exit),
    /// A removal is under way.
    Removing,
    /// A removal failed part-way; what it could not undo is still held.
    Dead,
}

impl Status {
    /// The phase's name, for people and front ends.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running(_) => "running",
            Status::Paused(_) => "paused",
            Status::Restarting(_) => "restarting",
            Status::Exited(_) => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }

    /// The current run (running or paused).
    pub fn run(&self) -> Option<&Run> {
        match self {
            Status::Running(r) | Status::Paused(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.run().is_some()
    }
}

/// A state change the current status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} container cannot be {to}")]
pub struct Refused {
    pub from: &'static str,
    pub to: &'static str,
}

/// A container's status and what outlives a phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(flatten)]
    pub status: Status,
    /// The last exit while the status itself carries none (running again,
    /// removing, dead): inspect still shows when it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Exit>,
    /// Why the last start failed (empty once a start succeeds).
    #[serde(default)]
    pub error: String,
    /// The exit code of the last failed start: 127 (command not found),
    /// 126 (not executable) or 255; 0 once a start succeeds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error_code: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl State {
    /// The last run's exit, whatever the status.
    pub fn last_exit(&self) -> Option<&Exit> {
        match &self.status {
            Status::Exited(e) | Status::Restarting(e) => Some(e),
            _ => self.previous.as_ref(),
        }
    }

    fn refuse(&self, to: &'static str) -> Refused {
        Refused {
            from: self.status.name(),
            to,
        }
    }

    /// Records a failed start: why, and the exit code it gives (see
    /// [`State::error_code`]). The status does not change.
    pub fn start_failed(&mut self, error: &crate::Error) {
        self.error = error.to_string();
        self.error_code = match error {
            crate::Error::CommandFailed { code, .. } => *code,
            _ => 255,
        };
    }

    /// Moves to `next`, keeping the exit the old status carried in `previous`.
    fn go(&mut self, next: Status) {
        let old = std::mem::replace(&mut self.status, next);
        if let Status::Exited(e) | Status::Restarting(e) = old {
            self.previous = Some(e);
        }
        if matches!(self.status, Status::Exited(_) | Status::Restarting(_)) {
            self.previous = None;
        }
    }

    /// Creating → Created: the create finished.
    pub fn created(&mut self) -> Result<(), Refused> {
        match self.status {
            Status::Creating => {
                self.go(Status::Created);
                Ok(())
            }
            _ => Err(self.refuse("created")),
        }
    }

    /// Created, Exited or Restarting → Running.
    pub fn started(&mut self, run: Run) -> Result<(), Refused> {
        match self.status {
            Status::Created | Status::Exited(_) | Status::Restarting(_) => {
                self.go(Status::Running(run));
                self.error.clear();
                self.error_code = 0;
                Ok(())
            }
            _ => Err(self.refuse("started")),
        }
    }

    /// Running → Paused.
    pub fn paused(&mut self) -> Result<(), Refused> {
        match &self.status {
            Status::Running(r) => {
                let r = r.clone();
                self.go(Status::Paused(r));
                Ok(())
            }
            _ => Err(self.refuse("paused")),
        }
    }

    /// Paused → Running.
    pub fn unpaused(&mut self) -> Result<(), Refused> {
        match &self.status {
            Status::Paused(r) => {
                let r = r.clone();
                self.go(Status::Running(r));
                Ok(())
            }
            _ => Err(self.refuse("unpaused")),
        }
    }

    /// Running or Paused → Exited, for the run that began at
    /// `exit.started_at` only (a later run's exit is its own).
    pub fn exited(&mut self, exit: Exit) -> Result<(), Refused> {
        match self.status.run() {
            Some(r) if r.started_at == exit.started_at => {
                self.go(Status::Exited(exit));
                Ok(())
            }
            _ => Err(self.refuse("exited")),
        }
    }

    /// Exited → Restarting: its restart policy will start it again.
    pub fn restarting(&mut self) -> Result<(), Refused> {
        match &self.status {
            Status::Exited(e) => {
                let e = e.clone();
                self.go(Status::Restarting(e));
                Ok(())
            }
            _ => Err(self.refuse("restarting")),
        }
    }

    /// Restarting → Exited: the pending restart is called off.
    pub fn restart_cancelled(&mut self) -> Result<(), Refused> {
        match &self.status {
            Status::Restarting(e) => {
                let e = e.clone();
                self.go(Status::Exited(e));
                Ok(())
            }
            _ => Err(self.refuse("left restarting")),
        }
    }

    /// Created, Exited, Restarting or Dead → Removing.
    pub fn removing(&mut self) -> Result<(), Refused> {
        match self.status {
            Status::Created | Status::Exited(_) | Status::Restarting(_) | Status::Dead => {
                self.go(Status::Removing);
                Ok(())
            }
            _ => Err(self.refuse("removed")),
        }
    }

    /// Removing → Dead: the removal could not undo everything.
    pub fn dead(&mut self) -> Result<(), Refused> {
        match self.status {
            Status::Removing => {
                self.go(Status::Dead);
                Ok(())
            }
            _ => Err(self.refuse("marked dead")),
        }
    }

    /// Running or Paused: the monitor is another one now (found again
    /// after a daemon restart), the status and its pause stay.
    pub fn readopted(&mut self, run: Run) -> Result<(), Refused> {
        match &mut self.status {
            Status::Running(r) | Status::Paused(r) => {
                *r = run;
                Ok(())
            }
            _ => Err(self.refuse("re-adopted")),
        }
    }
}

/// A healthcheck's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// RFC 3339 with nanoseconds.
    pub start: String,
    pub end: String,
    /// -1 when it timed out.
    pub exit_code: i64,
    pub output: String,
}

/// A container's health, kept across runs (the log) and engine restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    pub failing_streak: u32,
    /// The last results, oldest first.
    #[serde(default)]
    pub log: Vec<ProbeResult>,
}

/// A front end's own data about a container, kept with it and never read
/// by the engine (the Docker adapter keeps the request it was created
/// from, to show back in inspect), by front end name.
pub type Extensions = BTreeMap<String, Box<serde_json::value::RawValue>>;

/// Everything the engine knows about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without a leading '/'.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub config: ContainerConfig,
    pub state: State,
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped by hand: restart policies do not fire.
    #[serde(default)]
    pub manual_stop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
    /// The mounts as resolved at create.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// Volumes made for this container alone (removed with it when asked).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// The OCI spec made at create, without the parts decided at each
    /// start (the user's ids, the rootfs path, the seccomp program).
    #[serde(default)]
    pub spec: LazySpec,
    #[serde(default)]
    pub extensions: Extensions,
    /// Exits seen by this engine since it opened (what waiting for the
    /// next exit counts); not stored.
    #[serde(skip)]
    pub exit_seq: u64,
}

impl Container {
    /// The hostname the container gets.
    pub fn hostname(&self) -> String {
        if self.config.hostname.is_empty() {
            self.id.chars().take(12).collect()
        } else {
            self.config.hostname.clone()
        }
    }

    /// A front end's extension, decoded.
    pub fn extension<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let raw = self.extensions.get(name)?;
        match serde_json::from_str(raw.get()) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(id = %self.id, extension = name, "extension does not decode: {e}");
                None
            }
        }
    }

    /// A minimal created container for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            created: "2026-01-01T00:00:00Z".into(),
            config: ContainerConfig {
                image: ImageRef {
                    name: "busybox".into(),
                    id: "sha256:00".into(),
                },
                ..Default::default()
            },
            state: State::default(),
            restart_count: 0,
            manual_stop: false,
            health: None,
            mounts: vec![],
            anonymous_volumes: vec![],
            spec: LazySpec::default(),
            extensions: Extensions::new(),
            exit_seq: 0,
        }
    }
}

/// A container's OCI spec, decoded from its stored JSON on first use.
/// Decoding a thousand specs was most of the engine's startup, and a
/// restarted daemon rarely needs more than a few of them soon.
#[derive(Debug, Default)]
pub struct LazySpec {
    /// The stored JSON, until it is decoded or replaced.
    raw: Option<Box<serde_json::value::RawValue>>,
    spec: OnceLock<silo_oci::Spec>,
}

impl LazySpec {
    fn decoded(&self) -> &silo_oci::Spec {
        self.spec.get_or_init(|| match &self.raw {
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or_else(|e| {
                // Rows are written by us from a Spec; a row that no longer
                // decodes yields an empty spec, which start refuses clearly.
                tracing::error!("stored OCI spec does not decode: {e}");
                silo_oci::Spec::default()
            }),
            None => silo_oci::Spec::default(),
        })
    }
}

impl From<silo_oci::Spec> for LazySpec {
    fn from(spec: silo_oci::Spec) -> LazySpec {
        LazySpec {
            raw: None,
            spec: OnceLock::from(spec),
        }
    }
}

impl Clone for LazySpec {
    fn clone(&self) -> LazySpec {
        LazySpec {
            raw: self.raw.clone(),
            spec: self.spec.clone(),
        }
    }
}

impl std::ops::Deref for LazySpec {
    type Target = silo_oci::Spec;
    fn deref(&self) -> &silo_oci::Spec {
        self.decoded()
    }
}

impl std::ops::DerefMut for LazySpec {
    fn deref_mut(&mut self) -> &mut silo_oci::Spec {
        self.decoded();
        self.raw = None;
        if self.spec.get().is_none() {
            let _ = self.spec.set(silo_oci::Spec::default());
        }
        match self.spec.get_mut() {
            Some(s) => s,
            None => unreachable!("set just above"),
        }
    }
}

impl Serialize for LazySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // `raw` is dropped whenever the spec is changed (DerefMut), so while
        // it is here it is the truth, even if it no longer decodes: a spec
        // we cannot read is kept as it was, never replaced by an empty one.
        match &self.raw {
            Some(raw) => raw.serialize(s),
            None => self.decoded().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for LazySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<LazySpec, D::Error> {
        Ok(LazySpec {
            raw: Some(Box::<serde_json::value::RawValue>::deserialize(d)?),
            spec: OnceLock::new(),
        })
    }
}

/// Finds a container: exact id, exact name (with or without '/'), then a
/// unique id prefix. Containers still being created are invisible.
pub(crate) fn find<'a>(
    map: &'a HashMap<String, Container>,
    name_or_id: &str,
) -> Result<&'a Container, Error> {
    let missing = || Error::not_found(Kind::Container, name_or_id);
    if name_or_id.is_empty() {
        return Err(missing());
    }
    let visible = |c: &&Container| c.state.status != Status::Creating;
    if let Some(c) = map.get(name_or_id).filter(visible) {
        return Ok(c);
    }
    let name = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
    if let Some(c) = map.values().filter(visible).find(|c| c.name == name) {
        return Ok(c);
    }
    let mut hits = map
        .values()
        .filter(visible)
        .filter(|c| c.id.starts_with(name_or_id));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(Error::invalid(
            "id",
            format!("multiple IDs found with provided prefix: {name_or_id}"),
        )),
        _ => Err(missing()),
    }
}

/// The container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest: Vec<char> = chars.collect();
    !rest.is_empty()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const ADJECTIVES: [&str; 24] = [
    "admiring", "amazing", "blissful", "bold", "brave", "clever", "dreamy", "eager", "elegant",
    "festive", "focused", "gallant", "happy", "jolly", "keen", "loving", "modest", "nifty",
    "quirky", "serene", "sharp", "trusting", "vibrant", "zealous",
];
const NOUNS: [&str; 24] = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "faraday",
    "feynman",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "turing",
    "wozniak",
];

/// A random `adjective_noun` name (with a digit appended when `retry` > 0,
/// after a collision).
pub(crate) fn random_name(retry: u32) -> String {
    let mut b = [0u8; 3];
    silo_sys::id::fill_random(&mut b);
    let base = format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    );
    if retry == 0 {
        base
    } else {
        format!("{base}{}", b[2] % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &str) -> Run {
        Run {
            pid: 10,
            monitor_pid: 9,
            started_at: t.into(),
        }
    }

    fn exit(code: i64, started: &str) -> Exit {
        Exit {
            code,
            oom_killed: false,
            started_at: started.into(),
            finished_at: "2026-01-01T00:01:00Z".into(),
        }
    }

    fn state(status: Status) -> State {
        State {
            status,
            ..Default::default()
        }
    }

    fn all_statuses() -> Vec<Status> {
        vec![
            Status::Creating,
            Status::Created,
            Status::Running(run("t1")),
            Status::Paused(run("t1")),
            Status::Restarting(exit(1, "t0")),
            Status::Exited(exit(1, "t0")),
            Status::Removing,
            Status::Dead,
        ]
    }

    /// Applies `op` to every status; the ones in `allowed` must succeed
    /// and land in `expect`, all others must be refused and change nothing.
    fn check(
        op: &dyn Fn(&mut State) -> Result<(), Refused>,
        allowed: &[&str],
        expect: &dyn Fn(&Status) -> bool,
    ) {
        for s in all_statuses() {
            let mut st = state(s.clone());
            let before = st.clone();
            let r = op(&mut st);
            if allowed.contains(&s.name()) {
                assert!(r.is_ok(), "{} should be allowed: {r:?}", s.name());
                assert!(expect(&st.status), "{} gave {:?}", s.name(), st.status);
            } else {
                let e = r.expect_err(s.name());
                assert_eq!(e.from, s.name());
                assert_eq!(st, before, "a refused change must change nothing");
            }
        }
    }

    #[test]
    fn created_only_from_creating() {
        check(&|s| s.created(), &["creating"], &|s| *s == Status::Created);
    }

    #[test]
    fn started_from_created_exited_and_restarting() {
        check(
            &|s| s.started(run("t2")),
            &["created", "exited", "restarting"],
            &|s| *s == Status::Running(run("t2")),
        );
        // The exit it started after stays visible; the error is cleared.
        let mut s = state(Status::Exited(exit(3, "t0")));
        s.error = "boom".into();
        s.started(run("t2")).unwrap();
        assert_eq!(s.last_exit().map(|e| e.code), Some(3));
        assert!(s.error.is_empty());
    }

    #[test]
    fn pause_and_unpause_keep_the_run() {
        check(&|s| s.paused(), &["running"], &|s| {
            *s == Status::Paused(run("t1"))
        });
        check(&|s| s.unpaused(), &["paused"], &|s| {
            *s == Status::Running(run("t1"))
        });
    }

    #[test]
    fn exited_only_ends_the_run_it_belongs_to() {
        check(&|s| s.exited(exit(7, "t1")), &["running", "paused"], &|s| {
            *s == Status::Exited(exit(7, "t1"))
        });
        // An exit of an earlier run is refused.
        let mut s = state(Status::Running(run("t2")));
        assert!(s.exited(exit(7, "t1")).is_err());
        assert!(s.status.is_running());
        // The exit it carries replaces the one kept from before.
        let mut s = state(Status::Exited(exit(1, "t0")));
        s.started(run("t1")).unwrap();
        s.exited(exit(2, "t1")).unwrap();
        assert_eq!(s.previous, None);
        assert_eq!(s.last_exit().map(|e| e.code), Some(2));
    }

    #[test]
    fn restarting_and_calling_it_off() {
        check(&|s| s.restarting(), &["exited"], &|s| {
            *s == Status::Restarting(exit(1, "t0"))
        });
        check(&|s| s.restart_cancelled(), &["restarting"], &|s| {
            *s == Status::Exited(exit(1, "t0"))
        });
    }

    #[test]
    fn removing_dead_and_readopted() {
        check(
            &|s| s.removing(),
            &["created", "exited", "restarting", "dead"],
            &|s| *s == Status::Removing,
        );
        check(&|s| s.dead(), &["removing"], &|s| *s == Status::Dead);
        check(&|s| s.readopted(run("t9")), &["running", "paused"], &|s| {
            s.run() == Some(&run("t9"))
        });
        // Removing an exited container keeps its exit for `wait`.
        let mut s = state(Status::Exited(exit(4, "t0")));
        s.removing().unwrap();
        assert_eq!(s.last_exit().map(|e| e.code), Some(4));
    }

    #[test]
    fn status_round_trips_through_json() {
        for s in all_statuses() {
            let st = state(s);
            let json = serde_json::to_string(&st).unwrap();
            let back: State = serde_json::from_str(&json).unwrap();
            assert_eq!(back, st, "{json}");
        }
    }

    #[test]
    fn lazy_spec_round_trips_undecoded_and_decodes_on_use() {
        let mut spec = silo_oci::Spec {
            hostname: Some("h1".into()),
            ..Default::default()
        };
        spec.process = Some(silo_oci::Process {
            args: vec!["sleep".into(), "1".into()],
            ..Default::default()
        });
        let json = serde_json::to_string(&LazySpec::from(spec)).unwrap();
        let lazy: LazySpec = serde_json::from_str(&json).unwrap();
        assert!(lazy.spec.get().is_none(), "decoded too early");
        assert_eq!(serde_json::to_string(&lazy).unwrap(), json);
        assert_eq!(lazy.hostname.as_deref(), Some("h1"));
        let mut copy = lazy.clone();
        copy.process.as_mut().unwrap().args = vec!["true".into()];
        let again: LazySpec = serde_json::from_str(&serde_json::to_string(&copy).unwrap()).unwrap();
        assert_eq!(again.process.as_ref().unwrap().args, ["true"]);
        assert_eq!(lazy.process.as_ref().unwrap().args, ["sleep", "1"]);
        let broken: LazySpec = serde_json::from_str(r#"{"process":7}"#).unwrap();
        assert!(broken.process.is_none());
        assert_eq!(serde_json::to_string(&broken).unwrap(), r#"{"process":7}"#);
    }

    #[test]
    fn find_by_id_name_and_prefix() {
        let mut m = HashMap::new();
        for (id, name) in [("abc123", "web"), ("abd456", "db")] {
            m.insert(id.to_string(), Container::for_test(id, name));
        }
        assert_eq!(find(&m, "abc123").unwrap().name, "web");
        assert_eq!(find(&m, "/db").unwrap().id, "abd456");
        assert_eq!(find(&m, "abc").unwrap().id, "abc123");
        assert!(matches!(find(&m, "ab"), Err(Error::InvalidArgument { .. })));
        let e = find(&m, "nope").unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }));
        assert_eq!(e.to_string(), "No such container: nope");
        m.get_mut("abd456").unwrap().state.status = Status::Creating;
        assert!(
            find(&m, "db").is_err(),
            "a container being created is invisible"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1") && valid_name("a.b_c"));
        for bad in ["a", "-x", "a b", "a/b", ""] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(random_name(0).contains('_'));
        assert!(random_name(1).chars().last().unwrap().is_ascii_digit());
    }
}

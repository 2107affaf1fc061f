//! The engine's I/O operations on containers: logs, attach, exec, top,
//! statistics, file archives (cp), export, and the HCS views. Streams are
//! the monitor's ([`silo_sys::frame`] framing without a terminal).

use crate::error::{Error, Kind, Result};
use crate::events::{Action, Scope};
use crate::model::{MountPoint, Status};
use crate::Engine;
use silo_monitor::protocol::{self as monitor, AttachRequest, ControlRequest, Resize};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

#[path = "io/archive.rs"]
pub(crate) mod archive;
#[path = "io/exec.rs"]
pub(crate) mod exec;
#[path = "io/logs.rs"]
mod logs;
#[path = "io/probe.rs"]
mod probe;
#[path = "io/stats.rs"]
pub(crate) mod stats;

use exec::{ExecInfo, ExecSpec};

/// Log reading options.
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

/// A live attach (or exec): a socket carrying the multiplexed stream
/// (raw bytes with a terminal) in both directions.
pub struct AttachStream {
    pub tty: bool,
    pub socket: UnixStream,
}

/// Which streams an attach carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The output so far first (from the log).
    pub logs: bool,
    /// Live streams; without, only the past output (`logs`) is sent and
    /// the stream ends.
    pub stream: bool,
    /// Detach keys: once stdin carries this sequence the client is let go
    /// and the container keeps its stdin open. Empty: none.
    pub detach_keys: Vec<u8>,
}

/// What a path inside a container is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// `st_mode`.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    /// For a symlink, its target as the container resolves it.
    pub link_target: String,
}

/// `ps` output for a container's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTable {
    pub titles: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// What the I/O operations need to know about one container.
#[derive(Debug, Clone)]
pub(crate) struct IoRef {
    pub id: String,
    pub name: String,
    /// The monitor's state dir: log, attach.sock, control.sock, exit.json.
    pub state_dir: PathBuf,
    /// The container's merged root filesystem (mounted while it exists).
    pub rootfs: PathBuf,
    pub running: bool,
    pub paused: bool,
    pub tty: bool,
    /// The OCI spec the container runs with (process defaults for exec).
    pub spec: silo_oci::Spec,
    /// The container's user, unresolved: what an exec without one runs as.
    pub user: String,
    /// The container's supplementary groups (`--group-add`), for execs too.
    pub groups: Vec<String>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether the container whose monitor uses `dir` still runs: no exit
/// recorded at or after `exit_after`, and (if the monitor record is newer
/// than `monitor_after`) its monitor alive.
fn still_running(dir: &Path, exit_after: SystemTime, monitor_after: SystemTime) -> bool {
    if !dir.exists() {
        // Waiting for a start (monitor_after set): the dir may come later.
        return monitor_after > SystemTime::UNIX_EPOCH;
    }
    if mtime(&dir.join(monitor::EXIT_FILE)).is_some_and(|t| t >= exit_after) {
        return false;
    }
    if mtime(&dir.join(monitor::MONITOR_FILE)).is_some_and(|t| t >= monitor_after) {
        if let Some(m) = monitor::read_monitor(dir) {
            // SAFETY: signal 0 only checks that the process exists.
            if m.monitor_pid > 0 && unsafe { libc::kill(m.monitor_pid, 0) } != 0 {
                return false;
            }
        }
    }
    true
}

/// Whether the peer of a socket has closed it entirely.
fn hung_up(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll reads and writes one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn attach_request(stdin: bool, stdout: bool, stderr: bool, detach_keys: &[u8]) -> AttachRequest {
    AttachRequest {
        stdin,
        stdout,
        stderr,
        logs: false,
        detach_keys: detach_keys.to_vec(),
    }
}

/// Copies the monitor's stream to the client and, with `stdin`, the
/// client's input to the monitor; each direction is half-closed at its end.
fn relay(mon: UnixStream, client: UnixStream, stdin: bool) {
    if stdin {
        if let (Ok(mut from), Ok(mut to)) = (client.try_clone(), mon.try_clone()) {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
    }
    let (mut from, mut to) = (mon, client);
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Counts one attach client waiting for a container to start, while it lives.
struct PendingAttach {
    engine: Weak<Engine>,
    id: String,
}

impl PendingAttach {
    fn new(engine: &Engine, id: &str) -> PendingAttach {
        let mut m = engine
            .pending_attaches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(id.to_string()).or_default() += 1;
        PendingAttach {
            engine: engine.me.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for PendingAttach {
    fn drop(&mut self) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let mut m = engine
            .pending_attaches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.id);
            }
        }
    }
}

/// A process started in a container by [`Engine::exec_spawn`].
pub(crate) struct ExecSpawned {
    /// Host pid; our child once the runtime has exited.
    pub pid: i32,
    /// The pty master (tty execs).
    pub master: Option<Arc<std::os::fd::OwnedFd>>,
    /// Our ends of the pipes asked for with `Stdio::piped()`.
    pub stdin: Option<std::process::ChildStdin>,
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
}

impl Engine {
    /// What the I/O code needs of a container; makes the state link if it
    /// is missing (a failure there is left to what needs the link).
    pub(crate) fn io_ref(&self, name_or_id: &str) -> Result<IoRef> {
        let r = {
            let map = self.lock();
            let c = crate::model::find(&map, name_or_id)?;
            IoRef {
                id: c.id.clone(),
                name: c.name.clone(),
                state_dir: self.state_dir(&c.id),
                rootfs: self.storage.snapshot_paths(&c.id).merged,
                running: c.state.status.is_running(),
                paused: matches!(c.state.status, Status::Paused(_)),
                tty: c.config.process.terminal,
                spec: (*c.spec).clone(),
                user: c.config.process.user.clone(),
                groups: c.config.process.groups.clone(),
            }
        };
        if let Err(e) = self.ensure_state_link(&r.id) {
            tracing::warn!("state link of {}: {e}", r.id);
        }
        Ok(r)
    }

    /// How many attach clients wait for this container to start: passed
    /// to the monitor as `--wait-attach N` so they connect before the
    /// container runs.
    pub(crate) fn waiting_attaches(&self, id: &str) -> u32 {
        let m = self
            .pending_attaches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.get(id).copied().unwrap_or(0)
    }

    fn io_not_running(c: &IoRef) -> Error {
        Error::conflict(format!("container {} is not running", c.id))
    }

    fn archive_error(c: &IoRef, path: &str, e: archive::ArchiveError) -> Error {
        match e {
            archive::ArchiveError::NotFound { .. } => Error::NotFound {
                kind: Kind::Container,
                id: format!("{path} in container {}", c.name),
            },
            e @ (archive::ArchiveError::NotDir { .. } | archive::ArchiveError::Entry { .. }) => {
                Error::invalid("path", e.to_string())
            }
            e => Error::internal(format!("archive of {}", c.id), e),
        }
    }

    /// Log chunks; with `follow` the iterator blocks for new output until the container stops.
    pub fn logs(
        &self,
        id: &str,
        mut opts: LogOptions,
    ) -> Result<Box<dyn Iterator<Item = LogChunk> + Send>> {
        let c = self.io_ref(id)?;
        if !c.running {
            opts.follow = false;
        }
        let dir = c.state_dir.clone();
        let now = SystemTime::now();
        let alive = Box::new(move || still_running(&dir, now, SystemTime::UNIX_EPOCH));
        logs::open(&c.state_dir, opts, alive)
            .map_err(|e| Error::internal(format!("reading logs in {}", c.state_dir.display()), e))
    }

    /// Attaches to the container's stdio; with `logs`, its output so far
    /// comes first. Attaching to a container not started yet connects
    /// before it starts, so no output is missed.
    pub fn attach(&self, id: &str, o: AttachOptions) -> Result<AttachStream> {
        let AttachOptions {
            stdin,
            stdout,
            stderr,
            logs,
            stream,
            ref detach_keys,
        } = o;
        let keys = detach_keys.clone();
        let c = self.io_ref(id)?;
        if !stream {
            return self.attach_history(&c, &o);
        }
        if c.paused {
            return Err(Error::conflict(format!(
                "container {} is paused, unpause the container before attach",
                c.id
            )));
        }
        if c.running && !logs {
            match monitor::attach(
                &c.state_dir,
                &attach_request(stdin, stdout, stderr, &o.detach_keys),
            ) {
                Ok(socket) => return Ok(AttachStream { tty: c.tty, socket }),
                Err(e) => {
                    tracing::debug!(id = %c.id, error = %e, "attach socket; following the log")
                }
            }
        }
        if !c.running && !logs {
            return self.attach_before_start(&c, stdin, stdout, stderr, keys);
        }
        // History wanted: output comes from the log (lossless from this
        // moment), input goes to the monitor once it is up.
        let sock_err = |e| Error::internal("attach socket", e);
        let (ours, theirs) = UnixStream::pair().map_err(sock_err)?;
        let t0 = SystemTime::now();
        let (exit_after, monitor_after) = if c.running {
            (t0, SystemTime::UNIX_EPOCH)
        } else {
            (t0, t0)
        };
        let opts = LogOptions {
            follow: true,
            stdout,
            stderr,
            ..Default::default()
        };
        let dir = c.state_dir.clone();
        let watch = ours.try_clone().map_err(sock_err)?;
        let alive_dir = dir.clone();
        let alive = Box::new(move || {
            !hung_up(watch.as_raw_fd()) && still_running(&alive_dir, exit_after, monitor_after)
        });
        let mut history = Vec::new();
        if logs {
            let past = logs::open(
                &dir,
                LogOptions {
                    follow: false,
                    ..opts.clone()
                },
                Box::new(|| false),
            )
            .map_err(|e| Error::internal(format!("reading logs in {}", dir.display()), e))?;
            history.extend(past);
        }
        let live = logs::follow_new(&dir, opts, alive);
        let tty = c.tty;
        // Input (and, for a container not started yet, the monitor's
        // `--wait-attach` count) needs a connection to the monitor.
        if stdin || !c.running {
            let mut from_client = ours.try_clone().map_err(sock_err)?;
            let dir = dir.clone();
            let pending = (!c.running).then(|| PendingAttach::new(self, &c.id));
            std::thread::spawn(move || {
                let mon = loop {
                    if let Ok(s) =
                        monitor::attach(&dir, &attach_request(stdin, false, false, &keys))
                    {
                        break s;
                    }
                    if hung_up(from_client.as_raw_fd())
                        || !still_running(&dir, exit_after, monitor_after)
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                drop(pending);
                let mut mon = mon;
                if stdin {
                    let _ = std::io::copy(&mut from_client, &mut mon);
                    let _ = mon.shutdown(std::net::Shutdown::Write);
                } else {
                    // Hold the connection until the monitor closes it.
                    let _ = std::io::copy(&mut mon, &mut std::io::sink());
                }
            });
        }
        let mut out = ours;
        std::thread::spawn(move || {
            for chunk in history.into_iter().chain(live) {
                if out.write_all(&chunk_bytes(tty, chunk)).is_err() {
                    return;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Write);
        });
        Ok(AttachStream {
            tty,
            socket: theirs,
        })
    }

    /// An attach without live streams: the past output when `logs`, then
    /// the end of the stream, whatever the container's state.
    fn attach_history(&self, c: &IoRef, o: &AttachOptions) -> Result<AttachStream> {
        let sock_err = |e| Error::internal("attach socket", e);
        let (mut out, theirs) = UnixStream::pair().map_err(sock_err)?;
        let past: Vec<LogChunk> = if o.logs && (o.stdout || o.stderr) {
            let opts = LogOptions {
                follow: false,
                stdout: o.stdout,
                stderr: o.stderr,
                ..Default::default()
            };
            logs::open(&c.state_dir, opts, Box::new(|| false))
                .map_err(|e| {
                    Error::internal(format!("reading logs in {}", c.state_dir.display()), e)
                })?
                .collect()
        } else {
            Vec::new()
        };
        let tty = c.tty;
        std::thread::spawn(move || {
            for chunk in past {
                if out.write_all(&chunk_bytes(tty, chunk)).is_err() {
                    return;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
        });
        Ok(AttachStream {
            tty,
            socket: theirs,
        })
    }

    /// A client attached before the container starts (`docker run`). The
    /// monitor, started with `--wait-attach N` (N = clients registered
    /// here), accepts our connection before it starts the container, so
    /// its own stream carries every byte; we only relay it. The stream
    /// ends when the monitor closes it at exit, or at once if the container
    /// goes away without starting.
    fn attach_before_start(
        &self,
        c: &IoRef,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        keys: Vec<u8>,
    ) -> Result<AttachStream> {
        // The state dir link normally appears at start; attaching before
        // start watches it to notice a container removed meanwhile.
        self.ensure_state_link(&c.id)?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| Error::internal("attach socket", e))?;
        let pending = PendingAttach::new(self, &c.id);
        let dir = c.state_dir.clone();
        let t0 = SystemTime::now();
        std::thread::spawn(move || {
            let req = attach_request(stdin, stdout, stderr, &keys);
            let mon = loop {
                if let Ok(s) = monitor::attach(&dir, &req) {
                    break s;
                }
                let gone =
                    !dir.exists() || mtime(&dir.join(monitor::EXIT_FILE)).is_some_and(|t| t >= t0);
                if gone || hung_up(ours.as_raw_fd()) {
                    let _ = ours.shutdown(std::net::Shutdown::Both);
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            drop(pending);
            relay(mon, ours, stdin);
        });
        Ok(AttachStream {
            tty: c.tty,
            socket: theirs,
        })
    }

    /// Resizes the container's terminal.
    pub fn resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let c = self.io_ref(id)?;
        if !c.running {
            return Err(Self::io_not_running(&c));
        }
        let req = ControlRequest {
            resize: Some(Resize { height, width }),
            ..Default::default()
        };
        self.control(&c, "resize", &req)
    }

    /// Makes the monitor of a running container close its log file and
    /// open it again by name (the CRI's ReopenContainerLog, after the
    /// kubelet moved the file away).
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.io_ref(id)?;
        if !c.running {
            return Err(Self::io_not_running(&c));
        }
        let req = ControlRequest {
            reopen_log: true,
            ..Default::default()
        };
        self.control(&c, "reopen the log", &req)
    }

    fn control(&self, c: &IoRef, what: &str, req: &ControlRequest) -> Result<()> {
        let sock = c.state_dir.join(monitor::CONTROL_SOCK);
        match monitor::control(&c.state_dir, req) {
            Err(e) => Err(Error::internal(format!("{what} via {}", sock.display()), e)),
            Ok(Err(refused)) => Err(Error::invalid(
                what,
                format!("{what} of container {}: {refused}", c.id),
            )),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// `ps` (with `ps_args`, default `-ef`) limited to the container's processes.
    /// What the container changed in its filesystem, whatever its state.
    pub fn changes(&self, id: &str) -> Result<Vec<silo_storage::Change>> {
        let id = self.resolve_id(id)?;
        self.storage
            .changes(&id)
            .map_err(|e| Error::internal("reading the container's changes", e))
    }

    pub fn top(&self, id: &str, ps_args: Option<&str>) -> Result<ProcessTable> {
        let c = self.io_ref(id)?;
        if !c.running {
            return Err(Self::io_not_running(&c));
        }
        let host = self.compute_host()?;
        let pids = silo_compute::open(&host, &c.id)
            .and_then(|s| s.processes())
            .map_err(|e| Error::internal(format!("processes of {}", c.id), e))?;
        let args: Vec<&str> = match ps_args.map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => a.split_whitespace().collect(),
            None => vec!["-ef"],
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| Error::internal("running ps", e))?;
        if !out.status.success() {
            return Err(Error::invalid(
                "ps_args",
                format!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let (titles, rows) = stats::filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
            .map_err(|e| Error::internal("ps", std::io::Error::other(e)))?;
        Ok(ProcessTable { titles, rows })
    }

    /// One statistics sample; None when the container does not run.
    pub fn stats(&self, id: &str) -> Result<Option<stats::StatsSample>> {
        let c = self.io_ref(id)?;
        let read = silo_units::now_rfc3339();
        if !c.running {
            return Ok(None);
        }
        let host = self.compute_host()?;
        let job = silo_compute::open(&host, &c.id)
            .and_then(|s| s.stats())
            .map_err(|e| Error::internal(format!("statistics of {}", c.id), e))?;
        let (system_cpu_ns, online_cpus) = stats::system_cpu(&host.proc_root);
        // The interfaces of the container's own network namespace (none
        // for one on the host's network).
        let record = self.get(&c.id)?;
        let networks = match (&record.config.namespaces.network, record.state.status.run()) {
            (crate::model::NetworkMode::Host, _) | (_, None) => vec![],
            (_, Some(run)) => {
                stats::interfaces(&host.proc_root.join(format!("{}/net/dev", run.pid)))
            }
        };
        Ok(Some(stats::StatsSample {
            read,
            job,
            system_cpu_ns,
            online_cpus,
            host_memory: stats::host_memory(),
            networks,
        }))
    }

    /// Where a container path lives on the host, whatever the container's
    /// state: inside the volume or bind mounted at or above it (the
    /// deepest one), else inside the root filesystem. Returns the root to
    /// resolve in, the path inside it, and the mount when there is one.
    fn archive_place(
        &self,
        c: &IoRef,
        path: &str,
    ) -> Result<(PathBuf, String, Option<MountPoint>)> {
        let norm = archive::normalize(path);
        let record = self.get(&c.id)?;
        let mount = record
            .mounts
            .iter()
            .filter(|m| m.kind != crate::model::MountKind::Tmpfs && !m.source.is_empty())
            .filter(|m| {
                let d = archive::normalize(&m.destination);
                norm == d || norm.starts_with(&format!("{}/", d.trim_end_matches('/')))
            })
            .max_by_key(|m| archive::normalize(&m.destination).len())
            .cloned();
        Ok(match mount {
            Some(m) => {
                let d = archive::normalize(&m.destination);
                let rest = norm[d.len()..].trim_start_matches('/');
                (PathBuf::from(&m.source), format!("/{rest}"), Some(m))
            }
            None => (c.rootfs.clone(), norm, None),
        })
    }

    /// What the path is in the container.
    pub fn archive_stat(&self, id: &str, path: &str) -> Result<PathStat> {
        let c = self.io_ref(id)?;
        let (root, inner, _) = self.archive_place(&c, path)?;
        let mut st = archive::stat(&root, &inner).map_err(|e| Self::archive_error(&c, path, e))?;
        if inner == "/" {
            st.name = archive::basename(path);
        }
        Ok(st)
    }

    /// A tar of the path in the container.
    pub fn archive_get(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.io_ref(id)?;
        let (root, inner, _) = self.archive_place(&c, path)?;
        let top = (inner == "/").then(|| archive::basename(path));
        archive::get_named(&root, &inner, top.as_deref(), out)
            .map_err(|e| Self::archive_error(&c, path, e))
    }

    /// Extracts a tar at the path in the container.
    pub fn archive_put(&self, id: &str, path: &str, tar: &mut dyn Read) -> Result<()> {
        let c = self.io_ref(id)?;
        let (root, inner, mount) = self.archive_place(&c, path)?;
        if mount.as_ref().is_some_and(|m| m.readonly) {
            // dockerd's words.
            return Err(Error::invalid("path", "mounted volume is marked read-only"));
        }
        archive::put(&root, &inner, tar).map_err(|e| Self::archive_error(&c, path, e))
    }

    /// A tar of the container's whole filesystem.
    pub fn export(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.io_ref(id)?;
        archive::export(&c.rootfs, out).map_err(|e| Self::archive_error(&c, "/", e))
    }

    // ---- exec ----

    /// Registers an exec in a running container.
    pub fn exec_create(&self, id: &str, spec: ExecSpec) -> Result<String> {
        let c = self.io_ref(id)?;
        if c.paused {
            return Err(Error::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if !c.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if spec.args.is_empty() {
            return Err(Error::invalid("args", "No exec command specified"));
        }
        let exec_id = silo_sys::id::random_id();
        let command = spec.args.clone();
        self.execs.lock().insert(
            exec_id.clone(),
            exec::Exec {
                info: ExecInfo {
                    id: exec_id.clone(),
                    container_id: c.id.clone(),
                    spec,
                    running: false,
                    exit_code: None,
                    pid: 0,
                },
                started: false,
                master: None,
            },
        );
        self.emit(
            Scope::Container,
            Action::ExecCreate {
                exec_id: exec_id.clone(),
                command,
            },
            &c.id,
        );
        Ok(exec_id)
    }

    /// Starts an exec: detached (None) or with its stream.
    pub fn exec_start(
        &self,
        exec_id: &str,
        detach: bool,
        tty: bool,
    ) -> Result<Option<AttachStream>> {
        let (cid, mut spec) = {
            let mut map = self.execs.lock();
            let e = map
                .get_mut(exec_id)
                .ok_or_else(|| Error::not_found(Kind::Exec, exec_id))?;
            if e.started {
                return Err(Error::conflict(format!(
                    "Exec command {exec_id} is already running"
                )));
            }
            e.started = true;
            e.info.running = true;
            (e.info.container_id.clone(), e.info.spec.clone())
        };
        let fail = |err: Error| {
            self.execs.finish(exec_id, 126);
            err
        };
        if tty {
            spec.terminal = true;
        }
        let c = self.io_ref(&cid).map_err(fail)?;
        if c.paused {
            return Err(fail(Error::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            ))));
        }
        if !c.running {
            return Err(fail(Error::conflict(format!(
                "Container {} is not running",
                c.id
            ))));
        }
        match self.exec_launch(exec_id, &c, &spec, detach) {
            // As dockerd: the command's own failure is the exec's exit code
            // (127, 126); an attached client gets the message on its
            // stream, a detached one as the error.
            Err(Error::CommandFailed { code, message }) => {
                self.execs.finish(exec_id, code);
                if detach {
                    return Err(Error::CommandFailed { code, message });
                }
                let text = format!("{message}\r\n");
                let bytes = if spec.terminal {
                    text.into_bytes()
                } else {
                    silo_sys::frame::frame(silo_sys::frame::Stream::Stdout, text.as_bytes())
                };
                let (mut ours, theirs) =
                    UnixStream::pair().map_err(|e| Error::internal("exec socket", e))?;
                // Far below a socket buffer: the write cannot block.
                std::io::Write::write_all(&mut ours, &bytes)
                    .map_err(|e| Error::internal("exec socket", e))?;
                let _ = ours.shutdown(std::net::Shutdown::Write);
                Ok(Some(AttachStream {
                    tty: spec.terminal,
                    socket: theirs,
                }))
            }
            other => other.map_err(fail),
        }
    }

    /// Runs the runtime's `exec` and wires up stdio, reaping, and events.
    fn exec_launch(
        &self,
        exec_id: &str,
        c: &IoRef,
        spec: &ExecSpec,
        detach: bool,
    ) -> Result<Option<AttachStream>> {
        use std::process::Stdio;
        let tty = spec.terminal;
        let piped = |on: bool| {
            if !detach && !tty && on {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let spawned = self.exec_spawn(
            exec_id,
            c,
            spec,
            [piped(spec.stdin), piped(spec.stdout), piped(spec.stderr)],
        )?;
        let ExecSpawned {
            pid,
            master,
            stdin: cin,
            stdout: cout,
            stderr: cerr,
        } = spawned;
        if let (Some(m), Some((h, w))) = (&master, spec.console_size) {
            if h > 0 && w > 0 {
                let _ = exec::set_winsize(m, h, w);
            }
        }
        if let Some(e) = self.execs.lock().get_mut(exec_id) {
            e.info.pid = pid;
            e.master = master.clone();
        }
        self.emit(
            Scope::Container,
            Action::ExecStart {
                exec_id: exec_id.to_string(),
                command: spec.args.clone(),
            },
            &c.id,
        );
        // Reap it (it is ours once the runtime exited: we are a subreaper).
        let me = self.me.clone();
        let (xid, cid) = (exec_id.to_string(), c.id.clone());
        std::thread::spawn(move || {
            let code = exec::wait_pid(pid).unwrap_or(-1);
            if let Some(engine) = me.upgrade() {
                engine.execs.finish(&xid, code);
                engine.emit(
                    Scope::Container,
                    Action::ExecDie {
                        exec_id: xid,
                        exit_code: code,
                    },
                    &cid,
                );
            }
        });
        let me = self.me.clone();
        let xid = exec_id.to_string();
        let done = move || {
            if let Some(engine) = me.upgrade() {
                engine.execs.wait_exit(&xid, Duration::from_secs(5));
            }
        };
        if detach {
            if let Some(m) = master {
                // Keep the terminal open and drained while it runs.
                std::thread::spawn(move || {
                    if let Ok(fd) = m.try_clone() {
                        let _ = std::io::copy(&mut std::fs::File::from(fd), &mut std::io::sink());
                    }
                });
            }
            return Ok(None);
        }
        let (ours, theirs) = UnixStream::pair().map_err(|e| Error::internal("exec socket", e))?;
        let relayed = match master {
            Some(m) => exec::relay_tty(ours, m, spec.detach_sequence.clone(), done),
            None => exec::relay_pipes(ours, cin, cout, cerr, spec.detach_sequence.clone(), done),
        };
        relayed.map_err(|e| Error::internal("exec stdio relay", e))?;
        Ok(Some(AttachStream {
            tty,
            socket: theirs,
        }))
    }

    /// Starts `spec` in the container through the runtime's `exec
    /// --detach`, with `stdio` (stdin, stdout, stderr) handed to the
    /// process; a tty exec gets a pty instead. The process is our child
    /// once the runtime has exited (we are a subreaper): the caller reaps
    /// it with [`exec::wait_pid`] or `waitpid`.
    pub(crate) fn exec_spawn(
        &self,
        exec_id: &str,
        c: &IoRef,
        spec: &ExecSpec,
        stdio: [std::process::Stdio; 3],
    ) -> Result<ExecSpawned> {
        use std::process::Command;
        let tty = spec.terminal;
        let host = self.compute_host()?;
        exec::become_subreaper();
        // Without a user of its own an exec runs as the container's user,
        // resolved now in the container's files (the stored spec holds the
        // user from before start).
        let name = spec
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .or(Some(c.user.as_str()).filter(|u| !u.is_empty()));
        let user = if name.is_none() && c.groups.is_empty() {
            None
        } else {
            let read = |p: &str| archive::read_in_root(&c.rootfs, p);
            let group = read("etc/group");
            let mut user = match name {
                Some(u) => crate::spec::user_from_files(u, &read("etc/passwd"), &group)
                    .map_err(|e| Error::invalid("user", e))?,
                None => silo_oci::User::default(),
            };
            crate::spec::add_groups(&mut user, &c.groups, &group)?;
            Some(user)
        };
        let base = c.spec.process.clone().unwrap_or_default();
        let process = exec::build_process(&base, spec, user.as_ref());
        let work = self.config.exec_root.join("exec").join(exec_id);
        std::fs::create_dir_all(&work)
            .map_err(|e| Error::internal(format!("creating {}", work.display()), e))?;
        let cleanup = || {
            let _ = std::fs::remove_dir_all(&work);
        };
        let proc_file = work.join("process.json");
        let pid_file = work.join("pid");
        let log_file = work.join("runtime.log");
        let sock = work.join("console.sock");
        let bytes = serde_json::to_vec(&process)
            .map_err(|e| Error::internal("encoding process.json", e))?;
        std::fs::write(&proc_file, bytes)
            .map_err(|e| Error::internal(format!("writing {}", proc_file.display()), e))?;
        let mut cmd = Command::new(&self.config.runtime_binary);
        cmd.arg("--root").arg(&host.root);
        cmd.arg("--log")
            .arg(&log_file)
            .args(["--log-format", "json"]);
        if host.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(["exec", "--detach", "--pid-file"]).arg(&pid_file);
        cmd.arg("--process").arg(&proc_file);
        let listener = if tty {
            let l = std::os::unix::net::UnixListener::bind(&sock)
                .map_err(|e| Error::internal(format!("binding {}", sock.display()), e))?;
            cmd.arg("--console-socket").arg(&sock);
            Some(l)
        } else {
            None
        };
        cmd.arg(&c.id);
        let [stdin, stdout, stderr] = stdio;
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| {
            cleanup();
            Error::internal(
                format!("running {}", self.config.runtime_binary.display()),
                e,
            )
        })?;
        // Our copies of the stdio ends go now, so the process holds the
        // only ones (a reader sees EOF when it exits).
        drop(cmd);
        let (cin, cout, cerr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let status = child
            .wait()
            .map_err(|e| Error::internal("waiting for the runtime", e))?;
        if !status.success() {
            let msg = exec::runtime_error(&log_file).unwrap_or_else(|| format!("runtime {status}"));
            cleanup();
            // The runtime exits 127 or 126 when the command itself could
            // not be run (see silo-runtime's main).
            if let Some(code @ (126 | 127)) = status.code() {
                return Err(Error::CommandFailed {
                    code: i64::from(code),
                    message: format!("OCI runtime exec failed: {msg}"),
                });
            }
            return Err(Error::internal(
                "OCI runtime exec failed",
                std::io::Error::other(msg),
            ));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                cleanup();
                Error::internal(
                    "exec",
                    std::io::Error::other(format!("no pid in {}", pid_file.display())),
                )
            })?;
        let master = match listener {
            None => None,
            Some(l) => {
                let got = l
                    .set_nonblocking(true)
                    .and_then(|_| l.accept())
                    .and_then(|(s, _)| {
                        s.set_nonblocking(false)?;
                        exec::recv_fd(s.as_raw_fd())
                    });
                match got {
                    Ok(m) => Some(Arc::new(m)),
                    Err(e) => {
                        cleanup();
                        return Err(Error::internal("receiving the exec's pty master", e));
                    }
                }
            }
        };
        cleanup();
        Ok(ExecSpawned {
            pid,
            master,
            stdin: cin,
            stdout: cout,
            stderr: cerr,
        })
    }

    /// An exec instance.
    /// Waits (at most `limit`) for an exec to exit; its exit code, or None
    /// if it still runs.
    pub fn exec_exit(&self, exec_id: &str, limit: Duration) -> Result<Option<i64>> {
        self.execs.wait_exit(exec_id, limit);
        let info = self.exec_info(exec_id)?;
        Ok(info.exit_code.filter(|_| !info.running))
    }

    pub fn exec_info(&self, exec_id: &str) -> Result<ExecInfo> {
        self.execs
            .lock()
            .get(exec_id)
            .map(|e| e.info.clone())
            .ok_or_else(|| Error::not_found(Kind::Exec, exec_id))
    }

    /// Resizes an exec's terminal (nothing to do without one).
    pub fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        let master = {
            let map = self.execs.lock();
            let e = map
                .get(exec_id)
                .ok_or_else(|| Error::not_found(Kind::Exec, exec_id))?;
            e.master.clone()
        };
        match master {
            Some(m) => exec::set_winsize(&m, height, width)
                .map_err(|e| Error::internal(format!("resize exec {exec_id}"), e)),
            None => Ok(()),
        }
    }

    // ---- HCS views (silo hcs list / inspect) ----
    fn hcs_view(sys: &silo_compute::ComputeSystem) -> serde_json::Value {
        let st = sys.state();
        let stats = sys
            .stats()
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "Id": st.id,
            "SystemType": "Container",
            "Owner": "silod",
            "RuntimeId": sys.id(),
            "State": st.status.as_str(),
            "Pid": st.pid,
            "Bundle": st.bundle,
            "Created": st.created,
            "Statistics": stats,
        })
    }

    /// Compute systems with state, owner, runtime id and job-object accounting.
    pub fn hcs_list(&self) -> Result<Vec<serde_json::Value>> {
        let host = self.compute_host()?;
        Ok(silo_compute::list(&host)
            .iter()
            .map(|sys| {
                let mut v = Self::hcs_view(sys);
                self.add_pod(&mut v, sys.id());
                v
            })
            .collect())
    }

    /// The compute-system document (the OCI spec) with its properties and statistics.
    pub fn hcs_inspect(&self, id: &str) -> Result<serde_json::Value> {
        let host = self.compute_host()?;
        let sys = match silo_compute::open(&host, id) {
            Ok(s) => s,
            Err(_) => {
                let full = self.resolve_id(id).map_err(|_| {
                    Error::not_found(Kind::Container, format!("compute system {id}"))
                })?;
                silo_compute::open(&host, &full).map_err(|_| {
                    Error::not_found(Kind::Container, format!("compute system {full}"))
                })?
            }
        };
        let mut v = Self::hcs_view(&sys);
        self.add_pod(&mut v, sys.id());
        v["Document"] =
            serde_json::to_value(&sys.record.spec).map_err(|e| Error::internal("spec", e))?;
        v["Properties"] = serde_json::json!({
            "CgroupPath": sys.record.cgroup_path,
            "Rootfs": sys.record.rootfs,
            "Namespaces": stats::namespaces(&host.proc_root, sys.pid()),
            "NetworkNamespace": silo_isolation::pin::is_pinned(&self.netns_path(&sys.record.id))
                .then(|| self.netns_path(&sys.record.id)),
        });
        Ok(v)
    }
}

/// A log chunk as an attach stream carries it: raw with a terminal, else
/// in Docker's frames.
fn chunk_bytes(tty: bool, chunk: LogChunk) -> Vec<u8> {
    if tty {
        chunk.bytes
    } else {
        let stream = silo_sys::frame::Stream::from_byte(chunk.stream);
        silo_sys::frame::frame(stream, &chunk.bytes)
    }
}

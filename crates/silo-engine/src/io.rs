//! The engine's I/O operations on containers: logs, attach, exec, top,
//! stats, archive (cp), export, and the HCS views.

use crate::*;
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

#[path = "io/archive.rs"]
mod archive;
#[cfg(test)]
#[path = "io/e2e.rs"]
mod e2e;
#[path = "io/exec.rs"]
mod exec;
#[path = "io/logs.rs"]
mod logs;
#[path = "io/probe.rs"]
mod probe;
#[path = "io/stats.rs"]
mod stats;

const EXIT_FILE: &str = "exit.json";
const MONITOR_FILE: &str = "monitor.json";
const ATTACH_SOCK: &str = "attach.sock";
const CONTROL_SOCK: &str = "control.sock";

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
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
    if mtime(&dir.join(EXIT_FILE)).is_some_and(|t| t >= exit_after) {
        return false;
    }
    let mon = dir.join(MONITOR_FILE);
    if mtime(&mon).is_some_and(|t| t >= monitor_after) {
        let pid = std::fs::read(&mon)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["monitor_pid"].as_i64());
        if let Some(pid) = pid {
            // SAFETY: signal 0 only checks that the process exists.
            if pid > 0 && unsafe { libc::kill(pid as i32, 0) } != 0 {
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

/// Connects to the monitor's attach socket and sends the handshake.
fn monitor_attach(
    dir: &Path,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(dir.join(ATTACH_SOCK))?;
    let hello =
        serde_json::json!({"stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": false});
    s.write_all(format!("{hello}\n").as_bytes())?;
    Ok(s)
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

/// Sends one command line on the monitor's control socket; returns the reply.
fn control(dir: &Path, cmd: &serde_json::Value) -> std::io::Result<serde_json::Value> {
    let mut s = UnixStream::connect(dir.join(CONTROL_SOCK))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Attach clients waiting for a container to start, by container id.
fn pending_attaches() -> &'static std::sync::Mutex<HashMap<String, u32>> {
    static PENDING: std::sync::OnceLock<std::sync::Mutex<HashMap<String, u32>>> =
        std::sync::OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Counts one waiting attach client while it lives.
struct PendingAttach(String);

impl PendingAttach {
    fn new(id: &str) -> PendingAttach {
        let mut m = pending_attaches().lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(id.to_string()).or_default() += 1;
        PendingAttach(id.to_string())
    }
}

impl Drop for PendingAttach {
    fn drop(&mut self) {
        let mut m = pending_attaches().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.0);
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
    /// How many attach clients wait for this container to start: pass it to
    /// the monitor as `--wait-attach N` so they connect before the
    /// container runs (each connects within ~20 ms of the socket appearing).
    #[allow(dead_code)] // until the lifecycle's start passes it to the monitor
    pub(crate) fn waiting_attaches(&self, id: &str) -> u32 {
        let m = pending_attaches().lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).copied().unwrap_or(0)
    }

    fn not_running(c: &ContainerRef) -> EngineError {
        EngineError::Conflict(format!("container {} is not running", c.id))
    }

    fn archive_error(c: &ContainerRef, path: &str, e: archive::ArchiveError) -> EngineError {
        match e {
            archive::ArchiveError::NotFound { .. } => EngineError::NotFound(format!(
                "Could not find the file {path} in container {}",
                c.name.trim_start_matches('/')
            )),
            e @ (archive::ArchiveError::NotDir { .. } | archive::ArchiveError::Entry { .. }) => {
                EngineError::BadParameter(e.to_string())
            }
            e => EngineError::Internal(e.to_string()),
        }
    }

    /// Log chunks; with `follow` the iterator blocks for new output until the container stops.
    pub fn logs(
        &self,
        id: &str,
        opts: LogOptions,
    ) -> Result<Box<dyn Iterator<Item = LogChunk> + Send>> {
        let c = self.resolve(id)?;
        Self::logs_ref(&c, opts)
    }

    fn logs_ref(
        c: &ContainerRef,
        mut opts: LogOptions,
    ) -> Result<Box<dyn Iterator<Item = LogChunk> + Send>> {
        if !c.running {
            opts.follow = false;
        }
        let dir = c.state_dir.clone();
        let now = SystemTime::now();
        let alive = Box::new(move || still_running(&dir, now, SystemTime::UNIX_EPOCH));
        logs::open(&c.state_dir, opts, alive)
            .map_err(|e| internal(&format!("reading logs in {}", c.state_dir.display()), e))
    }

    pub fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        logs: bool,
    ) -> Result<AttachStream> {
        let c = self.resolve(id)?;
        if !c.running {
            // The state dir link normally appears at start; attaching before
            // start watches it to notice a container removed meanwhile.
            self.ensure_state_link(&c.id)?;
        }
        Self::attach_ref(&c, stdin, stdout, stderr, logs)
    }

    fn attach_ref(
        c: &ContainerRef,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        logs: bool,
    ) -> Result<AttachStream> {
        if c.paused {
            return Err(EngineError::Conflict(format!(
                "container {} is paused, unpause the container before attach",
                c.id
            )));
        }
        if c.running && !logs {
            match monitor_attach(&c.state_dir, stdin, stdout, stderr) {
                Ok(socket) => return Ok(AttachStream { tty: c.tty, socket }),
                Err(e) => {
                    tracing::debug!(id = %c.id, error = %e, "attach socket; following the log")
                }
            }
        }
        if !c.running && !logs {
            return Self::attach_before_start(c, stdin, stdout, stderr);
        }
        // History wanted: output comes from the log (lossless from this
        // moment), input goes to the monitor once it is up.
        let (ours, theirs) = UnixStream::pair().map_err(|e| internal("socketpair", e))?;
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
        let watch = ours.try_clone().map_err(|e| internal("socket", e))?;
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
            .map_err(|e| internal(&format!("reading logs in {}", dir.display()), e))?;
            history.extend(past);
        }
        let live = logs::follow_new(&dir, opts, alive);
        let tty = c.tty;
        // Input (and, for a container not started yet, the monitor's
        // `--wait-attach` count) needs a connection to the monitor.
        if stdin || !c.running {
            let mut from_client = ours.try_clone().map_err(|e| internal("socket", e))?;
            let dir = dir.clone();
            let pending = (!c.running).then(|| PendingAttach::new(&c.id));
            std::thread::spawn(move || {
                let mon = loop {
                    if let Ok(s) = monitor_attach(&dir, stdin, false, false) {
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
                let bytes = if tty {
                    chunk.bytes
                } else {
                    exec::frame(chunk.stream, &chunk.bytes)
                };
                if out.write_all(&bytes).is_err() {
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

    /// `docker run` and `start -a` attach before the container starts. The
    /// monitor, started with `--wait-attach N` (N = clients registered
    /// here), accepts our connection before it starts the container, so
    /// the monitor's own stream carries every byte; we only relay it. The
    /// stream ends when the monitor closes it at exit, or right away if
    /// the container goes away without starting.
    fn attach_before_start(
        c: &ContainerRef,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachStream> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| internal("socketpair", e))?;
        let pending = PendingAttach::new(&c.id);
        let dir = c.state_dir.clone();
        let t0 = SystemTime::now();
        std::thread::spawn(move || {
            let mon = loop {
                if let Ok(s) = monitor_attach(&dir, stdin, stdout, stderr) {
                    break s;
                }
                let gone = !dir.exists() || mtime(&dir.join(EXIT_FILE)).is_some_and(|t| t >= t0);
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

    pub fn resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let c = self.resolve(id)?;
        if !c.running {
            return Err(Self::not_running(&c));
        }
        let reply = control(
            &c.state_dir,
            &serde_json::json!({"resize": {"height": height, "width": width}}),
        )
        .map_err(|e| {
            internal(
                &format!("resize via {}", c.state_dir.join(CONTROL_SOCK).display()),
                e,
            )
        })?;
        match reply.get("error").and_then(|e| e.as_str()) {
            Some(e) => Err(EngineError::Internal(format!(
                "resize container {}: {e}",
                c.id
            ))),
            None => Ok(()),
        }
    }

    pub fn top(&self, id: &str, ps_args: Option<&str>) -> Result<ContainerTopResponse> {
        let c = self.resolve(id)?;
        self.top_ref(&c, ps_args)
    }

    fn top_ref(&self, c: &ContainerRef, ps_args: Option<&str>) -> Result<ContainerTopResponse> {
        if !c.running {
            return Err(Self::not_running(c));
        }
        let host = self.compute_host()?;
        let pids = silo_compute::open(&host, &c.id)
            .and_then(|s| s.processes())
            .map_err(|e| internal(&format!("processes of {}", c.id), e))?;
        let args: Vec<&str> = match ps_args.map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => a.split_whitespace().collect(),
            None => vec!["-ef"],
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| internal("running ps", e))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let (titles, rows) = stats::filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
            .map_err(EngineError::Internal)?;
        Ok(ContainerTopResponse {
            titles: Some(titles),
            processes: Some(rows),
        })
    }

    /// One statistics sample (the API layer repeats it for streaming).
    pub fn stats(&self, id: &str) -> Result<ContainerStatsResponse> {
        let c = self.resolve(id)?;
        self.stats_ref(c)
    }

    fn stats_ref(&self, c: ContainerRef) -> Result<ContainerStatsResponse> {
        let read = silo_compute::store::rfc3339_now();
        let name = format!("/{}", c.name.trim_start_matches('/'));
        if !c.running {
            return Ok(ContainerStatsResponse {
                id: Some(c.id),
                name: Some(name),
                read: Some(read),
                preread: Some("0001-01-01T00:00:00Z".into()),
                os_type: Some("linux".into()),
                ..Default::default()
            });
        }
        let host = self.compute_host()?;
        let s = silo_compute::open(&host, &c.id)
            .and_then(|s| s.stats())
            .map_err(|e| internal(&format!("statistics of {}", c.id), e))?;
        let (system_ns, cpus) = stats::system_cpu(&host.proc_root);
        let (cpu, mut resp) = stats::convert(&s, system_ns, cpus, read);
        resp.id = Some(c.id.clone());
        resp.name = Some(name);
        Ok(stats::with_previous(&c.id, cpu, resp))
    }

    /// `HEAD/GET /containers/{id}/archive`: the stat header (base64 JSON in
    /// `X-Docker-Container-Path-Stat`) and, for GET, a tar written to `out`.
    pub fn archive_stat(&self, id: &str, path: &str) -> Result<serde_json::Value> {
        let c = self.resolve(id)?;
        archive::stat(&c.rootfs, path).map_err(|e| Self::archive_error(&c, path, e))
    }
    pub fn archive_get(&self, id: &str, path: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.resolve(id)?;
        archive::get(&c.rootfs, path, out).map_err(|e| Self::archive_error(&c, path, e))
    }
    pub fn archive_put(&self, id: &str, path: &str, tar: &mut dyn Read) -> Result<()> {
        let c = self.resolve(id)?;
        archive::put(&c.rootfs, path, tar).map_err(|e| Self::archive_error(&c, path, e))
    }
    pub fn export(&self, id: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.resolve(id)?;
        archive::export(&c.rootfs, out).map_err(|e| Self::archive_error(&c, "/", e))
    }

    // ---- exec ----
    pub fn exec_create(&self, id: &str, config: ExecConfig) -> Result<IdResponse> {
        let c = self.resolve(id)?;
        if c.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if !c.running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::BadParameter(
                "No exec command specified".into(),
            ));
        }
        let exec_id = exec::new_id();
        let action = exec::event_action("exec_create", config.cmd.as_deref().unwrap_or_default());
        exec::registry().lock().insert(
            exec_id.clone(),
            exec::Exec {
                id: exec_id.clone(),
                container_id: c.id.clone(),
                config,
                started: false,
                running: false,
                exit_code: None,
                pid: 0,
                master: None,
            },
        );
        self.emit(
            "container",
            &action,
            &c.id,
            HashMap::from([("execID".to_string(), exec_id.clone())]),
        );
        Ok(IdResponse { id: exec_id })
    }

    /// Detached: starts and returns None. Otherwise the stream to relay.
    pub fn exec_start(
        &self,
        exec_id: &str,
        detach: bool,
        tty: bool,
    ) -> Result<Option<AttachStream>> {
        let reg = exec::registry();
        let (cid, mut cfg) = {
            let mut map = reg.lock();
            let e = map.get_mut(exec_id).ok_or_else(|| {
                EngineError::NotFound(format!("No such exec instance: {exec_id}"))
            })?;
            if e.started {
                return Err(EngineError::Conflict(format!(
                    "Exec command {exec_id} is already running"
                )));
            }
            e.started = true;
            e.running = true;
            (e.container_id.clone(), e.config.clone())
        };
        let fail = |err: EngineError| {
            reg.finish(exec_id, 126);
            err
        };
        if tty {
            cfg.tty = Some(true);
        }
        let c = self.resolve(&cid).map_err(fail)?;
        if c.paused {
            return Err(fail(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            ))));
        }
        if !c.running {
            return Err(fail(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            ))));
        }
        match self.exec_launch(exec_id, &c, &cfg, detach) {
            Ok(s) => Ok(s),
            Err(e) => Err(fail(e)),
        }
    }

    /// Runs the runtime's `exec` and wires up stdio, reaping, and events.
    fn exec_launch(
        &self,
        exec_id: &str,
        c: &ContainerRef,
        cfg: &ExecConfig,
        detach: bool,
    ) -> Result<Option<AttachStream>> {
        use std::process::Stdio;
        let tty = cfg.tty.unwrap_or(false);
        let piped = |on: Option<bool>| {
            if !detach && !tty && on.unwrap_or(false) {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let spawned = self.exec_spawn(
            exec_id,
            c,
            cfg,
            [
                piped(cfg.attach_stdin),
                piped(cfg.attach_stdout),
                piped(cfg.attach_stderr),
            ],
        )?;
        let ExecSpawned {
            pid,
            master,
            stdin: cin,
            stdout: cout,
            stderr: cerr,
        } = spawned;
        if let (Some(m), Some([h, w])) = (&master, cfg.console_size.as_deref()) {
            if *h > 0 && *w > 0 {
                let _ = exec::set_winsize(m, *h as u16, *w as u16);
            }
        }
        let reg = exec::registry();
        if let Some(e) = reg.lock().get_mut(exec_id) {
            e.pid = pid;
            e.master = master.clone();
        }
        let attrs = HashMap::from([("execID".to_string(), exec_id.to_string())]);
        self.emit(
            "container",
            &exec::event_action("exec_start", cfg.cmd.as_deref().unwrap_or_default()),
            &c.id,
            attrs.clone(),
        );
        // Reap it (it is ours once the runtime exited: we are a subreaper).
        let me = self.me.clone();
        let (xid, cid) = (exec_id.to_string(), c.id.clone());
        std::thread::spawn(move || {
            let code = exec::wait_pid(pid).unwrap_or(-1);
            exec::registry().finish(&xid, code);
            if let Some(engine) = me.upgrade() {
                let mut a = attrs;
                a.insert("exitCode".into(), code.to_string());
                engine.emit("container", "exec_die", &cid, a);
            }
        });
        let xid = exec_id.to_string();
        let done = move || exec::registry().wait_exit(&xid, Duration::from_secs(5));
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
        let (ours, theirs) = UnixStream::pair().map_err(|e| internal("socketpair", e))?;
        let relayed = match master {
            Some(m) => exec::relay_tty(ours, m, done),
            None => exec::relay_pipes(ours, cin, cout, cerr, done),
        };
        relayed.map_err(|e| internal("exec stdio relay", e))?;
        Ok(Some(AttachStream {
            tty,
            socket: theirs,
        }))
    }

    /// Starts `cfg` in the container through the runtime's `exec
    /// --detach`, with `stdio` (stdin, stdout, stderr) handed to the
    /// process; a tty exec gets a pty instead. The process is our child
    /// once the runtime has exited (we are a subreaper): the caller reaps
    /// it with [`exec::wait_pid`] or `waitpid`.
    pub(crate) fn exec_spawn(
        &self,
        exec_id: &str,
        c: &ContainerRef,
        cfg: &ExecConfig,
        stdio: [std::process::Stdio; 3],
    ) -> Result<ExecSpawned> {
        use std::process::Command;
        let tty = cfg.tty.unwrap_or(false);
        let host = self.compute_host()?;
        exec::become_subreaper();
        // Without `-u` an exec runs as the container's user (Docker sets
        // the exec's User to Config.User), resolved now in the container's
        // files; the stored spec holds the user from before start.
        let user = match cfg
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .or(Some(c.user.as_str()).filter(|u| !u.is_empty()))
        {
            None => None,
            Some(u) => {
                let read = |p: &str| -> String {
                    archive::open_root(&c.rootfs)
                        .ok()
                        .and_then(|r| {
                            archive::open_in_root(&r, Path::new(p), rustix::fs::OFlags::RDONLY).ok()
                        })
                        .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
                        .unwrap_or_default()
                };
                Some(
                    spec::user_from_files(u, &read("etc/passwd"), &read("etc/group"))
                        .map_err(EngineError::Internal)?,
                )
            }
        };
        let base = c.spec.process.clone().unwrap_or_default();
        let process = exec::build_process(&base, cfg, user.as_ref());
        let work = self.config.exec_root.join("exec").join(exec_id);
        std::fs::create_dir_all(&work).map_err(|e| internal(&work.display().to_string(), e))?;
        let cleanup = || {
            let _ = std::fs::remove_dir_all(&work);
        };
        let proc_file = work.join("process.json");
        let pid_file = work.join("pid");
        let log_file = work.join("runtime.log");
        let sock = work.join("console.sock");
        let bytes = serde_json::to_vec(&process).map_err(|e| internal("process.json", e))?;
        std::fs::write(&proc_file, bytes)
            .map_err(|e| internal(&proc_file.display().to_string(), e))?;
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
                .map_err(|e| internal(&sock.display().to_string(), e))?;
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
            internal(
                &format!("running {}", self.config.runtime_binary.display()),
                e,
            )
        })?;
        // Our copies of the stdio ends go now, so the process holds the
        // only ones (a reader sees EOF when it exits).
        drop(cmd);
        let (cin, cout, cerr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let status = child
            .wait()
            .map_err(|e| internal("waiting for the runtime", e))?;
        if !status.success() {
            let msg = exec::runtime_error(&log_file).unwrap_or_else(|| format!("runtime {status}"));
            cleanup();
            return Err(EngineError::Internal(format!(
                "OCI runtime exec failed: {msg}"
            )));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                cleanup();
                EngineError::Internal(format!("no pid in {}", pid_file.display()))
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
                        return Err(internal("receiving the exec's pty master", e));
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

    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspectResponse> {
        let map = exec::registry().lock();
        let e = map
            .get(exec_id)
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {exec_id}")))?;
        let cmd = e.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(e.config.detach_keys.clone().unwrap_or_default()),
            id: Some(e.id.clone()),
            running: Some(e.running),
            exit_code: e.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(e.config.privileged.unwrap_or(false)),
                user: Some(e.config.user.clone().unwrap_or_default()),
                tty: Some(e.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(e.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(e.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(e.config.attach_stdout.unwrap_or(false)),
            container_id: Some(e.container_id.clone()),
            pid: Some(i64::from(e.pid)),
        })
    }

    pub fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        let master = {
            let map = exec::registry().lock();
            let e = map.get(exec_id).ok_or_else(|| {
                EngineError::NotFound(format!("No such exec instance: {exec_id}"))
            })?;
            e.master.clone()
        };
        match master {
            Some(m) => exec::set_winsize(&m, height, width)
                .map_err(|e| internal(&format!("resize exec {exec_id}"), e)),
            // Docker ignores resizes of execs without a terminal.
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
            .map(Self::hcs_view)
            .collect())
    }
    /// The compute-system document (the OCI spec) with its properties and statistics.
    pub fn hcs_inspect(&self, id: &str) -> Result<serde_json::Value> {
        let host = self.compute_host()?;
        let sys = match silo_compute::open(&host, id) {
            Ok(s) => s,
            Err(first) => {
                let full = self
                    .resolve_id(id)
                    .map_err(|_| EngineError::NotFound(format!("compute system {id}: {first}")))?;
                silo_compute::open(&host, &full)
                    .map_err(|e| EngineError::NotFound(format!("compute system {full}: {e}")))?
            }
        };
        let mut v = Self::hcs_view(&sys);
        v["Document"] = serde_json::to_value(&sys.record.spec).map_err(|e| internal("spec", e))?;
        v["Properties"] = serde_json::json!({
            "CgroupPath": sys.record.cgroup_path,
            "Rootfs": sys.record.rootfs,
            "Namespaces": stats::namespaces(&host.proc_root, sys.pid()),
        });
        Ok(v)
    }
}

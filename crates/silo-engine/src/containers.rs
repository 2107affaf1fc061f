//! The container lifecycle with Docker's semantics: create, start (through
//! a detached `silo-monitor`), the exit watcher with restart policies and
//! auto-remove, stop/kill/pause/wait/remove/rename/update, list and inspect.

use crate::model::{self, Container, State};
use crate::spec::{self, ImageDefaults};
use crate::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The files the monitor writes in the state dir.
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const MONITOR_FILE: &str = "monitor.json";
pub(crate) const LOG_FILE: &str = "container-json.log";

/// `exit.json` as the monitor writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct ExitRecord {
    pub exit_code: i64,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub finished_at: String,
}

/// `monitor.json` as the monitor writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct MonitorRecord {
    pub monitor_pid: i32,
    #[serde(default)]
    pub init_pid: i32,
    #[serde(default)]
    pub started_at: String,
}

pub(crate) fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub(crate) fn read_monitor(dir: &Path) -> Option<MonitorRecord> {
    let text = std::fs::read(dir.join(MONITOR_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether `pid` is a live silo-monitor (checked through `proc`/<pid>/cmdline
/// so a recycled pid is not mistaken for it), and with `id`, the monitor of
/// that container (`--id <id>`: a pid recycled by another monitor is not it).
pub(crate) fn monitor_alive(proc_root: &Path, pid: i32, id: Option<&str>) -> bool {
    if pid <= 0 {
        return false;
    }
    let stat = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).unwrap_or_default();
    if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
        if rest.trim_start().starts_with('Z') {
            return false;
        }
    }
    let Ok(cmdline) = std::fs::read(proc_root.join(format!("{pid}/cmdline"))) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_monitor = args
        .first()
        .is_some_and(|a| String::from_utf8_lossy(a).contains("silo-monitor"));
    is_monitor
        && id.is_none_or(|id| {
            args.windows(2)
                .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
        })
}

pub(crate) fn now_rfc3339() -> String {
    silo_compute::store::rfc3339_now()
}

/// Seconds since the epoch of an RFC 3339 timestamp (ours are UTC; image
/// configs may carry an offset).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    silo_units::parse_rfc3339(s).ok().map(|(secs, _nanos)| secs)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// "3 seconds", "About a minute", "2 hours" — Docker's human durations.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if s / 60 == 1 {
        "About a minute".into()
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else if s / 3600 == 1 {
        "About an hour".into()
    } else if s < 48 * 3600 {
        format!("{} hours", s / 3600)
    } else if s < 7 * 24 * 3600 * 2 {
        format!("{} days", s / 86400)
    } else if s < 30 * 24 * 3600 * 3 {
        format!("{} weeks", s / (7 * 86400))
    } else if s < 365 * 24 * 3600 * 2 {
        format!("{} months", s / (30 * 86400))
    } else {
        format!("{} years", s / (365 * 86400))
    }
}

/// Parses a signal given as a name ("SIGTERM", "term") or a number.
pub(crate) fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(EngineError::BadParameter(format!("invalid signal: {s}")));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(off) = name
                .strip_prefix("RTMIN+")
                .and_then(|x| x.parse::<i32>().ok())
            {
                return Ok(libc::SIGRTMIN() + off);
            }
            return Err(EngineError::BadParameter(format!("invalid signal: {s}")));
        }
    };
    Ok(n)
}

/// A pidfd on a process that is not our child (the detached monitor).
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: i32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the syscall returned a fresh descriptor that we now own.
        Some(PidFd(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    /// Waits up to `timeout`; true once the process has exited.
    fn wait(&self, timeout: Duration) -> bool {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        n > 0 && pfd.revents != 0
    }
}

/// Reaps the monitor if it became our child (silod may be a subreaper,
/// and the detached monitor is then reparented to it); harmless otherwise.
fn reap(pid: i32) {
    if pid <= 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG writes into a live i32.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

impl Engine {
    pub(crate) fn op_lock(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    /// Applies `f` to the container's record, persists it (one
    /// transaction) and wakes waiters. Returns the updated copy.
    pub(crate) fn modify(&self, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
        let mut map = self.lock();
        let c = map.get_mut(id).ok_or_else(|| model::no_such(id))?;
        let before = c.clone();
        f(c);
        if let Err(e) = self.db.put(c) {
            *c = before;
            return Err(e);
        }
        let out = c.clone();
        drop(map);
        self.changed.notify_all();
        Ok(out)
    }

    pub(crate) fn get(&self, id: &str) -> Result<Container> {
        let map = self.lock();
        model::find(&map, id).cloned()
    }

    // ---------------------------------------------------------------- create

    pub fn create_container(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let warnings = spec::validate(&body)?;
        let image_ref = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| EngineError::BadParameter("Config.Image: no image specified".into()))?;
        let image = self.storage.image(&image_ref).map_err(|_| {
            let shown = silo_storage::normalize_reference(&image_ref).unwrap_or(image_ref.clone());
            EngineError::NotFound(format!("No such image: {shown}"))
        })?;
        // The image's HEALTHCHECK fills in what the user left unset.
        let body = ContainerCreateBody {
            healthcheck: crate::health::merge(
                body.healthcheck,
                image.config.config.healthcheck.as_ref(),
            ),
            ..body
        };
        let id = model::random_id();

        // Reserve the name with a "creating" row (transaction 1).
        let placeholder = {
            let mut map = self.lock();
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n);
                    if !model::valid_name(n) {
                        return Err(EngineError::BadParameter(format!(
                            "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                        )));
                    }
                    if let Some(other) = map.values().find(|c| c.name == n) {
                        return Err(EngineError::Conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                            other.id
                        )));
                    }
                    n.to_string()
                }
                None => {
                    let mut retry = 0;
                    loop {
                        let n = model::random_name(retry);
                        if !map.values().any(|c| c.name == n) {
                            break n;
                        }
                        retry += 1;
                    }
                }
            };
            let c = Container {
                id: id.clone(),
                name,
                created: now_rfc3339(),
                image: image_ref.clone(),
                image_id: image.id.clone(),
                body: body.clone(),
                spec: Default::default(),
                state: State {
                    status: "creating".into(),
                    ..Default::default()
                },
                restart_count: 0,
                mounts: vec![],
                anonymous_volumes: vec![],
                manual_stop: false,
                image_user: image.config.config.user.clone().unwrap_or_default(),
                exit_seq: 0,
            };
            self.db.put(&c)?;
            map.insert(id.clone(), c.clone());
            c
        };

        let mut created_volumes: Vec<String> = Vec::new();
        let result = self.finish_create(placeholder, &image, &body, &mut created_volumes);
        match result {
            Ok(c) => {
                self.emit("container", "create", &c.id, HashMap::new());
                Ok(ContainerCreateResponse { id: c.id, warnings })
            }
            Err(e) => {
                // Roll back everything the create made.
                let _ = self.storage.remove_snapshot(&id);
                let _ = std::fs::remove_dir_all(self.container_dir(&id));
                for v in created_volumes {
                    let _ = self.storage.remove_volume(&v, false, true);
                }
                let _ = self.db.delete(&id);
                self.lock().remove(&id);
                Err(e)
            }
        }
    }

    fn finish_create(
        &self,
        mut c: Container,
        image: &silo_storage::Image,
        body: &ContainerCreateBody,
        created_volumes: &mut Vec<String>,
    ) -> Result<Container> {
        let init = match body.host_config.as_ref().and_then(|h| h.init) {
            Some(true) => Some(self.config.init_binary.clone().ok_or_else(|| {
                EngineError::BadParameter(
                    "HostConfig.Init: no init binary: install Debian's tini package or start silod with --init-path".into(),
                )
            })?),
            _ => None,
        };
        let dir = self.container_dir(&c.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| internal(&format!("creating {}", dir.display()), e))?;
        let rootfs = self
            .storage
            .create_snapshot_with(
                &c.id,
                &image.id,
                body.host_config.as_ref().and_then(|h| h.auto_remove) == Some(true),
            )
            .map_err(|e| internal("creating the container filesystem", e))?;
        let ic = &image.config.config;
        let defaults = ImageDefaults {
            env: ic.env.clone().unwrap_or_default(),
            cmd: ic.cmd.clone().unwrap_or_default(),
            entrypoint: ic.entrypoint.clone().unwrap_or_default(),
            working_dir: ic.working_dir.clone().unwrap_or_default(),
        };
        let storage = &self.storage;
        let mut volume = |name: Option<&str>| -> Result<(String, PathBuf)> {
            let existed = name.is_some_and(|n| storage.volume(n).is_ok());
            let v = storage
                .create_volume(name, Default::default())
                .map_err(|e| EngineError::BadParameter(format!("HostConfig.Binds: {e}")))?;
            if !existed {
                created_volumes.push(v.name.clone());
                self.emit(
                    "volume",
                    "create",
                    &v.name,
                    HashMap::from([("driver".to_string(), "local".to_string())]),
                );
            }
            Ok((v.name, v.mountpoint))
        };
        let built = spec::build(
            &c.id,
            body,
            &defaults,
            &rootfs,
            &dir,
            self.cgroupns,
            &mut volume,
        )?;
        let hostname = built.spec.hostname.clone().unwrap_or_default();
        spec::write_etc_files(&dir, &hostname, Path::new("/etc/resolv.conf"))?;
        c.spec = built.spec.into();
        if let Some(init) = init {
            spec::add_init(&mut c.spec, &init);
        }
        c.mounts = built.mounts;
        c.anonymous_volumes = built.anonymous_volumes;
        c.state.status = "created".into();
        // Transaction 2: the container exists.
        self.modify(&c.id.clone(), move |slot| *slot = c)
    }

    // ----------------------------------------------------------------- start

    pub fn start(&self, id: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.start_locked(&id)
    }

    pub(crate) fn start_locked(&self, id: &str) -> Result<()> {
        let t0 = std::time::Instant::now();
        let c = self.get(id)?;
        if c.state.running {
            return Err(EngineError::NotModified(format!(
                "container {id} is already running"
            )));
        }
        if matches!(c.state.status.as_str(), "removing" | "dead") {
            return Err(EngineError::Conflict(format!(
                "cannot start container {id}: it is {}",
                c.state.status
            )));
        }
        let dir = self.container_dir(id);
        let rootfs = self
            .storage
            .mount_snapshot(id)
            .map_err(|e| internal("mounting the container filesystem", e))?;
        let hc = c.host_config();
        let mut spec: silo_oci::Spec = (*c.spec).clone();
        let user = c
            .body
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or(c.image_user.clone());
        let caps = spec::caps(&hc)?;
        let sec = spec::security(&hc, &caps)?;
        if let Some(p) = spec.process.as_mut() {
            p.user = spec::resolve_user(&rootfs, &user)?;
        }
        if let Some(r) = spec.root.as_mut() {
            r.path = rootfs.to_string_lossy().into_owned();
        }
        if let Some(l) = spec.linux.as_mut() {
            l.seccomp = sec.seccomp;
        }
        let json =
            serde_json::to_vec_pretty(&spec).map_err(|e| internal("encoding config.json", e))?;
        let cfg = dir.join("config.json");
        std::fs::write(&cfg, json)
            .map_err(|e| internal(&format!("writing {}", cfg.display()), e))?;
        for f in [EXIT_FILE, MONITOR_FILE] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        // A stale runtime record (e.g. from a crash) would block the create.
        if let Ok(host) = self.compute_host() {
            if let Ok(sys) = silo_compute::open(&host, id) {
                let _ = sys.delete(true);
            }
        }

        let state_dir = self.ensure_state_link(id)?;
        let mut cmd = Command::new(&self.config.monitor_binary);
        cmd.arg("--detach")
            .arg("--runtime-root")
            .arg(self.config.exec_root.join("runtime"))
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(&dir)
            .arg("--state-dir")
            .arg(&state_dir);
        if c.body.tty == Some(true) {
            cmd.arg("--tty");
        }
        if c.body.open_stdin == Some(true) {
            cmd.arg("--stdin");
        }
        // Clients attached before start (docker run) must see all output.
        let waiting = self.waiting_attaches(id);
        if waiting > 0 {
            cmd.arg("--wait-attach").arg(waiting.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t_prepared = t0.elapsed();
        let out = cmd.output().map_err(|e| {
            internal(
                &format!(
                    "running the monitor {}",
                    self.config.monitor_binary.display()
                ),
                e,
            )
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let msg = [stdout.as_str(), stderr.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(": ");
            let msg = format!("failed to create the container: {msg}");
            let _ = self.modify(id, |c| c.state.error = msg.clone());
            let lower = msg.to_ascii_lowercase();
            return Err(
                if lower.contains("no such file")
                    || lower.contains("not found")
                    || lower.contains("permission denied")
                {
                    EngineError::BadParameter(msg)
                } else {
                    EngineError::Internal(msg)
                },
            );
        }
        let pid: i32 = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| {
                internal(
                    "the monitor's answer",
                    format!("expected the init pid, got {stdout:?}"),
                )
            })?;
        let monitor_pid = read_monitor(&dir).map(|m| m.monitor_pid).unwrap_or(0);
        let started = now_rfc3339();
        let c = self.modify(id, |c| {
            c.state = State {
                status: "running".into(),
                running: true,
                pid,
                started_at: started.clone(),
                finished_at: c.state.finished_at.clone(),
                monitor_pid,
                health: crate::health::starting(c),
                ..Default::default()
            };
        })?;
        tracing::debug!(
            id,
            prepare_ms = t_prepared.as_secs_f64() * 1e3,
            total_ms = t0.elapsed().as_secs_f64() * 1e3,
            "started"
        );
        self.emit("container", "start", id, HashMap::new());
        self.watch(id, &c.state.started_at);
        self.health_watch(id);
        Ok(())
    }

    /// Starts the thread that waits for the current run's exit.json.
    pub(crate) fn watch(&self, id: &str, started_at: &str) {
        let Some(me) = self.me.upgrade() else { return };
        let id = id.to_string();
        let started_at = started_at.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("watch-{}", &id[..12.min(id.len())]))
            .spawn(move || me.watch_loop(&id, &started_at));
        if let Err(e) = spawned {
            tracing::error!("cannot start the exit watcher: {e}");
        }
    }

    fn watch_loop(&self, id: &str, started_at: &str) {
        let dir = self.container_dir(id);
        let proc_root = PathBuf::from("/proc");
        let monitor_pid = self
            .lock()
            .get(id)
            .map(|c| c.state.monitor_pid)
            .unwrap_or(0);
        // The monitor exits right after writing exit.json and cleaning up,
        // so a pidfd on it wakes us without polling; without one (no pid
        // recorded) we poll exit.json every 20 ms.
        let pidfd = if monitor_pid > 0 {
            PidFd::open(monitor_pid)
        } else {
            None
        };
        let mut tick = 0u32;
        loop {
            let monitor_gone = match &pidfd {
                Some(fd) => fd.wait(Duration::from_millis(250)),
                None => {
                    std::thread::sleep(Duration::from_millis(20));
                    false
                }
            };
            tick = tick.wrapping_add(1);
            if monitor_gone {
                tracing::debug!(id, monitor_pid, "monitor exited");
                reap(monitor_pid);
            }
            let current = {
                let map = self.lock();
                match map.get(id) {
                    Some(c) if c.state.running && c.state.started_at == started_at => {
                        Some(c.state.monitor_pid)
                    }
                    _ => None,
                }
            };
            let Some(monitor_pid) = current else { return };
            if let Some(exit) = read_exit(&dir) {
                if !monitor_gone && pidfd.is_some() {
                    // Give the monitor a moment to finish its cleanup
                    // (cgroup removal) so a following `rm` finds nothing.
                    if let Some(fd) = &pidfd {
                        fd.wait(Duration::from_millis(500));
                    }
                }
                self.on_exit(id, started_at, exit, None);
                return;
            }
            let check = monitor_gone || (pidfd.is_none() && tick.is_multiple_of(25));
            if check && monitor_pid > 0 && !monitor_alive(&proc_root, monitor_pid, Some(id)) {
                if let Some(exit) = read_exit(&dir) {
                    self.on_exit(id, started_at, exit, None);
                } else {
                    self.monitor_lost(id);
                    self.on_exit(
                        id,
                        started_at,
                        ExitRecord {
                            exit_code: 255,
                            oom_killed: false,
                            finished_at: now_rfc3339(),
                        },
                        Some("monitor lost".into()),
                    );
                }
                return;
            }
        }
    }

    /// Cleans up after a monitor that died without writing exit.json.
    pub(crate) fn monitor_lost(&self, id: &str) {
        if let Ok(host) = self.compute_host() {
            if let Ok(sys) = silo_compute::open(&host, id) {
                let _ = sys.delete(true);
            }
        }
    }

    /// Records an exit, emits die/oom and applies AutoRemove and the
    /// restart policy.
    pub(crate) fn on_exit(
        &self,
        id: &str,
        started_at: &str,
        exit: ExitRecord,
        error: Option<String>,
    ) {
        // Read before the state change: `restart` stops waiting for it and
        // then forgets the container.
        let by_hand = self
            .restarting_by_hand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id);
        let finished = if exit.finished_at.is_empty() {
            now_rfc3339()
        } else {
            exit.finished_at.clone()
        };
        let updated = self.modify(id, |c| {
            if c.state.started_at != started_at || !c.state.running {
                return;
            }
            c.state.status = "exited".into();
            c.state.running = false;
            c.state.paused = false;
            c.state.restarting = false;
            c.state.pid = 0;
            c.state.monitor_pid = 0;
            c.state.exit_code = exit.exit_code;
            c.state.oom_killed = exit.oom_killed;
            c.state.finished_at = finished.clone();
            c.state.error = error.clone().unwrap_or_default();
            crate::health::stopped(&mut c.state);
            c.exit_seq += 1;
        });
        let Ok(c) = updated else { return };
        if c.state.finished_at != finished {
            return;
        }
        tracing::debug!(id, code = exit.exit_code, "exit recorded");
        if exit.oom_killed {
            self.emit("container", "oom", id, HashMap::new());
        }
        self.emit(
            "container",
            "die",
            id,
            HashMap::from([("exitCode".to_string(), exit.exit_code.to_string())]),
        );
        let hc = c.host_config();
        if hc.auto_remove == Some(true) && !by_hand {
            match self.auto_remove(id, &finished) {
                Ok(()) => tracing::debug!(id, "auto-removed"),
                Err(e) => tracing::warn!("auto-remove of {id}: {e}"),
            }
            return;
        }
        if self.should_restart(&c) {
            let _ = self.modify(id, |c| {
                c.state.status = "restarting".into();
                c.state.restarting = true;
            });
            self.schedule_restart(id, c.restart_count);
        }
    }

    /// Starts the container again after the policy's delay, unless it was
    /// stopped or removed meanwhile.
    pub(crate) fn schedule_restart(&self, id: &str, restart_count: i64) {
        let delay = Duration::from_millis(100u64 << restart_count.clamp(0, 10));
        let Some(me) = self.me.upgrade() else { return };
        let id = id.to_string();
        let _ = std::thread::Builder::new()
            .name("restart".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let lock = me.op_lock(&id);
                let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                let still = me.get(&id).map(|c| c.state.restarting).unwrap_or(false);
                if !still {
                    return;
                }
                let _ = me.modify(&id, |c| {
                    c.restart_count += 1;
                    c.state.restarting = false;
                });
                if let Err(e) = me.start_locked(&id) {
                    tracing::warn!("restart of {id}: {e}");
                    let _ = me.modify(&id, |c| {
                        c.state.status = "exited".into();
                        c.state.error = e.to_string();
                    });
                }
            });
    }

    /// RestartPolicy: no, always, unless-stopped, on-failure[:max]. The
    /// delay before a restart is 100 ms doubling per restart (capped at
    /// ~100 s), a simplification of Docker's backoff.
    pub(crate) fn should_restart(&self, c: &Container) -> bool {
        use bollard_stubs::models::RestartPolicyNameEnum as R;
        if c.manual_stop {
            return false;
        }
        let rp = c.host_config().restart_policy.unwrap_or_default();
        match rp.name.unwrap_or(R::EMPTY) {
            R::ALWAYS | R::UNLESS_STOPPED => true,
            R::ON_FAILURE => {
                let max = rp.maximum_retry_count.unwrap_or(0);
                c.state.exit_code != 0 && (max <= 0 || c.restart_count < max)
            }
            _ => false,
        }
    }

    // ------------------------------------------------------ stop/kill/pause

    /// Waits until the container is not running (or `deadline` passes).
    fn wait_stopped(&self, id: &str, deadline: Option<Instant>) -> bool {
        let mut map = self.lock();
        loop {
            match map.get(id) {
                Some(c) if c.state.running => {}
                _ => return true,
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    d - now
                }
                None => Duration::from_secs(3600),
            };
            map = self
                .changed
                .wait_timeout(map, wait.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn signal(&self, id: &str, sig: i32) -> Result<()> {
        let host = self.compute_host()?;
        let sys = silo_compute::open(&host, id).map_err(|e| internal(&format!("kill {id}"), e))?;
        if sig == libc::SIGKILL {
            // Kill everything in the job; a paused job is thawed so the kill lands.
            sys.kill(sig, true)
                .or_else(|_| sys.kill(sig, false))
                .map_err(|e| internal(&format!("kill {id}"), e))
        } else {
            sys.kill(sig, false)
                .map_err(|e| internal(&format!("kill {id}"), e))
        }
    }

    pub fn stop(&self, id: &str, signal: Option<&str>, timeout: Option<i64>) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.stop_locked(&id, signal, timeout)
    }

    fn stop_locked(&self, id: &str, signal: Option<&str>, timeout: Option<i64>) -> Result<()> {
        let c = self.get(id)?;
        if c.state.restarting {
            self.modify(id, |c| {
                c.manual_stop = true;
                c.state.restarting = false;
                c.state.status = "exited".into();
            })?;
            return Ok(());
        }
        if !c.state.running {
            return Err(EngineError::NotModified(format!(
                "container {id} is already stopped"
            )));
        }
        self.modify(id, |c| c.manual_stop = true)?;
        let sig = match signal.filter(|s| !s.is_empty()).or(c
            .body
            .stop_signal
            .as_deref()
            .filter(|s| !s.is_empty()))
        {
            Some(s) => parse_signal(s)?,
            None => libc::SIGTERM,
        };
        let secs = timeout.or(c.body.stop_timeout).unwrap_or(10);
        if c.state.paused && sig != libc::SIGKILL {
            if let Ok(host) = self.compute_host() {
                if let Ok(sys) = silo_compute::open(&host, id) {
                    let _ = sys.resume();
                }
            }
        }
        let _ = self.signal(id, sig);
        self.emit(
            "container",
            "kill",
            id,
            HashMap::from([("signal".to_string(), sig.to_string())]),
        );
        let deadline = if secs < 0 {
            None
        } else {
            Some(Instant::now() + Duration::from_secs(secs as u64))
        };
        if !self.wait_stopped(id, deadline) {
            let _ = self.signal(id, libc::SIGKILL);
            self.emit(
                "container",
                "kill",
                id,
                HashMap::from([("signal".to_string(), "9".to_string())]),
            );
            if !self.wait_stopped(id, Some(Instant::now() + Duration::from_secs(30))) {
                return Err(EngineError::Internal(format!(
                    "container {id} did not exit 30 s after SIGKILL"
                )));
            }
        }
        self.emit("container", "stop", id, HashMap::new());
        Ok(())
    }

    pub fn restart(&self, id: &str, signal: Option<&str>, timeout: Option<i64>) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let by_hand = || {
            self.restarting_by_hand
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        by_hand().insert(id.clone());
        let stopped = self.stop_locked(&id, signal, timeout);
        by_hand().remove(&id);
        match stopped {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.modify(&id, |c| c.manual_stop = false)?;
        self.start_locked(&id)?;
        self.emit("container", "restart", &id, HashMap::new());
        Ok(())
    }

    pub fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => libc::SIGKILL,
        };
        self.signal(&id, sig)?;
        self.emit(
            "container",
            "kill",
            &id,
            HashMap::from([("signal".to_string(), sig.to_string())]),
        );
        if sig == libc::SIGKILL {
            // Like Docker, return once the container is gone.
            self.wait_stopped(&id, Some(Instant::now() + Duration::from_secs(10)));
        }
        Ok(())
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        if !c.state.running {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        if c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is already paused"
            )));
        }
        let host = self.compute_host()?;
        silo_compute::open(&host, &id)
            .and_then(|s| s.pause())
            .map_err(|e| internal(&format!("pause {id}"), e))?;
        self.modify(&id, |c| {
            c.state.paused = true;
            c.state.status = "paused".into();
            // Docker stops the probes of a paused container.
            crate::health::stopped(&mut c.state);
        })?;
        self.emit("container", "pause", &id, HashMap::new());
        Ok(())
    }

    pub fn unpause(&self, id: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        if !c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not paused"
            )));
        }
        let host = self.compute_host()?;
        silo_compute::open(&host, &id)
            .and_then(|s| s.resume())
            .map_err(|e| internal(&format!("unpause {id}"), e))?;
        self.modify(&id, |c| {
            c.state.paused = false;
            c.state.status = "running".into();
        })?;
        self.health_watch(&id);
        self.emit("container", "unpause", &id, HashMap::new());
        Ok(())
    }

    // ------------------------------------------------------------------ wait

    pub fn wait(&self, id: &str, condition: WaitCondition) -> Result<ContainerWaitResponse> {
        let id = self.resolve_id(id)?;
        let mut map = self.lock();
        let start_seq = map.get(&id).map(|c| c.exit_seq).unwrap_or(0);
        loop {
            match map.get(&id) {
                None => {
                    let code = self
                        .removed_exits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                        .copied()
                        .unwrap_or(0);
                    return Ok(ContainerWaitResponse {
                        status_code: code,
                        error: None,
                    });
                }
                Some(c) => {
                    let done = match condition {
                        WaitCondition::NotRunning => !c.state.running && !c.state.restarting,
                        WaitCondition::NextExit => c.exit_seq > start_seq,
                        WaitCondition::Removed => false,
                    };
                    if done {
                        let error = (!c.state.error.is_empty()).then(|| ContainerWaitExitError {
                            message: Some(c.state.error.clone()),
                        });
                        return Ok(ContainerWaitResponse {
                            status_code: c.state.exit_code,
                            error,
                        });
                    }
                }
            }
            map = self
                .changed
                .wait_timeout(map, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    // ---------------------------------------------------------------- remove

    pub fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get(&id)?;
        if c.state.status == "removing" {
            return Err(EngineError::Conflict(format!(
                "removal of container {id} is already in progress"
            )));
        }
        if c.state.running || c.state.restarting {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {} container {id}. Stop the container before attempting removal or force remove",
                    if c.state.paused { "paused" } else if c.state.restarting { "restarting" } else { "running" }
                )));
            }
            self.modify(&id, |c| {
                c.manual_stop = true;
                c.state.restarting = false;
            })?;
            if c.state.running {
                let _ = self.signal(&id, libc::SIGKILL);
                if !self.wait_stopped(&id, Some(Instant::now() + Duration::from_secs(10))) {
                    // The monitor did not report: clean up by hand.
                    self.monitor_lost(&id);
                    let _ = self.modify(&id, |c| {
                        c.state.running = false;
                        c.state.status = "exited".into();
                        c.state.exit_code = 137;
                    });
                }
            }
        }
        self.remove_stopped_locked(&id, volumes)
    }

    /// The end of a removal, with the op lock held and the container stopped.
    fn remove_stopped_locked(&self, id: &str, volumes: bool) -> Result<()> {
        let c = self.modify(id, |c| c.state.status = "removing".into())?;
        self.destroy(&c, volumes)?;
        self.emit_destroyed(&c);
        Ok(())
    }

    /// AutoRemove after the exit that finished at `finished`, unless the
    /// container has been started again (or removed) since: the exit
    /// watcher races with `docker start`/`restart`, which hold the op lock.
    fn auto_remove(&self, id: &str, finished: &str) -> Result<()> {
        let lock = self.op_lock(id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(c) = self.get(id) else { return Ok(()) };
        if c.state.running
            || c.state.restarting
            || c.state.status == "removing"
            || c.state.finished_at != finished
        {
            return Ok(());
        }
        self.remove_stopped_locked(id, true)
    }

    fn emit_destroyed(&self, c: &Container) {
        let attrs = HashMap::from([
            ("name".to_string(), c.name.clone()),
            ("image".to_string(), c.image.clone()),
        ]);
        self.events.publish("container", "destroy", &c.id, attrs);
    }

    /// Removes every trace of a stopped container: runtime state, snapshot,
    /// directory, row; with `volumes` its anonymous volumes.
    pub(crate) fn destroy(&self, c: &Container, volumes: bool) -> Result<()> {
        self.monitor_lost(&c.id);
        self.storage
            .remove_snapshot(&c.id)
            .map_err(|e| internal(&format!("removing the filesystem of {}", c.id), e))?;
        let dir = self.container_dir(&c.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(internal(&format!("removing {}", dir.display()), e));
            }
        }
        // The short symlink to the directory (only a restart cleaned it).
        let _ = std::fs::remove_file(self.state_dir(&c.id));
        self.db.delete(&c.id)?;
        self.removed_exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.id.clone(), c.state.exit_code);
        self.lock().remove(&c.id);
        self.op_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&c.id);
        self.changed.notify_all();
        if volumes {
            for v in &c.anonymous_volumes {
                if !self.volume_in_use(v) && self.storage.remove_volume(v, false, false).is_ok() {
                    self.emit("volume", "destroy", v, HashMap::new());
                }
            }
        }
        Ok(())
    }

    /// Whether any container mounts the named volume.
    pub(crate) fn volume_in_use(&self, name: &str) -> bool {
        self.lock().values().any(|c| {
            c.mounts
                .iter()
                .any(|m| m.typ.as_deref() == Some("volume") && m.name.as_deref() == Some(name))
        })
    }

    // ---------------------------------------------------------- rename/update

    pub fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        let n = new_name.strip_prefix('/').unwrap_or(new_name);
        if !model::valid_name(n) {
            return Err(EngineError::BadParameter(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = {
            let map = self.lock();
            if let Some(other) = map.values().find(|c| c.name == n) {
                if other.id == id {
                    return Err(EngineError::BadParameter(format!(
                        "Renaming a container with the same name as its current name (/{n})"
                    )));
                }
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            map.get(&id).map(|c| c.name.clone()).unwrap_or_default()
        };
        self.modify(&id, |c| c.name = n.to_string())?;
        self.emit(
            "container",
            "rename",
            &id,
            HashMap::from([("oldName".to_string(), format!("/{old}"))]),
        );
        Ok(())
    }

    pub fn update(&self, id: &str, body: ContainerUpdateBody) -> Result<ContainerUpdateResponse> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        let mut hc = c.host_config();
        macro_rules! take {
            ($($f:ident),*) => { $( if body.$f.is_some() { hc.$f = body.$f.clone(); } )* };
        }
        take!(
            cpu_shares,
            memory,
            blkio_weight,
            cpu_period,
            cpu_quota,
            cpuset_cpus,
            cpuset_mems,
            memory_reservation,
            memory_swap,
            nano_cpus,
            pids_limit,
            restart_policy
        );
        if hc.nano_cpus.unwrap_or(0) != 0 && body.cpu_quota.is_some() {
            hc.nano_cpus = None;
        }
        if body.nano_cpus.unwrap_or(0) != 0 {
            hc.cpu_quota = None;
            hc.cpu_period = None;
        }
        let privileged = hc.privileged == Some(true);
        let res = spec::resources(&hc, privileged)?;
        if c.state.running {
            let host = self.compute_host()?;
            let mut sys =
                silo_compute::open(&host, &id).map_err(|e| internal(&format!("update {id}"), e))?;
            let mut live = res.clone();
            live.devices.clear();
            sys.update(&live).map_err(|e| {
                EngineError::BadParameter(format!("Cannot update container {id}: {e}"))
            })?;
        }
        self.modify(&id, |c| {
            let mut b = c.body.clone();
            b.host_config = Some(hc.clone());
            c.body = b;
            if let Some(l) = c.spec.linux.as_mut() {
                l.resources = Some(res.clone());
            }
        })?;
        self.emit("container", "update", &id, HashMap::new());
        Ok(ContainerUpdateResponse {
            warnings: Some(vec![]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse_signal("NOPE").unwrap_err().status(), 400);
        assert_eq!(parse_signal("0").unwrap_err().status(), 400);
    }

    #[test]
    fn time_helpers() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-29T12:00:00.123456789Z"),
            Some(1795953600)
        );
        let now = now_secs();
        assert!((parse_rfc3339(&now_rfc3339()).unwrap() - now).abs() <= 1);
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
    }

    #[test]
    fn monitor_liveness_uses_cmdline() {
        let proc_root = tempfile::tempdir().unwrap();
        let p = proc_root.path();
        std::fs::create_dir(p.join("42")).unwrap();
        std::fs::write(p.join("42/stat"), "42 (silo-monitor) S 1 2 3").unwrap();
        std::fs::write(p.join("42/cmdline"), b"/usr/bin/silo-monitor\0--id\0x\0").unwrap();
        assert!(monitor_alive(p, 42, None));
        assert!(monitor_alive(p, 42, Some("x")));
        assert!(
            !monitor_alive(p, 42, Some("y")),
            "another container's monitor"
        );
        std::fs::write(p.join("42/cmdline"), b"/bin/bash\0silo-monitor\0").unwrap();
        assert!(
            !monitor_alive(p, 42, None),
            "a recycled pid is not the monitor"
        );
        assert!(!monitor_alive(p, 43, None));
        std::fs::write(p.join("42/cmdline"), b"silo-monitor\0").unwrap();
        std::fs::write(p.join("42/stat"), "42 (silo-monitor) Z 1 2 3").unwrap();
        assert!(!monitor_alive(p, 42, None), "a zombie is dead");
    }
}

//! Compute systems and their operations: create, start, state, kill,
//! pause, resume, exec, update, stats and delete.

use crate::bundle::{self, BundleError};
use crate::host::Host;
use crate::store::{self, Record, StoreError};
use silo_isolation::{ExecPlan, InitPlan, ParentSide};
use silo_job::Job;
use silo_oci::{Process, Resources, Spec, State, Status};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Options of the create operation.
#[derive(Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// A connected socket that receives the pty master (process.terminal).
    pub console: Option<OwnedFd>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// `create` waits for `start`; `run` starts at once.
    pub wait_for_start: bool,
}

/// Options of the exec operation.
#[derive(Default)]
pub struct ExecOptions {
    pub pid_file: Option<PathBuf>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: i32,
}

/// Errors of `create` (and `run`).
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("process.terminal is true but no console socket was given (use --console-socket, or run in the foreground)")]
    NeedConsole,
    #[error("creating state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating exec fifo {path}: {source}")]
    Fifo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    #[error("starting the container process: {0}")]
    Spawn(#[from] silo_isolation::SpawnError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CreateError {
    /// Set when the container's command itself could not be run.
    pub fn command_failure(&self) -> Option<silo_isolation::CommandFailure> {
        match self {
            CreateError::Spawn(e) => e.command_failure(),
            _ => None,
        }
    }
}

/// Errors of operations on an existing compute system.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {id:?} is stopped")]
    AlreadyStopped { id: String },
    #[error("container {id:?} is {status}; {op} needs it to be {need}")]
    InvalidState {
        id: String,
        op: &'static str,
        status: Status,
        need: &'static str,
    },
    #[error("{op} {id:?}: the container's init exited before it could be started")]
    InitGone { id: String, op: &'static str },
    #[error("{op} {id:?}: {message}")]
    Failed {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("exec in {id:?}: {source}")]
    Spawn {
        id: String,
        source: silo_isolation::SpawnError,
    },
    #[error("writing pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OpError {
    /// Set when an exec's command itself could not be run.
    pub fn command_failure(&self) -> Option<silo_isolation::CommandFailure> {
        match self {
            OpError::Spawn { source, .. } => source.command_failure(),
            _ => None,
        }
    }
}

/// A compute system: the record plus handles to its kernel objects.
pub struct ComputeSystem {
    host: Host,
    pub record: Record,
    dir: PathBuf,
}

fn read_start_time(proc_root: &Path, pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).ok()?;
    // The command name may contain spaces and ')' — split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// (device, inode) of the file at `p`, following symlinks.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn write_pid_file(path: &Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path)
}

fn owner() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        "root".into()
    } else {
        uid.to_string()
    }
}

struct Parent<'a> {
    job: &'a Job,
    host: &'a Host,
    spec: &'a Spec,
    id: &'a str,
    bundle: &'a Path,
    rootfs: &'a Path,
    state: Vec<u8>,
    entered: Option<silo_job::Entered>,
}

impl Parent<'_> {
    fn state_json(&self, pid: i32, status: Status) -> Vec<u8> {
        let st = State {
            oci_version: silo_oci::OCI_VERSION.into(),
            id: self.id.into(),
            status,
            pid,
            bundle: self.bundle.display().to_string(),
            rootfs: Some(self.rootfs.display().to_string()),
            created: None,
            owner: None,
            annotations: self.spec.annotations.clone(),
        };
        serde_json::to_vec(&st).unwrap_or_default()
    }
}

impl ParentSide for Parent<'_> {
    fn before_clone(&mut self) -> Result<Option<OwnedFd>, String> {
        // With a pids limit below 2 our own thread would use up the job.
        let tiny_pids = self
            .spec
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .and_then(|r| r.pids.as_ref())
            .is_some_and(|p| p.limit > 0 && p.limit < 2);
        if !tiny_pids {
            self.entered = self
                .job
                .enter_current(&self.host.cgroups, &self.host.proc_root.join("self"))
                .map_err(|e| format!("joining cgroup {}: {e}", self.job.path()))?;
        }
        Ok(open_cgroup2(self.job))
    }

    fn abandon(&mut self) {
        if let Some(e) = self.entered.take() {
            let _ = e.leave();
        }
    }

    fn cloned(&mut self, pid: i32, in_cgroup2: bool) -> Result<Vec<u8>, String> {
        let err = |e: &dyn std::fmt::Display| format!("joining cgroup {}: {e}", self.job.path());
        let limits = |e: &dyn std::fmt::Display| format!("cgroup {}: {e}", self.job.path());
        match self.entered.take() {
            Some(entered) => {
                entered.leave().map_err(|e| err(&e))?;
                if !in_cgroup2 {
                    if let Some(dir) = self.job.unified_dir() {
                        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                            .map_err(|e| err(&e))?;
                    }
                }
            }
            None => self.job.add_pid(pid).map_err(|e| err(&e))?,
        }
        // The other limits go on while the child prepares its rootfs.
        let linux = self.spec.linux.as_ref();
        if let Some(res) = linux.and_then(|l| l.resources.as_ref()) {
            let warnings = self.job.apply(res).map_err(|e| limits(&e))?;
            for w in warnings {
                crate::events::warn(&w);
            }
        }

        if let Some(adj) = self.spec.process.as_ref().and_then(|p| p.oom_score_adj) {
            silo_isolation::oom::set_score_adj(&self.host.proc_root, pid, adj)
                .map_err(|e| e.to_string())?;
        }
        // The state the create-time hooks (prestart, createRuntime,
        // createContainer) get. The spec's lifecycle runs them after the
        // runtime environment exists (step 2), which its state section
        // calls "created"; runc passes "creating", the spec's own tests
        // expect "created". We follow the spec (docs/ARCHITECTURE.md).
        self.state = self.state_json(pid, Status::Created);
        Ok(self.state.clone())
    }

    fn runtime_hooks(&mut self, _pid: i32) -> Result<(), String> {
        if let Some(h) = &self.spec.hooks {
            silo_isolation::hooks::run_all("prestart", &h.prestart, &self.state)
                .map_err(|e| e.to_string())?;
            silo_isolation::hooks::run_all("createRuntime", &h.create_runtime, &self.state)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn has_runtime_hooks(&self) -> bool {
        self.spec
            .hooks
            .as_ref()
            .is_some_and(|h| !h.prestart.is_empty() || !h.create_runtime.is_empty())
    }
}

/// Undo list for a create that fails half-way.
struct Rollback<'a> {
    dir: Option<&'a Path>,
    job: Option<Job>,
    /// A container in the runtime's own mount namespace: its mounts under
    /// the rootfs are ours to remove.
    host_mounts: Option<&'a Path>,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(job) = &self.job {
            let _ = job.destroy();
        }
        if let Some(rootfs) = self.host_mounts {
            let _ = unmount_tree(rootfs);
        }
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether a spec lists a mount namespace (new or joined).
fn has_mount_ns(spec: &silo_oci::Spec) -> bool {
    spec.linux.as_ref().is_some_and(|l| {
        l.namespaces
            .iter()
            .any(|n| n.typ == silo_oci::NamespaceType::Mount)
    })
}

/// Unmounts everything at or under `rootfs` (deepest first, lazily).
fn unmount_tree(rootfs: &Path) -> Result<(), String> {
    let mps = silo_isolation::mounts::mounts_below(rootfs)
        .map_err(|e| format!("reading the mount table: {e}"))?;
    let mut failed = Vec::new();
    for mp in mps {
        if let Err(e) = rustix::mount::unmount(&mp, rustix::mount::UnmountFlags::DETACH) {
            if e != rustix::io::Errno::INVAL && e != rustix::io::Errno::NOENT {
                failed.push(format!("unmounting {}: {e}", mp.display()));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Creates a compute system from a bundle. On any failure nothing is left
/// behind: no state directory, no cgroup, no process.
pub fn create(host: &Host, id: &str, opts: CreateOptions) -> Result<ComputeSystem, CreateError> {
    bundle::validate_id(id)?;
    let prepared = bundle::prepare(host, &opts.bundle)?;
    for w in &prepared.warnings {
        crate::events::warn(w);
    }
    let spec = &prepared.spec;
    let process = spec.process.as_ref().expect("checked by prepare");
    if process.terminal && opts.console.is_none() {
        return Err(CreateError::NeedConsole);
    }
    host.ensure_root().map_err(|e| CreateError::StateDir {
        path: host.root.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let dir = host.container_dir(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CreateError::AlreadyExists(id.into()))
        }
        Err(source) => return Err(CreateError::StateDir { path: dir, source }),
    }
    let mut rollback = Rollback {
        dir: Some(&dir),
        job: None,
        host_mounts: (!has_mount_ns(spec)).then_some(prepared.rootfs.as_path()),
        armed: true,
    };
    let fifo = if opts.wait_for_start {
        Some(make_fifo(&dir, EXEC_FIFO)?)
    } else {
        None
    };
    let has_start_hooks = spec
        .hooks
        .as_ref()
        .is_some_and(|h| !h.start_container.is_empty());
    let start_ack = if opts.wait_for_start && has_start_hooks {
        Some(make_fifo(&dir, START_ACK_FIFO)?)
    } else {
        None
    };
    let linux = spec.linux.clone().unwrap_or_default();
    let cgroup_path = host.cgroup_path(id, linux.cgroups_path.as_deref());
    let cg_err = |message: String| CreateError::Cgroup {
        path: cgroup_path.clone(),
        message,
    };
    let job = Job::create(&host.cgroups, &cgroup_path).map_err(|e| cg_err(e.to_string()))?;
    rollback.job = Some(job.clone());
    // Device rules go on before the clone: they start with deny-all, and
    // the child creates /dev nodes while the other limits are applied.
    job.apply_devices(&device_rules(spec.linux.as_ref()))
        .map_err(|e| cg_err(e.to_string()))?;
    let cgroup_dirs = hierarchy_dirs(&job);
    let mut parent = Parent {
        job: &job,
        host,
        spec,
        id,
        bundle: &prepared.bundle,
        rootfs: &prepared.rootfs,
        state: Vec::new(),
        entered: None,
    };
    let plan = InitPlan {
        spec,
        process,
        rootfs: &prepared.rootfs,
        no_pivot: opts.no_pivot,
        seccomp: prepared.seccomp.as_ref(),
        console: opts.console,
        preserve_fds: opts.preserve_fds,
        exec_fifo: fifo,
        start_ack,
        cgroup_paths: &cgroup_dirs,
        rlimits: &prepared.rlimits,
        proc_root: &host.proc_root,
    };
    let pid = silo_isolation::spawn_init(plan, &mut parent)?;
    let record = Record {
        id: id.into(),
        bundle: prepared.bundle.clone(),
        rootfs: prepared.rootfs.clone(),
        pid,
        pid_start: read_start_time(&host.proc_root, pid).unwrap_or(0),
        created: store::rfc3339_now(),
        owner: owner(),
        status: if opts.wait_for_start {
            Status::Created
        } else {
            Status::Running
        },
        cgroup_path: cgroup_path.clone(),
        spec: prepared.spec.clone(),
    };
    let kill_child = |e| {
        // SAFETY: kill of the child we just created.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        e
    };
    record
        .save(&dir)
        .map_err(|e| kill_child(CreateError::Store(e)))?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid).map_err(|source| {
            kill_child(CreateError::PidFile {
                path: path.clone(),
                source,
            })
        })?;
    }
    rollback.armed = false;
    drop(rollback);
    let system = ComputeSystem {
        host: host.clone(),
        record,
        dir,
    };
    if !opts.wait_for_start {
        // The init is a clone of this process (no re-exec): until it
        // executes the user's program its executable is ours.
        system.poststart(file_id(Path::new("/proc/self/exe")));
    }
    Ok(system)
}

const EXEC_FIFO: &str = "exec.fifo";
const START_ACK_FIFO: &str = "start-ack.fifo";

fn make_fifo(dir: &Path, name: &str) -> Result<OwnedFd, CreateError> {
    let path = dir.join(name);
    let err = |source| CreateError::Fifo {
        path: path.clone(),
        source,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| err(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    // SAFETY: mkfifo and open on a valid NUL-terminated path.
    unsafe {
        if libc::mkfifo(c.as_ptr(), 0o600) != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let fd = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Loads an existing compute system.
pub fn open(host: &Host, id: &str) -> Result<ComputeSystem, OpError> {
    if bundle::validate_id(id).is_err() {
        return Err(OpError::NotFound(id.into()));
    }
    let dir = host.container_dir(id);
    let record = match Record::load(&dir) {
        Ok(r) => r,
        Err(StoreError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(OpError::NotFound(id.into()))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ComputeSystem {
        host: host.clone(),
        record,
        dir,
    })
}

/// Every compute system under the host's root, sorted by id.
pub fn list(host: &Host) -> Vec<ComputeSystem> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&host.root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(sys) = open(host, &name) {
                out.push(sys);
            }
        }
    }
    out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    out
}

impl ComputeSystem {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn job(&self) -> Result<Job, OpError> {
        Job::open(&self.host.cgroups, &self.record.cgroup_path).map_err(|e| OpError::Failed {
            id: self.record.id.clone(),
            op: "cgroup",
            message: e.to_string(),
        })
    }

    fn init_alive(&self) -> bool {
        self.record.pid > 0
            && read_start_time(&self.host.proc_root, self.record.pid)
                .is_some_and(|t| self.record.pid_start == 0 || t == self.record.pid_start)
            && !is_zombie(&self.host.proc_root, self.record.pid)
    }

    /// The live status: recorded status, init liveness and the freezer.
    pub fn status(&self) -> Status {
        if self.record.status == Status::Stopped || !self.init_alive() {
            return Status::Stopped;
        }
        if self.record.status == Status::Created {
            return Status::Created;
        }
        match self.job().and_then(|j| {
            j.is_frozen().map_err(|e| OpError::Failed {
                id: self.record.id.clone(),
                op: "state",
                message: e.to_string(),
            })
        }) {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// The OCI state document.
    pub fn state(&self) -> State {
        let status = self.status();
        State {
            oci_version: silo_oci::OCI_VERSION.into(),
            id: self.record.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.record.pid
            },
            bundle: self.record.bundle.display().to_string(),
            rootfs: Some(self.record.rootfs.display().to_string()),
            created: Some(self.record.created.clone()),
            owner: Some(self.record.owner.clone()),
            annotations: self.record.spec.annotations.clone(),
        }
    }

    fn invalid(&self, op: &'static str, status: Status, need: &'static str) -> OpError {
        if status == Status::Stopped {
            OpError::AlreadyStopped {
                id: self.record.id.clone(),
            }
        } else {
            OpError::InvalidState {
                id: self.record.id.clone(),
                op,
                status,
                need,
            }
        }
    }

    fn failed(&self, op: &'static str, message: impl std::fmt::Display) -> OpError {
        OpError::Failed {
            id: self.record.id.clone(),
            op,
            message: message.to_string(),
        }
    }

    /// created → running: releases the init blocked on the exec fifo.
    pub fn start(&mut self) -> Result<(), OpError> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.invalid("start", status, "created"));
        }
        let fifo = self.dir.join(EXEC_FIFO);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    OpError::InitGone {
                        id: self.record.id.clone(),
                        op: "start",
                    }
                } else {
                    self.failed("start", format!("opening {}: {e}", fifo.display()))
                }
            })?;
        // The init's executable while it still waits (for poststart).
        let before = file_id(&self.init_exe());
        // The acknowledgement's read end before the go: the init's end
        // closes when it executes the program, and a FIFO nobody holds
        // open loses what was written to it.
        let ack = self.open_start_ack()?;
        f.write_all(&[0]).map_err(|e| self.failed("start", e))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        if let Some(ack) = ack {
            self.wait_start_hooks(ack)?;
        }
        self.record.status = Status::Running;
        self.record.save(&self.dir)?;
        self.poststart(before);
        Ok(())
    }

    /// The read end of the startContainer hooks' acknowledgement FIFO
    /// (None: the container has no such hooks).
    fn open_start_ack(&self) -> Result<Option<std::fs::File>, OpError> {
        let path = self.dir.join(START_ACK_FIFO);
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                Ok(Some(f))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("start", format!("{}: {e}", path.display()))),
        }
    }

    /// With startContainer hooks, waits until the init says they ran (or
    /// it died: a failing hook stops the container).
    fn wait_start_hooks(&self, f: std::fs::File) -> Result<(), OpError> {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut byte = [0u8; 1];
        // Hooks have their own timeouts; this only bounds a wedged init.
        for _ in 0..600 {
            // SAFETY: poll on one valid pollfd; read into a valid buffer.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n > 0 && pfd.revents & libc::POLLIN != 0 {
                // SAFETY: reading one byte into a valid buffer.
                if unsafe { libc::read(f.as_raw_fd(), byte.as_mut_ptr().cast(), 1) } == 1 {
                    return Ok(());
                }
            }
            if !self.init_alive() {
                return Err(self.failed(
                    "start",
                    "a startContainer hook failed; the container exited",
                ));
            }
        }
        Err(self.failed("start", "startContainer hooks did not finish within 60 s"))
    }

    fn hook_state(&self, status: Status) -> Vec<u8> {
        let mut st = self.state();
        st.status = status;
        serde_json::to_vec(&st).unwrap_or_default()
    }

    /// Runs the poststart hooks once the container's process has been
    /// executed (the spec's order), every one even if some fail (a failing
    /// poststart hook is only logged).
    fn poststart(&self, before: Option<(u64, u64)>) {
        if let Some(h) = &self.record.spec.hooks {
            if !h.poststart.is_empty() {
                self.wait_exec(before);
                let state = self.hook_state(Status::Running);
                for e in silo_isolation::hooks::run_each("poststart", &h.poststart, &state) {
                    crate::events::warn(&e.to_string());
                }
            }
        }
    }

    fn init_exe(&self) -> std::path::PathBuf {
        self.host.proc_root.join(format!("{}/exe", self.record.pid))
    }

    /// Waits (at most 10 s) until the init has replaced itself with the
    /// user's program: its executable is no longer `before` (the one it
    /// had while blocked in create), or it is gone.
    fn wait_exec(&self, before: Option<(u64, u64)>) {
        let Some(before) = before else {
            return;
        };
        let exe = self.init_exe();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match file_id(&exe) {
                Some(now) if now == before => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                _ => return,
            }
        }
    }

    /// Sends a signal to the init, or with `all` to every process of the job.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), OpError> {
        let status = self.status();
        if status == Status::Stopped && !all {
            return Err(self.invalid("kill", status, "created, running or paused"));
        }
        if all {
            let job = self.job()?;
            job.signal_all(signal).map_err(|e| self.failed("kill", e))?;
            if status == Status::Paused && signal == libc::SIGKILL {
                let _ = job.thaw();
            }
            return Ok(());
        }
        // SAFETY: kill(2) of the recorded init pid, verified alive above.
        if unsafe { libc::kill(self.record.pid, signal) } != 0 {
            return Err(self.failed("kill", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// running → paused through the freezer.
    pub fn pause(&self) -> Result<(), OpError> {
        let status = self.status();
        if status != Status::Running {
            return Err(self.invalid("pause", status, "running"));
        }
        self.job()?.freeze().map_err(|e| self.failed("pause", e))
    }

    /// paused → running.
    pub fn resume(&self) -> Result<(), OpError> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.invalid("resume", status, "paused"));
        }
        self.job()?.thaw().map_err(|e| self.failed("resume", e))
    }

    /// Removes the compute system. Kill-on-close: every process of the job
    /// is killed and the job removed. A running container needs `force`.
    pub fn delete(self, force: bool) -> Result<(), OpError> {
        let status = self.status();
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(self.invalid("delete", status, "stopped (or use --force)"));
        }
        let mut errors = Vec::new();
        match Job::open(&self.host.cgroups, &self.record.cgroup_path) {
            Ok(job) => {
                if let Err(e) = job.destroy() {
                    errors.push(e.to_string());
                }
            }
            Err(e) => {
                // Already gone is fine; anything else is reported.
                let msg = e.to_string();
                if !msg.contains("does not exist") && !msg.contains("not found") {
                    errors.push(msg);
                }
            }
        }
        if status != Status::Stopped && self.init_alive() {
            // SAFETY: kill of the recorded init when the job could not do it.
            unsafe { libc::kill(self.record.pid, libc::SIGKILL) };
        }
        // Without a mount namespace the container's mounts (proc, sys,
        // dev, the rootfs bind) are in ours: they go with it.
        if !has_mount_ns(&self.record.spec) {
            if let Err(e) = unmount_tree(&self.record.rootfs) {
                errors.push(e);
            }
        }
        if let Some(h) = &self.record.spec.hooks {
            if !h.poststop.is_empty() {
                let state = self.hook_state(Status::Stopped);
                // Every poststop hook runs; a failing one is only logged.
                for e in silo_isolation::hooks::run_each("poststop", &h.poststop, &state) {
                    crate::events::warn(&e.to_string());
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("removing {}: {e}", self.dir.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(self.failed("delete", errors.join("; ")))
        }
    }

    /// Starts another process in the container (HCS: CreateProcess).
    pub fn exec(&self, process: &Process, opts: ExecOptions) -> Result<i32, OpError> {
        let status = self.status();
        if !matches!(status, Status::Running | Status::Created) {
            return Err(self.invalid("exec", status, "running"));
        }
        let mut warnings = Vec::new();
        let rlimits = bundle::check_process(process, Path::new("process.json"), &mut warnings)?;
        for w in &warnings {
            crate::events::warn(w);
        }
        if process.terminal && opts.console.is_none() {
            return Err(self.failed(
                "exec",
                "process.terminal is true but no console socket was given",
            ));
        }
        let seccomp = bundle::seccomp_program(&self.host, &self.record.spec)?;
        // The new process is born inside the job: we step into its v1
        // hierarchies for the clone (or, failing that, join for good) and
        // place it in the cgroup2 one with CLONE_INTO_CGROUP.
        let job = self.job()?;
        let join_err =
            |e: &dyn std::fmt::Display| self.failed("exec", format!("joining cgroup: {e}"));
        let entered = job
            .enter_current(&self.host.cgroups, &self.host.proc_root.join("self"))
            .map_err(|e| join_err(&e))?;
        if entered.is_none() {
            for f in job.procs_files() {
                std::fs::write(&f, "0").map_err(|e| join_err(&e))?;
            }
        }
        let pid = silo_isolation::exec_into(ExecPlan {
            target_pid: self.record.pid,
            process,
            seccomp: seccomp.as_ref(),
            console: opts.console,
            preserve_fds: opts.preserve_fds,
            rlimits: &rlimits,
            proc_root: &self.host.proc_root,
            spec: &self.record.spec,
            cgroup2: open_cgroup2(&job),
        });
        if let Some(e) = entered {
            let _ = e.leave();
        }
        let pid = pid.map_err(|source| OpError::Spawn {
            id: self.record.id.clone(),
            source,
        })?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, pid).map_err(|source| OpError::PidFile {
                path: path.clone(),
                source,
            })?;
        }
        Ok(pid)
    }

    /// Job-object accounting.
    pub fn stats(&self) -> Result<silo_job::Stats, OpError> {
        self.job()?.stats().map_err(|e| self.failed("stats", e))
    }

    /// The pids of every process in the job.
    pub fn processes(&self) -> Result<Vec<i32>, OpError> {
        self.job()?.pids().map_err(|e| self.failed("ps", e))
    }

    /// Changes resource limits of a live compute system and records them.
    pub fn update(&mut self, res: &Resources) -> Result<Vec<String>, OpError> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.invalid("update", status, "created, running or paused"));
        }
        let warnings = self
            .job()?
            .apply(res)
            .map_err(|e| self.failed("update", e))?;
        let linux = self.record.spec.linux.get_or_insert_with(Default::default);
        let cur = linux.resources.get_or_insert_with(Default::default);
        merge_resources(cur, res);
        self.record.save(&self.dir)?;
        Ok(warnings)
    }

    /// The host pid of the init.
    pub fn pid(&self) -> i32 {
        self.record.pid
    }

    /// Records that the init has exited (used by foreground `run`).
    pub fn mark_stopped(&mut self) -> Result<(), OpError> {
        self.record.status = Status::Stopped;
        self.record.save(&self.dir)?;
        Ok(())
    }

    pub fn host(&self) -> &Host {
        &self.host
    }
}

fn merge_resources(cur: &mut Resources, new: &Resources) {
    if let Some(m) = &new.memory {
        let c = cur.memory.get_or_insert_with(Default::default);
        c.limit = m.limit.or(c.limit);
        c.reservation = m.reservation.or(c.reservation);
        c.swap = m.swap.or(c.swap);
        c.swappiness = m.swappiness.or(c.swappiness);
        c.disable_oom_killer = m.disable_oom_killer.or(c.disable_oom_killer);
    }
    if let Some(x) = &new.cpu {
        let c = cur.cpu.get_or_insert_with(Default::default);
        c.shares = x.shares.or(c.shares);
        c.quota = x.quota.or(c.quota);
        c.period = x.period.or(c.period);
        c.cpus = x.cpus.clone().or(c.cpus.take());
        c.mems = x.mems.clone().or(c.mems.take());
        c.idle = x.idle.or(c.idle);
    }
    if new.pids.is_some() {
        cur.pids = new.pids.clone();
    }
    if new.block_io.is_some() {
        cur.block_io = new.block_io.clone();
    }
    for (k, v) in &new.unified {
        cur.unified.insert(k.clone(), v.clone());
    }
}

/// The job's cgroup2 directory, opened for CLONE_INTO_CGROUP.
fn open_cgroup2(job: &Job) -> Option<OwnedFd> {
    let dir = job.unified_dir()?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .ok()
        .map(OwnedFd::from)
}

/// The device cgroup rules: the spec's list, then (like runc and Docker)
/// the devices every container gets, then each `linux.devices` entry.
fn device_rules(linux: Option<&silo_oci::Linux>) -> Vec<silo_oci::DeviceCgroup> {
    let rule =
        |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| silo_oci::DeviceCgroup {
            allow: true,
            typ: Some(typ.into()),
            major,
            minor,
            access: Some(access.into()),
        };
    let mut rules = linux
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.devices.clone())
        .unwrap_or_default();
    rules.extend([
        rule("c", None, None, "m"),
        rule("b", None, None, "m"),
        rule("c", Some(1), Some(3), "rwm"),
        rule("c", Some(1), Some(5), "rwm"),
        rule("c", Some(1), Some(7), "rwm"),
        rule("c", Some(1), Some(8), "rwm"),
        rule("c", Some(1), Some(9), "rwm"),
        rule("c", Some(5), Some(0), "rwm"),
        rule("c", Some(5), Some(1), "rwm"),
        rule("c", Some(5), Some(2), "rwm"),
        rule("c", Some(136), None, "rwm"),
    ]);
    for d in linux.map(|l| l.devices.as_slice()).unwrap_or(&[]) {
        // A FIFO needs no device access: the device cgroup knows only
        // character and block devices (runc skips it too).
        let typ = match d.typ.as_str() {
            "u" => "c",
            "p" => continue,
            t => t,
        };
        rules.push(rule(typ, Some(d.major), Some(d.minor), "rwm"));
    }
    rules
}

/// (controller, this group's host dir) pairs for `cgroup` mounts; the
/// cgroup2 hierarchy is named "".
fn hierarchy_dirs(job: &Job) -> Vec<(String, PathBuf)> {
    const CONTROLLERS: [&str; 14] = [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    ];
    let mut out: Vec<(String, PathBuf)> = CONTROLLERS
        .iter()
        .chain(std::iter::once(&"name=systemd"))
        .filter_map(|c| {
            job.controller_dir(c)
                .map(|d| (c.to_string(), d.to_path_buf()))
        })
        .collect();
    if let Some(u) = job.unified_dir() {
        out.push((String::new(), u.to_path_buf()));
    }
    out
}

fn is_zombie(proc_root: &Path, pid: i32) -> bool {
    std::fs::read_to_string(proc_root.join(format!("{pid}/stat")))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3).map(|c| c == "Z" || c == "X"))
        })
        .unwrap_or(true)
}

use std::os::unix::fs::OpenOptionsExt;

/// Connects to a console socket path (runc's `--console-socket`).
pub fn connect_console(path: &Path) -> std::io::Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    Ok(OwnedFd::from(s))
}

/// Raw fd helper for callers that relay a pty.
pub fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

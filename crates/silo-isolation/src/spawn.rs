//! The parent's side of starting a container's init or exec'ing into one:
//! one `clone` with the namespace flags (no re-exec), then a short
//! conversation over a socketpair while the child sets itself up.

use crate::init::{self, ChildPlan, ExecTarget};
use crate::rlimits::Limit;
use crate::sync::{self, Channel};
use silo_oci::{NamespaceType, Process, Spec};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Everything the init process needs, prepared (parsed, validated,
/// compiled) by the caller before the clone.
pub struct InitPlan<'a> {
    pub spec: &'a Spec,
    pub process: &'a Process,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    pub no_pivot: bool,
    pub seccomp: Option<&'a silo_seccomp::Program>,
    /// A connected socket over which the pty master is sent (process.terminal).
    pub console: Option<OwnedFd>,
    pub preserve_fds: i32,
    /// `create`: the init blocks on this fifo (opened read-write) until `start`.
    pub exec_fifo: Option<OwnedFd>,
    /// `create` with startContainer hooks: the init writes a byte here once
    /// they have run, so `start` can wait for them.
    pub start_ack: Option<OwnedFd>,
    /// (controller, host dir) of the container's group, for `cgroup` mounts.
    pub cgroup_paths: &'a [(String, PathBuf)],
    pub rlimits: &'a [Limit],
    /// Host `/proc`, injected for tests.
    pub proc_root: &'a Path,
}

/// Steps the caller performs around the clone while the child waits.
pub trait ParentSide {
    /// Right before the clone: join what can be joined cheaply (the caller
    /// may move itself into the job's v1 hierarchies) and return the job's
    /// cgroup2 directory, if any, for CLONE_INTO_CGROUP.
    fn before_clone(&mut self) -> Result<Option<OwnedFd>, String>;
    /// The child exists (host `pid`) and is preparing its rootfs: finish
    /// joining it to its cgroup (`in_cgroup2` says whether CLONE_INTO_CGROUP
    /// placed it), apply the job's limits, set its OOM score. Nothing of the
    /// workload runs before this returns. Return the state document hooks
    /// should see.
    fn cloned(&mut self, pid: i32, in_cgroup2: bool) -> Result<Vec<u8>, String>;
    /// The clone failed: undo what `before_clone` did.
    fn abandon(&mut self);
    /// The namespaces and mounts exist: run prestart and createRuntime hooks.
    fn runtime_hooks(&mut self, pid: i32) -> Result<(), String>;
    /// Whether `runtime_hooks` has anything to do (saves a round trip).
    fn has_runtime_hooks(&self) -> bool;
}

/// Why a container process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create the setup channel: {0}")]
    Channel(io::Error),
    #[error("clone of the container process failed: {0}")]
    Clone(io::Error),
    #[error("joining {kind} namespace {path}: {source}")]
    JoinNamespace {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("creating a time namespace: {0}")]
    TimeNamespace(io::Error),
    #[error("{0}")]
    Parent(String),
    #[error("{0}")]
    Child(String),
    /// The container's command could not be run.
    #[error("{message}")]
    Command {
        failure: CommandFailure,
        message: String,
    },
}

/// Why a container's command could not be run: its own fault, not the
/// runtime's (exit codes 127 and 126, as shells and Docker report them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandFailure {
    NotFound,
    NotExecutable,
}

impl CommandFailure {
    /// The exit code a shell gives this failure.
    pub fn exit_code(self) -> i32 {
        match self {
            CommandFailure::NotFound => 127,
            CommandFailure::NotExecutable => 126,
        }
    }
}

impl SpawnError {
    /// Set when the command itself could not be run.
    pub fn command_failure(&self) -> Option<CommandFailure> {
        match self {
            SpawnError::Command { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    fn from_child(f: sync::Failure) -> SpawnError {
        match f.command {
            Some(failure) => SpawnError::Command {
                failure,
                message: f.message,
            },
            None => SpawnError::Child(f.message),
        }
    }
}

fn ns_path(spec: &Spec, t: NamespaceType) -> Option<(bool, Option<&str>)> {
    let linux = spec.linux.as_ref()?;
    linux
        .namespaces
        .iter()
        .find(|n| n.typ == t)
        .map(|n| (true, n.path.as_deref()))
}

fn setns_path(t: NamespaceType, path: &Path) -> Result<(), SpawnError> {
    let err = |source| SpawnError::JoinNamespace {
        kind: t.name(),
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(err)?;
    // SAFETY: setns on an fd we own, with the namespace's clone flag.
    let rc = unsafe { libc::setns(f.as_raw_fd(), crate::ns::clone_flag(t)) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// `struct clone_args` of clone3(2), as far as we use it.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Clone with fork semantics (no new stack). With `cgroup`, the child is
/// born in that cgroup2 directory (CLONE_INTO_CGROUP). Returns the pid and
/// whether the cgroup placement happened.
fn clone_process(flags: i32, cgroup: Option<RawFd>) -> io::Result<(i32, bool)> {
    let mut args = CloneArgs {
        flags: flags as u32 as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 without CLONE_VM and with a zero stack behaves like
    // fork: the child gets a copy of our address space. The caller is
    // single-threaded, so the child's copy of every lock is consistent.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid >= 0 {
        return Ok((pid as i32, cgroup.is_some()));
    }
    let err = io::Error::last_os_error();
    if cgroup.is_some() && err.raw_os_error() != Some(libc::EAGAIN) {
        // An older kernel or an unusable cgroup: place it afterwards.
        return clone_process(flags, None).map(|(pid, _)| (pid, false));
    }
    if cgroup.is_none() && err.raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: clone with a NULL stack behaves like fork (see above).
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid >= 0 {
            return Ok((pid as i32, false));
        }
        return Err(io::Error::last_os_error());
    }
    Err(err)
}

fn kill_and_reap(pid: i32) {
    // SAFETY: plain syscalls on a child pid we created and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Writes the time namespace offsets for our future children.
fn setup_time_ns(spec: &Spec, proc_root: &Path) -> Result<(), SpawnError> {
    // SAFETY: unshare only changes this process's namespace for children.
    if unsafe { libc::unshare(0x80) } != 0 {
        return Err(SpawnError::TimeNamespace(io::Error::last_os_error()));
    }
    if let Some(offsets) = spec.linux.as_ref().and_then(|l| l.time_offsets.as_ref()) {
        let mut text = String::new();
        for (clock, off) in offsets {
            text.push_str(&format!("{clock} {} {}\n", off.secs, off.nanosecs));
        }
        std::fs::write(proc_root.join("self/timens_offsets"), text)
            .map_err(SpawnError::TimeNamespace)?;
    }
    Ok(())
}

/// Starts a container's init. Returns its host pid once it has finished
/// setting up (and, for `create`, is blocked on the exec fifo). On failure
/// the child has been killed and reaped; the caller removes its cgroup.
pub fn spawn_init(plan: InitPlan, side: &mut dyn ParentSide) -> Result<i32, SpawnError> {
    let spec = plan.spec;
    // Namespaces that affect only our children are entered here, before the clone.
    let mut flags = 0;
    for t in NamespaceType::ALL {
        match ns_path(spec, t) {
            Some((true, Some(path))) => {
                if matches!(t, NamespaceType::Pid | NamespaceType::Time) {
                    setns_path(t, Path::new(path))?;
                }
            }
            Some((true, None)) => {
                if t == NamespaceType::Time {
                    setup_time_ns(spec, plan.proc_root)?;
                } else {
                    flags |= crate::ns::clone_flag(t);
                }
            }
            _ => {}
        }
    }
    let user_joined = matches!(ns_path(spec, NamespaceType::User), Some((true, Some(_))));
    // A joined user namespace must be entered before the others are made,
    // so the child unshares those itself.
    // The cgroup namespace is unshared by the child once it has been moved
    // into its cgroup, so that group (not ours) becomes its root.
    let cgroupns = flags & libc::CLONE_NEWCGROUP != 0;
    let flags = flags & !libc::CLONE_NEWCGROUP;
    let (clone_flags, unshare_flags) = if user_joined {
        (flags & libc::CLONE_NEWPID, flags & !libc::CLONE_NEWPID)
    } else {
        (flags, 0)
    };
    let new_user = flags & libc::CLONE_NEWUSER != 0;

    let (parent, child) = Channel::pair().map_err(SpawnError::Channel)?;
    let child_plan = ChildPlan {
        spec,
        process: plan.process,
        rootfs: plan.rootfs,
        no_pivot: plan.no_pivot,
        seccomp: plan.seccomp,
        console: plan.console.as_ref(),
        preserve_fds: plan.preserve_fds,
        exec_fifo: plan.exec_fifo.as_ref(),
        start_ack: plan.start_ack.as_ref(),
        cgroup_paths: plan.cgroup_paths,
        rlimits: plan.rlimits,
        unshare_flags,
        new_user,
        cgroupns,
        early_go: new_user || cgroupns,
        runtime_hooks: side.has_runtime_hooks(),
        target: None,
    };
    let cgroup_dir = side.before_clone().map_err(SpawnError::Parent)?;
    let cloned = clone_process(clone_flags, cgroup_dir.as_ref().map(|f| f.as_raw_fd()));
    let (pid, in_cgroup2) = match cloned {
        Ok(v) => v,
        Err(e) => {
            side.abandon();
            return Err(SpawnError::Clone(e));
        }
    };
    if pid == 0 {
        drop(parent);
        init::child_main(&child_plan, &child);
    }
    drop(child);
    let fail = |pid: i32, e: SpawnError| {
        kill_and_reap(pid);
        Err(e)
    };
    if new_user {
        let linux = spec.linux.as_ref().expect("a user namespace implies linux");
        if let Err(e) = crate::ns::write_id_maps(
            plan.proc_root,
            pid,
            &linux.uid_mappings,
            &linux.gid_mappings,
            false,
        ) {
            return fail(pid, SpawnError::Parent(e.to_string()));
        }
    }
    let state = match side.cloned(pid, in_cgroup2) {
        Ok(s) => s,
        Err(e) => return fail(pid, SpawnError::Parent(e)),
    };
    if let Err(e) = parent.send(sync::GO, &state) {
        return fail(
            pid,
            SpawnError::Parent(format!("signalling the container: {e}")),
        );
    }
    if side.has_runtime_hooks() {
        if let Err(e) = parent.expect(sync::HOOKS) {
            return fail(pid, SpawnError::from_child(e));
        }
        if let Err(e) = side.runtime_hooks(pid) {
            return fail(pid, SpawnError::Parent(e));
        }
        if let Err(e) = parent.send(sync::CONTINUE, b"") {
            return fail(
                pid,
                SpawnError::Parent(format!("signalling the container: {e}")),
            );
        }
    }
    if let Err(e) = parent.expect(sync::READY) {
        return fail(pid, SpawnError::from_child(e));
    }
    Ok(pid)
}

/// What `exec_into` needs.
pub struct ExecPlan<'a> {
    /// Host pid of the container's init.
    pub target_pid: i32,
    pub process: &'a Process,
    pub seccomp: Option<&'a silo_seccomp::Program>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: i32,
    pub rlimits: &'a [Limit],
    pub proc_root: &'a Path,
    /// The container's spec (for environment defaults and user namespace facts).
    pub spec: &'a Spec,
    /// The job's cgroup2 directory, for CLONE_INTO_CGROUP.
    pub cgroup2: Option<OwnedFd>,
}

fn same_ns(proc_root: &Path, pid: i32, name: &str) -> bool {
    let theirs = std::fs::read_link(proc_root.join(format!("{pid}/ns/{name}")));
    let ours = std::fs::read_link(proc_root.join(format!("self/ns/{name}")));
    matches!((theirs, ours), (Ok(a), Ok(b)) if a == b)
}

/// Starts a process inside a running container's namespaces. The caller
/// has already moved this process into the container's cgroup. Returns the
/// new process's host pid once it is about to `execve`.
pub fn exec_into(plan: ExecPlan) -> Result<i32, SpawnError> {
    // Namespaces to join, opened before anything changes.
    let mut targets = Vec::new();
    for t in NamespaceType::ALL {
        let name = t.proc_name();
        if same_ns(plan.proc_root, plan.target_pid, name) {
            continue;
        }
        let path = plan
            .proc_root
            .join(format!("{}/ns/{name}", plan.target_pid));
        match File::open(&path) {
            Ok(f) => targets.push((t, OwnedFd::from(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && t == NamespaceType::Time => {}
            Err(source) => {
                return Err(SpawnError::JoinNamespace {
                    kind: t.name(),
                    path,
                    source,
                })
            }
        }
    }
    // The pid and time namespaces apply to children, so join them here.
    for (t, fd) in &targets {
        if matches!(t, NamespaceType::Pid | NamespaceType::Time) {
            // SAFETY: setns on an fd we own.
            if unsafe { libc::setns(fd.as_raw_fd(), crate::ns::clone_flag(*t)) } != 0 {
                return Err(SpawnError::JoinNamespace {
                    kind: t.name(),
                    path: PathBuf::from(format!("/proc/{}/ns/{}", plan.target_pid, t.proc_name())),
                    source: io::Error::last_os_error(),
                });
            }
        }
    }
    let in_userns = targets.iter().any(|(t, _)| *t == NamespaceType::User);
    // A container without a mount namespace lives in a chroot.
    let shares_mount_ns = !plan
        .spec
        .linux
        .as_ref()
        .is_some_and(|l| l.namespaces.iter().any(|n| n.typ == NamespaceType::Mount));
    let root = if shares_mount_ns {
        let path = plan.proc_root.join(format!("{}/root", plan.target_pid));
        Some(OwnedFd::from(File::open(&path).map_err(|source| {
            SpawnError::JoinNamespace {
                kind: "mount",
                path,
                source,
            }
        })?))
    } else {
        None
    };
    let (parent, child) = Channel::pair().map_err(SpawnError::Channel)?;
    let exec_target = ExecTarget {
        namespaces: &targets,
        root: root.as_ref(),
    };
    let child_plan = ChildPlan {
        spec: plan.spec,
        process: plan.process,
        rootfs: Path::new("/"),
        no_pivot: false,
        seccomp: plan.seccomp,
        console: plan.console.as_ref(),
        preserve_fds: plan.preserve_fds,
        exec_fifo: None,
        start_ack: None,
        cgroup_paths: &[],
        rlimits: plan.rlimits,
        unshare_flags: 0,
        new_user: in_userns,
        cgroupns: false,
        early_go: false,
        runtime_hooks: false,
        target: Some(exec_target),
    };
    let (pid, _) = clone_process(0, plan.cgroup2.as_ref().map(|f| f.as_raw_fd()))
        .map_err(SpawnError::Clone)?;
    if pid == 0 {
        drop(parent);
        init::child_main(&child_plan, &child);
    }
    drop(child);
    if let Err(e) = parent.expect(sync::READY) {
        kill_and_reap(pid);
        return Err(SpawnError::from_child(e));
    }
    Ok(pid)
}

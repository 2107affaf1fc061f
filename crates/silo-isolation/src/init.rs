//! The child's side: the ordered steps a new container process takes
//! between `clone` and `execve`, reporting any failure to the parent.

use crate::rlimits::Limit;
use crate::sync::{self, Channel};
use silo_oci::{NamespaceType, Process, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The namespaces an exec'd process joins (all but pid and time, which the
/// parent joined before the fork).
pub(crate) struct ExecTarget<'a> {
    pub namespaces: &'a [(NamespaceType, OwnedFd)],
    /// The container has no mount namespace: its root (`/proc/<pid>/root`,
    /// opened by the parent) to chroot into.
    pub root: Option<&'a OwnedFd>,
}

pub(crate) struct ChildPlan<'a> {
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub rootfs: &'a Path,
    pub no_pivot: bool,
    pub seccomp: Option<&'a silo_seccomp::Program>,
    pub console: Option<&'a OwnedFd>,
    pub preserve_fds: i32,
    pub exec_fifo: Option<&'a OwnedFd>,
    pub start_ack: Option<&'a OwnedFd>,
    pub cgroup_paths: &'a [(String, PathBuf)],
    pub rlimits: &'a [Limit],
    pub unshare_flags: i32,
    pub new_user: bool,
    pub cgroupns: bool,
    /// Wait for the parent's GO before any setup (see `run`).
    pub early_go: bool,
    pub runtime_hooks: bool,
    pub target: Option<ExecTarget<'a>>,
}

/// Runs in the cloned child; never returns.
pub(crate) fn child_main(plan: &ChildPlan, chan: &Channel) -> ! {
    use crate::spawn::CommandFailure;
    let code = match run(plan, chan) {
        Ok(never) => match never {},
        Err(f) => {
            let tag = match f.command {
                Some(CommandFailure::NotFound) => sync::NOT_FOUND,
                Some(CommandFailure::NotExecutable) => sync::NOT_EXECUTABLE,
                None => sync::ERROR,
            };
            let msg = &f.message;
            if chan.send(tag, msg.as_bytes()).is_err() {
                // After READY nobody listens: tell the container's stderr.
                let line = format!("silo: {msg}\n");
                // SAFETY: write(2) of a valid buffer to fd 2.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
            }
            f.command.map_or(127, CommandFailure::exit_code)
        }
    };
    // SAFETY: _exit skips atexit handlers and destructors that belong to
    // the parent's copy of this address space.
    unsafe { libc::_exit(code) }
}

enum Never {}

fn os(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn run(plan: &ChildPlan, chan: &Channel) -> Result<Never, sync::Failure> {
    // Nobody inside the container may open /proc/<pid>/exe of this
    // process while it is still the runtime binary (CVE-2019-5736 class).
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(os("prctl(PR_SET_DUMPABLE)").into());
    }
    let process = plan.process;
    let spec = plan.spec;
    let linux = spec.linux.as_ref();
    let mut state_json = Vec::new();

    if let Some(target) = &plan.target {
        join_exec_namespaces(target)?;
        if let Some(root) = target.root {
            rustix::process::fchdir(root)
                .map_err(|e| format!("entering the container's root: {e}"))?;
            rustix::process::chroot(".")
                .map_err(|e| format!("chroot into the container's root: {e}"))?;
        }
    } else {
        // The parent's GO carries the state document and means the job's
        // limits are in place. A new user namespace needs its id maps, and a
        // cgroup namespace needs the final cgroup, before anything else; in
        // the common case the rootfs is prepared while the parent works.
        if plan.early_go {
            state_json = chan.expect(sync::GO)?;
        }
        if plan.new_user {
            become_ns_root()?;
        }
        // Join namespaces given by path; a joined user namespace comes first.
        if let Some(linux) = linux {
            let mut ordered: Vec<_> = linux
                .namespaces
                .iter()
                .filter(|n| n.path.is_some())
                .filter(|n| !matches!(n.typ, NamespaceType::Pid | NamespaceType::Time))
                .collect();
            ordered.sort_by_key(|n| n.typ != NamespaceType::User);
            for n in ordered {
                let path = Path::new(n.path.as_deref().unwrap_or_default());
                crate::ns::join(n.typ, path).map_err(|e| e.to_string())?;
                if n.typ == NamespaceType::User && plan.unshare_flags != 0 {
                    // SAFETY: unshare with namespace flags only.
                    if unsafe { libc::unshare(plan.unshare_flags) } != 0 {
                        return Err(os("unshare of the container namespaces").into());
                    }
                }
            }
        }
        if plan.cgroupns {
            // SAFETY: unshare with a namespace flag only.
            if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
                return Err(os("unshare of the cgroup namespace").into());
            }
        }
        let has_ns =
            |t| linux.is_some_and(|l| l.namespaces.iter().any(|n| n.typ == t && n.path.is_none()));
        if has_ns(NamespaceType::Uts) {
            if let Some(h) = &spec.hostname {
                rustix::system::sethostname(h.as_bytes())
                    .map_err(|e| format!("setting hostname {h:?}: {e}"))?;
            }
            if let Some(d) = &spec.domainname {
                // SAFETY: valid pointer and length of the domain name bytes.
                if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                    return Err(os(&format!("setting domainname {d:?}")).into());
                }
            }
        }
        let host_mount_ns =
            !linux.is_some_and(|l| l.namespaces.iter().any(|n| n.typ == NamespaceType::Mount));
        let cfg = crate::mounts::RootfsConfig {
            rootfs: plan.rootfs,
            mounts: &spec.mounts,
            propagation: linux.and_then(|l| l.rootfs_propagation.as_deref()),
            devices: linux.map(|l| l.devices.as_slice()).unwrap_or(&[]),
            in_userns: plan.new_user,
            cgroupns: plan.cgroupns,
            cgroup_paths: plan.cgroup_paths,
            host_mount_ns,
        };
        crate::mounts::prepare_rootfs(&cfg).map_err(|e| e.to_string())?;
        if !plan.early_go {
            state_json = chan.expect(sync::GO)?;
        }
        if plan.runtime_hooks {
            chan.send(sync::HOOKS, b"")
                .map_err(|e| format!("setup channel: {e}"))?;
            chan.expect(sync::CONTINUE)?;
        }
        if let Some(hooks) = &spec.hooks {
            crate::hooks::run_all("createContainer", &hooks.create_container, &state_json)
                .map_err(|e| e.to_string())?;
        }
        if host_mount_ns {
            crate::mounts::host_ns_root(plan.rootfs).map_err(|e| e.to_string())?;
        } else if plan.no_pivot {
            crate::mounts::move_root(plan.rootfs).map_err(|e| e.to_string())?;
        } else {
            crate::mounts::pivot_root(plan.rootfs).map_err(|e| e.to_string())?;
        }
        if let Some(linux) = linux {
            crate::sysctl::apply(&linux.sysctl).map_err(|e| e.to_string())?;
            crate::paths::mask_paths(&linux.masked_paths).map_err(|e| e.to_string())?;
            crate::paths::readonly_paths(&linux.readonly_paths).map_err(|e| e.to_string())?;
        }
        let readonly = spec.root.as_ref().is_some_and(|r| r.readonly);
        crate::mounts::finish_rootfs(
            // Sharing the host's namespace, the rootfs stays private.
            linux
                .and_then(|l| l.rootfs_propagation.as_deref())
                .filter(|_| !host_mount_ns),
            readonly,
        )
        .map_err(|e| e.to_string())?;
        if let Some(p) = linux.and_then(|l| l.personality.as_ref()) {
            crate::personality::apply(p).map_err(|e| e.to_string())?;
        }
    }

    if let Some(sock) = plan.console {
        let pty = crate::console::open_pty(process.console_size).map_err(|e| e.to_string())?;
        crate::console::send_master_fd(std::os::fd::AsFd::as_fd(sock), &pty.master)
            .map_err(|e| e.to_string())?;
        drop(pty.master);
        crate::console::make_controlling(&pty.slave).map_err(|e| e.to_string())?;
    }

    let env = &process.env;
    let program = resolve_program(process, env)?;
    let argv = cstrings(&process.args, "process.args")?;
    let envp = cstrings(env, "process.env")?;

    let cwd = if process.cwd.is_empty() {
        "/"
    } else {
        process.cwd.as_str()
    };
    std::env::set_current_dir(cwd)
        .map_err(|e| format!("process.cwd: cannot change to {cwd:?}: {e}"))?;
    crate::rlimits::apply(plan.rlimits).map_err(|e| e.to_string())?;
    if process.no_new_privileges {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(os("prctl(PR_SET_NO_NEW_PRIVS)").into());
        }
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it
    // while we still have it.
    if let (Some(prog), false) = (plan.seccomp, process.no_new_privileges) {
        silo_seccomp::load(prog).map_err(|e| e.to_string())?;
    }
    crate::caps::keep_caps_across_setuid().map_err(|e| e.to_string())?;
    let setgroups_allowed = !plan.new_user || setgroups_allowed();
    crate::user::switch(&process.user, setgroups_allowed).map_err(|e| e.to_string())?;
    let caps = process.capabilities.clone().unwrap_or_default();
    crate::caps::apply(&caps).map_err(|e| e.to_string())?;

    chan.send(sync::READY, b"")
        .map_err(|e| format!("setup channel: {e}"))?;

    if let Some(fifo) = plan.exec_fifo {
        let mut b = [0u8; 1];
        loop {
            // SAFETY: reading one byte into a valid buffer.
            let n = unsafe { libc::read(fifo.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os("waiting for start on the exec fifo").into());
        }
        if let Some(hooks) = &spec.hooks {
            let running = with_status(&state_json, "running");
            crate::hooks::run_all("startContainer", &hooks.start_container, &running)
                .map_err(|e| e.to_string())?;
        }
        if let Some(ack) = plan.start_ack {
            // `start` returns once the startContainer hooks have run.
            // SAFETY: writing one byte from a valid buffer.
            unsafe { libc::write(ack.as_raw_fd(), b"A".as_ptr().cast(), 1) };
        }
    }

    crate::fds::cloexec_from(3 + plan.preserve_fds).map_err(|e| e.to_string())?;
    reset_signals();
    if let (Some(prog), true) = (plan.seccomp, process.no_new_privileges) {
        silo_seccomp::load(prog).map_err(|e| e.to_string())?;
    }
    let argv_ptrs = ptrs(&argv);
    let envp_ptrs = ptrs(&envp);
    // SAFETY: argv and envp are NULL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let command = match err.raw_os_error() {
        Some(libc::ENOENT) => Some(crate::spawn::CommandFailure::NotFound),
        Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR) => {
            Some(crate::spawn::CommandFailure::NotExecutable)
        }
        _ => None,
    };
    Err(sync::Failure {
        command,
        message: format!(
            "exec {:?}: {err}",
            process.args.first().map(String::as_str).unwrap_or("")
        ),
    })
}

/// The workload starts with default signal dispositions and nothing
/// blocked, whatever the runtime had (Rust ignores SIGPIPE; callers may
/// block or ignore signals): ignored dispositions and the mask survive
/// `execve`. The raw syscall also reaches the signals glibc reserves.
fn reset_signals() {
    /// The kernel's `struct sigaction`; all zeros is SIG_DFL, no flags, empty mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction with a valid kernel sigaction and an 8-byte
    // mask size; SIGKILL and SIGSTOP fail with EINVAL, which is fine.
    // sigprocmask with a valid empty set.
    unsafe {
        for sig in 1..=64 {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

fn with_status(state: &[u8], status: &str) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = serde_json::Value::String(status.into());
            serde_json::to_vec(&v).unwrap_or_else(|_| state.to_vec())
        }
        Err(_) => state.to_vec(),
    }
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}

fn become_ns_root() -> Result<(), String> {
    // SAFETY: raw id syscalls; this process is single-threaded.
    unsafe {
        if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0 {
            return Err(os("setresgid(0) in the new user namespace"));
        }
        if libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0 {
            return Err(os("setresuid(0) in the new user namespace"));
        }
    }
    Ok(())
}

fn join_exec_namespaces(target: &ExecTarget) -> Result<(), String> {
    let mut order: Vec<&(NamespaceType, OwnedFd)> = target
        .namespaces
        .iter()
        .filter(|(t, _)| !matches!(t, NamespaceType::Pid | NamespaceType::Time))
        .collect();
    // user first (it grants the rights for the rest), mount last.
    order.sort_by_key(|(t, _)| match t {
        NamespaceType::User => 0,
        NamespaceType::Mount => 2,
        _ => 1,
    });
    for (t, fd) in order {
        // SAFETY: setns on an fd we own with the matching flag.
        if unsafe { libc::setns(fd.as_raw_fd(), crate::ns::clone_flag(*t)) } != 0 {
            return Err(os(&format!(
                "joining the container's {} namespace",
                t.name()
            )));
        }
    }
    Ok(())
}

fn cstrings(items: &[String], field: &str) -> Result<Vec<CString>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_bytes()).map_err(|_| format!("{field}[{i}]: contains a NUL byte"))
        })
        .collect()
}

fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Finds the program like execvp does, with PATH from the process env.
fn resolve_program(process: &Process, env: &[String]) -> Result<CString, sync::Failure> {
    let name = process
        .args
        .first()
        .ok_or_else(|| "process.args: must not be empty".to_string())?;
    if name.contains('/') {
        let c = CString::new(name.as_bytes())
            .map_err(|_| "process.args[0]: contains a NUL byte".to_string())?;
        // Checked now, while a failure is still the start's (as runc and
        // Docker report it), not an exit of the container.
        // SAFETY: access(2) on a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 || Path::new(name).is_dir() {
            let err = std::io::Error::last_os_error();
            let (command, why) = if Path::new(name).is_dir() {
                (
                    crate::spawn::CommandFailure::NotExecutable,
                    "is a directory".to_string(),
                )
            } else if err.raw_os_error() == Some(libc::ENOENT) {
                (
                    crate::spawn::CommandFailure::NotFound,
                    "no such file or directory".to_string(),
                )
            } else {
                (
                    crate::spawn::CommandFailure::NotExecutable,
                    "permission denied".to_string(),
                )
            };
            return Err(sync::Failure {
                command: Some(command),
                message: format!("exec: {name:?}: {why}"),
            });
        }
        return Ok(c);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        let c = CString::new(candidate.as_os_str().as_bytes())
            .map_err(|_| "process.args[0]: contains a NUL byte".to_string())?;
        // SAFETY: access(2) on a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && !candidate.is_dir() {
            return Ok(c);
        }
    }
    Err(sync::Failure {
        command: Some(crate::spawn::CommandFailure::NotFound),
        message: format!("exec: {name:?}: executable file not found in $PATH"),
    })
}

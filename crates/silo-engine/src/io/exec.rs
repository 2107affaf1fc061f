//! Exec instances (`docker exec`): kept in memory, run through the runtime
//! binary, reaped by this process (a child subreaper), and their stdio
//! relayed onto a socket in Docker's stream format.

use bollard_stubs::models::ExecConfig;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// One exec instance.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i32,
    /// The pty master (tty execs), for resize.
    pub master: Option<Arc<OwnedFd>>,
}

/// All exec instances of this process, and a condvar signalled on exits.
pub(crate) struct Registry {
    pub map: Mutex<HashMap<String, Exec>>,
    pub exited: Condvar,
}

pub(crate) fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| Registry {
        map: Mutex::new(HashMap::new()),
        exited: Condvar::new(),
    })
}

impl Registry {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Exec>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records an exit and wakes waiters.
    pub fn finish(&self, id: &str, code: i64) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(id) {
            e.running = false;
            e.exit_code = Some(code);
            e.master = None;
        }
        drop(map);
        self.exited.notify_all();
    }

    /// Waits (bounded) until the exec has exited.
    pub fn wait_exit(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut map = self.lock();
        loop {
            match map.get(id) {
                Some(e) if e.running => {}
                _ => return,
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            map = match self.exited.wait_timeout(map, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// A fresh 64-hex-digit id, like Docker's.
pub(crate) fn new_id() -> String {
    let mut b = [0u8; 32];
    let ok = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b[..16].copy_from_slice(&t.to_le_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Docker's multiplexed stream frame: [stream, 0, 0, 0, len_be32] + payload.
pub(crate) fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The action of an exec's `exec_create`/`exec_start` event, as dockerd
/// writes it: `"<kind>: " + Entrypoint + " " + strings.Join(Args, " ")`,
/// so a command without arguments keeps a trailing space ("exec_start: id ").
pub(crate) fn event_action(kind: &str, cmd: &[String]) -> String {
    match cmd.split_first() {
        Some((entrypoint, args)) => format!("{kind}: {entrypoint} {}", args.join(" ")),
        None => format!("{kind}:  "),
    }
}

/// Every capability the kernel may know (privileged execs get them all).
pub(crate) fn all_caps() -> Vec<String> {
    [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
    .iter()
    .map(|c| format!("CAP_{c}"))
    .collect()
}

/// The exec's OCI process: the container's process with Docker's overrides
/// (`user`: the resolved user the exec runs as, None for the process's own).
pub(crate) fn build_process(
    base: &silo_oci::Process,
    cfg: &ExecConfig,
    user: Option<&silo_oci::User>,
) -> silo_oci::Process {
    let mut p = base.clone();
    p.args = cfg.cmd.clone().unwrap_or_default();
    p.command_line = None;
    p.terminal = cfg.tty.unwrap_or(false);
    p.console_size = match cfg.console_size.as_deref() {
        Some([h, w]) if p.terminal && *h > 0 && *w > 0 => Some(silo_oci::ConsoleSize {
            height: *h as u16,
            width: *w as u16,
        }),
        _ => None,
    };
    for e in cfg.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or("");
        p.env.retain(|x| x.split('=').next() != Some(key));
        p.env.push(e.clone());
    }
    if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
        p.cwd = w.to_string();
    }
    if let Some(u) = user {
        p.user = silo_oci::User {
            umask: p.user.umask,
            ..u.clone()
        };
    }
    if cfg.privileged.unwrap_or(false) {
        let all = Some(all_caps());
        p.capabilities = Some(silo_oci::Capabilities {
            bounding: all.clone(),
            effective: all.clone(),
            permitted: all,
            inheritable: None,
            ambient: None,
        });
    }
    p
}

/// Receives one fd sent with SCM_RIGHTS.
pub(crate) fn recv_fd(sock: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the caller owns `sock` for the duration of this call.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(sock) };
    silo_isolation::console::recv_fd(sock)
}

/// Sets a terminal's window size.
pub(crate) fn set_winsize(fd: &OwnedFd, height: u16, width: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is live.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process the reaper of orphaned descendants (once).
pub(crate) fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "PR_SET_CHILD_SUBREAPER");
        }
    });
}

/// One `waitpid(pid, flags)`, retried on EINTR: `Ok(Some(code))` once
/// `pid` has exited (Docker's exit code: the status, or 128+signal),
/// `Ok(None)` while it runs (with WNOHANG), `Err` when it cannot be waited
/// for (not our child).
pub(crate) fn waitpid_code(pid: i32, flags: i32) -> std::io::Result<Option<i64>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live i32.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(Some(i64::from(silo_compute::exit_code(status))));
            }
            continue;
        }
        if r == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Waits for `pid` (our child, or a reparented descendant) and returns
/// Docker's exit code (status, or 128+signal). If it cannot be waited for,
/// polls until it is gone and returns None.
pub(crate) fn wait_pid(pid: i32) -> Option<i64> {
    if let Ok(code) = waitpid_code(pid, 0) {
        return code;
    }
    // Not our child: watch for it to disappear.
    // SAFETY: kill with signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Writes whole frames onto the client socket from several threads.
type Shared = Arc<Mutex<UnixStream>>;

fn write_shared(out: &Shared, bytes: &[u8]) -> std::io::Result<()> {
    let mut g = match out.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.write_all(bytes)
}

/// Copies a pipe into framed output until EOF.
fn pump_framed(mut src: impl Read, stream: u8, out: &Shared) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if write_shared(out, &frame(stream, &buf[..n])).is_err() {
                    // The client went away; keep draining so the process
                    // never blocks on a full pipe.
                    let _ = std::io::copy(&mut src, &mut std::io::sink());
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Relays a non-tty exec: stdout/stderr pipes framed onto `ours`, input
/// from `ours` to the stdin pipe (EOF closes it). When the output is done
/// and the exec has exited (bounded wait), the write side is shut down.
pub(crate) fn relay_pipes(
    ours: UnixStream,
    stdin: Option<impl Write + Send + 'static>,
    stdout: Option<impl Read + Send + 'static>,
    stderr: Option<impl Read + Send + 'static>,
    done: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let reader = ours.try_clone()?;
    let out: Shared = Arc::new(Mutex::new(ours));
    if let Some(mut w) = stdin {
        let mut r = reader.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut r, &mut w);
            // Dropping `w` closes the process's stdin.
        });
    }
    let mut pumps = Vec::new();
    if let Some(r) = stdout {
        let o = out.clone();
        pumps.push(std::thread::spawn(move || pump_framed(r, 1, &o)));
    }
    if let Some(r) = stderr {
        let o = out.clone();
        pumps.push(std::thread::spawn(move || pump_framed(r, 2, &o)));
    }
    std::thread::spawn(move || {
        for p in pumps {
            let _ = p.join();
        }
        done();
        let _ = reader.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}

/// Relays a tty exec: raw bytes both ways between `ours` and the master.
pub(crate) fn relay_tty(
    ours: UnixStream,
    master: Arc<OwnedFd>,
    done: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut from_client = ours.try_clone()?;
    let mut to_client = ours;
    let m_in = File::from(master.try_clone()?);
    let mut m_out = File::from(master.try_clone()?);
    std::thread::spawn(move || {
        let mut m_in = m_in;
        let _ = std::io::copy(&mut from_client, &mut m_in);
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match m_out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: every slave fd is closed (the process is gone).
                Err(_) => break,
            }
        }
        done();
        let _ = to_client.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}

/// Reads the last error message from a runtime `--log-format json` log.
pub(crate) fn runtime_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        if v["level"] == "error" {
            v["msg"].as_str().map(String::from)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_docker_headers() {
        assert_eq!(
            frame(1, b"hi\n"),
            vec![1, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']
        );
        let big = vec![7u8; 70000];
        let f = frame(2, &big);
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(f.len(), 70008);
    }

    #[test]
    fn event_actions_are_dockers() {
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            event_action("exec_create", &cmd(&["id", "-u"])),
            "exec_create: id -u"
        );
        assert_eq!(event_action("exec_start", &cmd(&["id"])), "exec_start: id ");
        assert_eq!(
            event_action("exec_start", &cmd(&["/bin/sh", "-c", "echo a  b"])),
            "exec_start: /bin/sh -c echo a  b"
        );
    }

    #[test]
    fn ids_are_64_hex() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn process_gets_docker_overrides() {
        let base = silo_oci::Process {
            args: vec!["sleep".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cwd: "/".into(),
            ..Default::default()
        };
        let cfg = ExecConfig {
            cmd: Some(vec!["echo".into(), "hi".into()]),
            env: Some(vec!["A=2".into()]),
            working_dir: Some("/tmp".into()),
            tty: Some(true),
            console_size: Some(vec![30, 100]),
            privileged: Some(true),
            ..Default::default()
        };
        let user = silo_oci::User {
            uid: 5,
            gid: 6,
            additional_gids: vec![7],
            ..Default::default()
        };
        let p = build_process(&base, &cfg, Some(&user));
        assert_eq!(p.args, vec!["echo", "hi"]);
        assert_eq!(p.env, vec!["PATH=/bin", "A=2"]);
        assert_eq!(p.cwd, "/tmp");
        assert!(p.terminal);
        assert_eq!(p.console_size.map(|c| (c.height, c.width)), Some((30, 100)));
        assert_eq!((p.user.uid, p.user.gid), (5, 6));
        assert_eq!(p.user.additional_gids, vec![7]);
        let caps = p.capabilities.unwrap();
        assert!(caps
            .bounding
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn pipe_relay_frames_output_and_forwards_input() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let (mut in_r, in_w) = std::io::pipe().unwrap();
        relay_pipes(ours, Some(in_w), Some(out_r), Some(err_r), || {}).unwrap();
        out_w.write_all(b"out\n").unwrap();
        drop(out_w);
        // Sequence the streams so the frame order is fixed.
        std::thread::sleep(Duration::from_millis(50));
        err_w.write_all(b"err\n").unwrap();
        drop(err_w);
        theirs.write_all(b"input").unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        let mut want = frame(1, b"out\n");
        want.extend(frame(2, b"err\n"));
        assert_eq!(got, want);
        let mut input = String::new();
        in_r.read_to_string(&mut input).unwrap();
        assert_eq!(input, "input");
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_pid
    fn waits_for_exit_codes() {
        let c = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        assert_eq!(wait_pid(c.id() as i32), Some(7));
        let c = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        assert_eq!(wait_pid(c.id() as i32), Some(137));
    }
}

//! Exec instances: a process started in a running container, kept in
//! memory, run through the runtime binary, reaped by this process (a child
//! subreaper), and its stdio relayed onto a socket in the multiplexed
//! stream format ([`silo_sys::frame`]).

use silo_sys::frame::{frame, Stream};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// What to run in a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// argv; not empty.
    pub args: Vec<String>,
    /// `KEY=value`, over the container's environment.
    pub env: Vec<String>,
    /// The working directory; None: the container's.
    pub cwd: Option<String>,
    /// Resolved in the container's /etc files; None: the container's user.
    pub user: Option<String>,
    pub terminal: bool,
    /// Which streams a client attached to the exec gets.
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Every capability.
    pub privileged: bool,
    /// (height, width) of a terminal.
    pub console_size: Option<(u16, u16)>,
    /// The key sequence with which an attached client detaches, as the
    /// front end spelled it (shown back).
    pub detach_keys: String,
    /// That sequence as bytes: stdin carrying it lets the client go and
    /// leaves the process running with its stdin open. Empty: none.
    pub detach_sequence: Vec<u8>,
}

/// One exec instance, as front ends see it.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub spec: ExecSpec,
    pub running: bool,
    pub exit_code: Option<i64>,
    /// Host pid (0 before it starts).
    pub pid: i32,
}

/// One exec instance and its terminal.
#[derive(Debug, Clone)]
pub(crate) struct Exec {
    pub info: ExecInfo,
    pub started: bool,
    /// The pty master (tty execs), for resize.
    pub master: Option<Arc<OwnedFd>>,
}

/// The engine's exec instances, and a condvar signalled on exits.
#[derive(Default)]
pub(crate) struct Registry {
    pub map: Mutex<HashMap<String, Exec>>,
    pub exited: Condvar,
}

impl Registry {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Exec>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an exit and wakes waiters.
    pub fn finish(&self, id: &str, code: i64) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(id) {
            e.info.running = false;
            e.info.exit_code = Some(code);
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
                Some(e) if e.info.running => {}
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

/// The exec's OCI process: the container's process with the exec's
/// overrides (`user`: the resolved user it runs as, None for the process's own).
pub(crate) fn build_process(
    base: &silo_oci::Process,
    spec: &ExecSpec,
    user: Option<&silo_oci::User>,
) -> silo_oci::Process {
    let mut p = base.clone();
    p.args = spec.args.clone();
    p.command_line = None;
    p.terminal = spec.terminal;
    p.console_size = match spec.console_size {
        Some((h, w)) if p.terminal && h > 0 && w > 0 => Some(silo_oci::ConsoleSize {
            height: h,
            width: w,
        }),
        _ => None,
    };
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or("");
        p.env.retain(|x| x.split('=').next() != Some(key));
        p.env.push(e.clone());
    }
    if let Some(w) = spec.cwd.as_deref().filter(|w| !w.is_empty()) {
        p.cwd = w.to_string();
    }
    if let Some(u) = user {
        p.user = silo_oci::User {
            umask: p.user.umask,
            ..u.clone()
        };
    }
    if spec.privileged {
        let all: Option<Vec<String>> =
            Some(crate::ALL_CAPS.iter().map(|c| c.to_string()).collect());
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
fn pump_framed(mut src: impl Read, stream: Stream, out: &Shared) {
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
/// Copies the client's input to `w` until it ends (false) or carries the
/// detach keys (true: the client's socket is shut down, it is let go).
fn copy_input(client: &mut UnixStream, w: &mut impl Write, keys: &[u8]) -> bool {
    let mut escape = silo_sys::escape::Escape::new(keys.to_vec());
    let mut buf = vec![0u8; 8192];
    let mut pass = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => {
                pass.clear();
                escape.flush(&mut pass);
                let _ = w.write_all(&pass);
                return false;
            }
            Ok(n) => n,
        };
        pass.clear();
        let detached = escape.feed(&buf[..n], &mut pass);
        if w.write_all(&pass).is_err() {
            return false;
        }
        if detached {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return true;
        }
    }
}

pub(crate) fn relay_pipes(
    ours: UnixStream,
    stdin: Option<impl Write + Send + 'static>,
    stdout: Option<impl Read + Send + 'static>,
    stderr: Option<impl Read + Send + 'static>,
    keys: Vec<u8>,
    done: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let reader = ours.try_clone()?;
    let out: Shared = Arc::new(Mutex::new(ours));
    // A detached client leaves the process's stdin open until it is done.
    let (keep, kept) = std::sync::mpsc::channel::<Box<dyn Send>>();
    if let Some(mut w) = stdin {
        let mut r = reader.try_clone()?;
        std::thread::spawn(move || {
            if copy_input(&mut r, &mut w, &keys) {
                let _ = keep.send(Box::new(w));
            }
            // Otherwise dropping `w` closes the process's stdin.
        });
    }
    let mut pumps = Vec::new();
    if let Some(r) = stdout {
        let o = out.clone();
        pumps.push(std::thread::spawn(move || {
            pump_framed(r, Stream::Stdout, &o)
        }));
    }
    if let Some(r) = stderr {
        let o = out.clone();
        pumps.push(std::thread::spawn(move || {
            pump_framed(r, Stream::Stderr, &o)
        }));
    }
    std::thread::spawn(move || {
        for p in pumps {
            let _ = p.join();
        }
        done();
        drop(kept);
        let _ = reader.shutdown(std::net::Shutdown::Write);
    });
    Ok(())
}

/// Relays a tty exec: raw bytes both ways between `ours` and the master.
pub(crate) fn relay_tty(
    ours: UnixStream,
    master: Arc<OwnedFd>,
    keys: Vec<u8>,
    done: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let mut from_client = ours.try_clone()?;
    let mut to_client = ours;
    let m_in = File::from(master.try_clone()?);
    let mut m_out = File::from(master.try_clone()?);
    std::thread::spawn(move || {
        let mut m_in = m_in;
        copy_input(&mut from_client, &mut m_in, &keys);
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
    fn process_gets_the_exec_overrides() {
        let base = silo_oci::Process {
            args: vec!["sleep".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cwd: "/".into(),
            ..Default::default()
        };
        let cfg = ExecSpec {
            args: vec!["echo".into(), "hi".into()],
            env: vec!["A=2".into()],
            cwd: Some("/tmp".into()),
            terminal: true,
            console_size: Some((30, 100)),
            privileged: true,
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
        relay_pipes(ours, Some(in_w), Some(out_r), Some(err_r), vec![], || {}).unwrap();
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
        let mut want = frame(Stream::Stdout, b"out\n");
        want.extend(frame(Stream::Stderr, b"err\n"));
        assert_eq!(got, want);
        let mut input = String::new();
        in_r.read_to_string(&mut input).unwrap();
        assert_eq!(input, "input");
    }

    #[test]
    fn detach_keys_let_the_client_go_and_keep_stdin_open() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (mut in_r, in_w) = std::io::pipe().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        relay_pipes(
            ours,
            Some(in_w),
            Some(out_r),
            None::<std::io::PipeReader>,
            vec![0x10, 0x11],
            move || {
                let _ = done_rx.recv();
            },
        )
        .unwrap();
        theirs.write_all(b"ab\x10\x11cd").unwrap();
        // The client is let go: its socket ends.
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
        let mut buf = [0u8; 2];
        in_r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ab");
        // stdin stays open while the process runs: no EOF yet.
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&in_r),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 200) };
        assert_eq!(ready, 0, "stdin was closed");
        // Once it is done (its output ended), stdin closes.
        drop(out_w);
        done_tx.send(()).unwrap();
        let mut more = [0u8; 1];
        assert_eq!(in_r.read(&mut more).unwrap(), 0);
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

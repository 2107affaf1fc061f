//! Interactive plumbing: hijacked attach/exec connections, Docker's
//! multiplexed stream framing, raw terminal mode and SIGWINCH → resize.

use crate::api::App;
use crate::http::{Body, HttpError};
use anyhow::{Context, Result};
use bollard_stubs::models::ContainerWaitResponse;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

/// What `attach_start_wait` should do.
pub struct Attach {
    pub stdin: bool,
    pub tty: bool,
    /// Start the container once attached (run, start -a).
    pub start: bool,
    /// Post a wait with this condition before starting and use its exit code.
    pub wait_condition: Option<&'static str>,
}

/// Puts the local terminal into raw mode and restores it on drop.
pub struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    /// Raw mode on stdin when it is a terminal; `None` otherwise.
    pub fn enable() -> Option<RawTerminal> {
        let stdin = io::stdin();
        if !rustix::termios::isatty(&stdin) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Best effort: nothing useful can be done if the terminal is gone.
        let _ = rustix::termios::tcsetattr(
            io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The local terminal size (rows, columns), from stdout or stdin.
fn term_size() -> Option<(u16, u16)> {
    for fd in [io::stdout().as_raw_fd_ref(), io::stdin().as_raw_fd_ref()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd) {
            if ws.ws_row > 0 && ws.ws_col > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
    }
    None
}

trait AsFdRef {
    fn as_raw_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl<T: std::os::fd::AsFd> AsFdRef for T {
    fn as_raw_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Blocks SIGWINCH in this thread (and so in threads spawned later), so a
/// dedicated thread can take it with `sigwait`.
fn block_sigwinch() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Sends the current size, then again on every SIGWINCH, to `path`
/// (`/containers/{id}/resize` or `/exec/{id}/resize`).
fn forward_resize(app: &App, path: String) {
    fn send(client: &crate::http::Client, path: &str) {
        if let Some((h, w)) = term_size() {
            // A failed resize is not fatal (the container may have exited).
            let _ = client.call("POST", &format!("{path}?h={h}&w={w}"), Body::Empty);
        }
    }
    send(&app.client, &path);
    let set = block_sigwinch();
    let client = app.client.clone();
    thread::spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised signal set and `sig` a valid out pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 && sig == libc::SIGWINCH {
            send(&client, &path);
        }
    });
}

pub use silo_sys::frame::demux;

/// Copies raw output to stdout, flushing as it goes.
fn copy_raw(mut r: impl Read) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// Pumps a hijacked connection: stdin → connection (when `stdin`), then the
/// connection → stdout/stderr until the daemon closes it.
pub fn pump(conn: BufReader<UnixStream>, stdin: bool, tty: bool) -> Result<()> {
    if stdin {
        let mut w = conn
            .get_ref()
            .try_clone()
            .context("cloning the attach socket")?;
        thread::spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = [0u8; 8192];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if w.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            // Stdin closed: half-close so the container sees EOF.
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
    }
    let res = if tty {
        copy_raw(conn)
    } else {
        demux(conn, &mut io::stdout().lock(), &mut io::stderr().lock())
    };
    match res {
        Ok(()) => Ok(()),
        // The daemon may reset the connection when the container exits.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(e).context("reading the container's output"),
    }
}

/// Attach (hijacked), optionally post a wait and start, stream the I/O and
/// return the container's exit code.
pub fn attach_start_wait(app: &App, id: &str, a: Attach) -> Result<i32> {
    let mut q = String::from("stream=1&stdout=1&stderr=1");
    if a.stdin {
        q.push_str("&stdin=1");
    }
    let conn = app
        .client
        .hijack("POST", &format!("/containers/{id}/attach?{q}"), Body::Empty)?;
    let waiter = match a.wait_condition {
        Some(cond) => {
            let resp = app.stream("POST", &format!("/containers/{id}/wait?condition={cond}"))?;
            Some(thread::spawn(move || -> Result<i64> {
                let w: ContainerWaitResponse = resp.json().context("reading the wait result")?;
                if let Some(e) = w.error.and_then(|e| e.message).filter(|m| !m.is_empty()) {
                    anyhow::bail!("{e}");
                }
                Ok(w.status_code)
            }))
        }
        None => None,
    };
    let raw = if a.tty && a.stdin {
        RawTerminal::enable()
    } else {
        None
    };
    if a.start {
        if let Err(e) = app.post_empty(&format!("/containers/{id}/start")) {
            drop(raw);
            return Err(crate::create::start_failure(e));
        }
    }
    if a.tty {
        forward_resize(app, format!("/containers/{id}/resize"));
    }
    let res = pump(conn, a.stdin, a.tty);
    drop(raw);
    res?;
    let code = match waiter {
        Some(h) => match h.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("the wait thread panicked"),
        },
        None => {
            let v: serde_json::Value = app.get(&format!("/containers/{id}/json"))?;
            v["State"]["ExitCode"].as_i64().unwrap_or(0)
        }
    };
    Ok(code as i32)
}

/// Starts an exec attached through a hijacked connection; returns its exit code.
pub fn exec_attached(app: &App, exec_id: &str, stdin: bool, tty: bool) -> Result<i32> {
    let body = serde_json::json!({"Detach": false, "Tty": tty});
    let conn = app.client.hijack(
        "POST",
        &format!("/exec/{exec_id}/start"),
        Body::Json(serde_json::to_vec(&body)?),
    )?;
    let raw = if tty && stdin {
        RawTerminal::enable()
    } else {
        None
    };
    if tty {
        forward_resize(app, format!("/exec/{exec_id}/resize"));
    }
    let res = pump(conn, stdin, tty);
    drop(raw);
    res?;
    let v: serde_json::Value = app.get(&format!("/exec/{exec_id}/json"))?;
    Ok(v["ExitCode"].as_i64().unwrap_or(0) as i32)
}

/// True when the daemon said "no such ..." (404).
pub fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<HttpError>(),
        Some(HttpError::Api { status: 404, .. })
    )
}

//! Healthcheck probes: one exec in the container whose stdout and stderr
//! share a pipe (the first 4096 bytes are kept, as Docker does), killed
//! when it outlives its timeout, and reaped here.

use super::exec::{self, ExecSpec};
use crate::error::{Error, Result};
use crate::events::{Action, Scope};
use crate::Engine;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Docker keeps this much of a probe's output.
pub(crate) const MAX_OUTPUT: usize = 4096;

/// What one probe run gave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeOutput {
    /// The process's exit code (128+signal when killed), -1 on timeout.
    pub exit_code: i64,
    pub output: String,
}

/// The first [`MAX_OUTPUT`] bytes of the output, with "..." appended when
/// more came (Docker's `limitedBuffer`).
#[derive(Debug, Default)]
pub(crate) struct Limited {
    buf: Vec<u8>,
    truncated: bool,
}

impl Limited {
    pub fn push(&mut self, data: &[u8]) {
        let keep = MAX_OUTPUT.saturating_sub(self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            self.truncated = true;
        }
    }

    /// The kept bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

/// A duration as Go prints it ("200ms", "1.5s", "1m30s"), for Docker's
/// timeout message.
pub(crate) fn go_duration(d: Duration) -> String {
    fn decimal(v: u128, scale: u128) -> String {
        let (int, rem) = (v / scale, v % scale);
        if rem == 0 {
            return int.to_string();
        }
        let width = scale.ilog10() as usize;
        let frac = format!("{rem:0width$}");
        format!("{int}.{}", frac.trim_end_matches('0'))
    }
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, scale) = match ns {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", decimal(ns, scale));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s = decimal(
        (secs % 60) * 1_000_000_000 + ns % 1_000_000_000,
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// Reaps `pid` if it has exited: Docker's exit code (status, or
/// 128+signal). A pid that is not our child counts as exited (-1) once it
/// is gone.
fn try_reap(pid: i32) -> Option<i64> {
    match exec::waitpid_code(pid, libc::WNOHANG) {
        Ok(code) => code,
        // SAFETY: kill with signal 0 only checks for existence.
        Err(_) => (unsafe { libc::kill(pid, 0) } != 0).then_some(-1),
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    silo_sys::pidfd::PidFd::open(pid).ok().map(OwnedFd::from)
}

/// Reads what the pipe holds right now, without waiting for writers the
/// probe may have left behind.
fn drain(reader: &mut std::io::PipeReader, out: &mut Limited) {
    use std::io::Read;
    let fd = reader.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => out.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Collects the output of `pid` from `reader` until it exits or `timeout`
/// passes (then it is killed). Returns (exit code, output, timed out).
fn wait_probe(
    pid: i32,
    reader: std::io::PipeReader,
    timeout: Duration,
) -> (Option<i64>, Limited, bool) {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let pidfd = pidfd_open(pid);
    let mut out = Limited::default();
    let mut reader = Some(reader);
    let mut buf = [0u8; 4096];
    let mut exited = false;
    loop {
        if let Some(code) = try_reap(pid) {
            if let Some(r) = reader.as_mut() {
                drain(r, &mut out);
            }
            return (Some(code), out, false);
        }
        if exited {
            // Gone but not ours to reap (no subreaper): do not spin on
            // the pidfd while its parent reaps it.
            std::thread::sleep(Duration::from_millis(10));
        }
        let now = Instant::now();
        if now >= deadline {
            // SAFETY: kill takes plain integers. (The pid is our unreaped
            // child, as we are a subreaper, so it has not been recycled.)
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let code = exec::wait_pid(pid);
            if let Some(r) = reader.as_mut() {
                drain(r, &mut out);
            }
            return (code, out, true);
        }
        let mut fds = Vec::with_capacity(2);
        if let Some(r) = &reader {
            fds.push(libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(p) = &pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut wait = deadline - now;
        if pidfd.is_none() {
            wait = wait.min(Duration::from_millis(20));
        }
        let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        let readable = n > 0 && reader.is_some() && fds[0].revents != 0;
        exited = n > 0 && pidfd.is_some() && fds[fds.len() - 1].revents != 0;
        if readable {
            if let Some(r) = reader.as_mut() {
                match r.read(&mut buf) {
                    Ok(0) => reader = None,
                    Ok(n) => out.push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => reader = None,
                }
            }
        }
    }
}

impl Engine {
    /// Runs `argv` in the running container `id` as the container's user
    /// with stdout and stderr together, and waits up to `timeout`. A probe
    /// that outlives it is killed and gives exit code -1 with "Health
    /// check exceeded timeout (5s)" and what it printed. Emits exec
    /// events like any exec.
    pub(crate) fn run_probe(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ProbeOutput> {
        let c = self.io_ref(id)?;
        if !c.running || c.paused {
            return Err(Error::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let spec = ExecSpec {
            args: argv.to_vec(),
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let pipe_err = |e| Error::internal("probe pipe", e);
        let (reader, writer) = std::io::pipe().map_err(pipe_err)?;
        let writer2 = writer.try_clone().map_err(pipe_err)?;
        let exec_id = silo_sys::id::random_id();
        self.emit(
            Scope::Container,
            Action::ExecCreate {
                exec_id: exec_id.clone(),
                command: argv.to_vec(),
            },
            &c.id,
        );
        let spawned = match self.exec_spawn(
            &exec_id,
            &c,
            &spec,
            [std::process::Stdio::null(), writer.into(), writer2.into()],
        ) {
            Ok(s) => s,
            // A probe whose command cannot run fails with its exit code.
            Err(Error::CommandFailed { code, message }) => {
                return Ok(ProbeOutput {
                    exit_code: code,
                    output: message,
                })
            }
            Err(e) => return Err(e),
        };
        self.emit(
            Scope::Container,
            Action::ExecStart {
                exec_id: exec_id.clone(),
                command: argv.to_vec(),
            },
            &c.id,
        );
        let (code, out, timed_out) = wait_probe(spawned.pid, reader, timeout);
        let code = code.unwrap_or(-1);
        self.emit(
            Scope::Container,
            Action::ExecDie {
                exec_id,
                exit_code: code,
            },
            &c.id,
        );
        if timed_out {
            let mut msg = format!("Health check exceeded timeout ({})", go_duration(timeout));
            let text = out.text();
            if !text.is_empty() {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            return Ok(ProbeOutput {
                exit_code: -1,
                output: msg,
            });
        }
        Ok(ProbeOutput {
            exit_code: code,
            output: out.text(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_limited_like_docker() {
        let mut l = Limited::default();
        l.push(b"hi\n");
        assert_eq!(l.text(), "hi\n");
        l.push(&vec![b'x'; MAX_OUTPUT]);
        let t = l.text();
        assert!(t.ends_with("x..."), "{}", &t[t.len() - 10..]);
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        let mut l = Limited::default();
        l.push(&[0xff, b'a']);
        assert_eq!(l.text(), "\u{fffd}a");
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(10)), "10ns");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_probe
    fn waits_collects_and_kills_on_timeout() {
        let (r, w) = std::io::pipe().unwrap();
        let w2 = w.try_clone().unwrap();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(w)
            .stderr(w2)
            .spawn()
            .unwrap();
        let (code, out, timed_out) = wait_probe(child.id() as i32, r, Duration::from_secs(30));
        assert_eq!((code, timed_out), (Some(3), false));
        assert_eq!(out.text(), "out\nerr\n");

        let (r, w) = std::io::pipe().unwrap();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "echo started; exec sleep 30"])
            .stdout(w)
            .spawn()
            .unwrap();
        let (code, out, timed_out) = wait_probe(child.id() as i32, r, Duration::from_millis(500));
        assert!(timed_out);
        assert_eq!(code, Some(128 + 9));
        // However far the shell got before the kill.
        assert!("started\n".starts_with(&out.text()), "{:?}", out.text());
    }
}

//! Runs OCI lifecycle hooks (prestart, createRuntime, createContainer,
//! startContainer, poststart, poststop): the state JSON on stdin, a timeout,
//! and the tail of the hook's output in the error. Uses no threads, so it can
//! run inside the container's init as well as in the runtime.

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of hook output kept for the error message.
const TAIL: usize = 4096;

/// Failure of [`run`] or [`run_all`].
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks.{kind}[{index}] {path}: timeout must be greater than zero, got {timeout}")]
    BadTimeout {
        kind: String,
        index: usize,
        path: String,
        timeout: i64,
    },
    #[error("hooks.{kind}[{index}] {path}: env entry {entry:?} is not KEY=VALUE")]
    BadEnv {
        kind: String,
        index: usize,
        path: String,
        entry: String,
    },
    #[error("hooks.{kind}[{index}] {path}: cannot start: {source}")]
    Spawn {
        kind: String,
        index: usize,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("hooks.{kind}[{index}] {path}: {op}: {source}")]
    Io {
        kind: String,
        index: usize,
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("hooks.{kind}[{index}] {path}: killed after the {seconds}s timeout; output: {output}")]
    Timeout {
        kind: String,
        index: usize,
        path: String,
        seconds: i64,
        output: String,
    },
    #[error("hooks.{kind}[{index}] {path}: {status}; output: {output}")]
    Failed {
        kind: String,
        index: usize,
        path: String,
        /// "exit code N" or "killed by signal N".
        status: String,
        /// The exit code, when the hook exited rather than being killed.
        code: Option<i32>,
        output: String,
    },
}

fn push_tail(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > TAIL {
        let cut = buf.len() - TAIL;
        buf.drain(..cut);
    }
}

fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(std::io::Error::from)
}

/// Run one hook and wait for it.
pub fn run(
    kind: &str,
    index: usize,
    hook: &silo_oci::Hook,
    state_json: &[u8],
) -> Result<(), HookError> {
    let path = hook.path.clone();
    let io_err = |op: &'static str| {
        let path = path.clone();
        move |source: std::io::Error| HookError::Io {
            kind: kind.into(),
            index,
            path,
            op,
            source,
        }
    };
    if let Some(t) = hook.timeout {
        if t <= 0 {
            return Err(HookError::BadTimeout {
                kind: kind.into(),
                index,
                path,
                timeout: t,
            });
        }
    }
    let mut cmd = Command::new(&hook.path);
    if let Some(argv0) = hook.args.first() {
        cmd.arg0(argv0).args(&hook.args[1..]);
    }
    cmd.env_clear();
    // Its own process group, so a timeout kills whatever the hook started too.
    cmd.process_group(0);
    for entry in &hook.env {
        let Some((k, v)) = entry.split_once('=') else {
            return Err(HookError::BadEnv {
                kind: kind.into(),
                index,
                path,
                entry: entry.clone(),
            });
        };
        cmd.env(k, v);
    }
    // One pipe for both stdout and stderr, read by us.
    let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("creating the output pipe")(e.into()))?;
    let out_w2: OwnedFd = out_w
        .try_clone()
        .map_err(io_err("duplicating the output pipe"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind: kind.into(),
        index,
        path: path.clone(),
        source,
    })?;
    // `cmd` still holds the parent copies of the write ends; drop them so EOF arrives.
    drop(cmd);

    let deadline = hook
        .timeout
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let result = pump(&mut child, out_r, state_json, deadline);
    let (status, output) = match result {
        Ok(v) => v,
        Err(e) => {
            kill_group(child.id());
            let _ = child.wait();
            return Err(io_err("talking to the hook")(e));
        }
    };
    let output = String::from_utf8_lossy(&output).trim_end().to_string();
    let Some(status) = status else {
        kill_group(child.id());
        let _ = child.wait();
        return Err(HookError::Timeout {
            kind: kind.into(),
            index,
            path,
            seconds: hook.timeout.unwrap_or(0),
            output,
        });
    };
    if status.success() {
        return Ok(());
    }
    let (desc, code) = match (status.code(), status.signal()) {
        (Some(c), _) => (format!("exit code {c}"), Some(c)),
        (None, Some(s)) => (format!("killed by signal {s}"), None),
        _ => (format!("{status}"), None),
    };
    Err(HookError::Failed {
        kind: kind.into(),
        index,
        path,
        status: desc,
        code,
        output,
    })
}

/// Feed stdin, collect output, and wait; `Ok((None, _))` means the deadline passed.
fn pump(
    child: &mut Child,
    out_r: OwnedFd,
    input: &[u8],
    deadline: Option<Instant>,
) -> std::io::Result<(Option<std::process::ExitStatus>, Vec<u8>)> {
    let mut stdin = child.stdin.take();
    if let Some(s) = &stdin {
        set_nonblocking(s)?;
    }
    set_nonblocking(&out_r)?;
    let mut out_r = Some(out_r);
    let mut written = 0usize;
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if written >= input.len() {
            stdin = None; // close: the hook sees EOF
        }
        if let Some(status) = child.try_wait()? {
            if let Some(r) = &out_r {
                drain(r, &mut tail, &mut buf);
            }
            return Ok((Some(status), tail));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            if let Some(r) = &out_r {
                drain(r, &mut tail, &mut buf);
            }
            return Ok((None, tail));
        }
        // Wake at least every 50 ms to notice the exit (a hook's own child may hold the pipe).
        let mut wait = Duration::from_millis(50);
        if let Some(d) = deadline {
            wait = wait.min(d - now);
        }
        let ts = Timespec {
            tv_sec: wait.as_secs() as _,
            tv_nsec: wait.subsec_nanos() as _,
        };
        let mut fds = Vec::with_capacity(2);
        if let Some(r) = &out_r {
            fds.push(PollFd::new(r, PollFlags::IN));
        }
        if let Some(s) = &stdin {
            fds.push(PollFd::new(s, PollFlags::OUT));
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            continue;
        }
        match poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        if let Some(r) = &out_r {
            match rustix::io::read(r, &mut buf) {
                Ok(0) => out_r = None,
                Ok(n) => push_tail(&mut tail, &buf[..n]),
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(s) = &stdin {
            match rustix::io::write(s, &input[written..]) {
                Ok(n) => written += n,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                // The hook closed its stdin without reading: that is its business.
                Err(rustix::io::Errno::PIPE) => written = input.len(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn drain(r: &OwnedFd, tail: &mut Vec<u8>, buf: &mut [u8]) {
    loop {
        match rustix::io::read(r, &mut *buf) {
            Ok(0) => return,
            Ok(n) => push_tail(tail, &buf[..n]),
            Err(e) if std::io::Error::from(e).kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Run `hooks` in order; stop at the first failure.
pub fn run_all(kind: &str, hooks: &[silo_oci::Hook], state_json: &[u8]) -> Result<(), HookError> {
    for (i, h) in hooks.iter().enumerate() {
        run(kind, i, h, state_json)?;
    }
    Ok(())
}

/// Runs every hook even when some fail (poststart and poststop: the spec
/// says a failure there is logged and the remaining hooks still run);
/// returns the failures.
pub fn run_each(kind: &str, hooks: &[silo_oci::Hook], state_json: &[u8]) -> Vec<HookError> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| run(kind, i, h, state_json).err())
        .collect()
}

/// SIGKILL to the hook's whole process group (the hook leads it).
fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals that process group.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Option<i64>) -> silo_oci::Hook {
        silo_oci::Hook {
            path: "/bin/busybox".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["HOOKVAR=hello".into()],
            timeout,
        }
    }

    #[test]
    fn success_receives_state_and_exact_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {0}.stdin; echo \"$HOOKVAR\" > {0}.env; env | grep -v '^PWD=\\|^SHLVL=\\|^_=\\|^PATH=' | sort > {0}.all",
            out.display()
        );
        let state =
            br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":1,"bundle":"/b"}"#;
        run("prestart", 0, &sh(&script, Some(5)), state).unwrap();
        let dot = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", out.display())).unwrap();
        assert_eq!(dot("stdin").as_bytes(), state);
        assert_eq!(dot("env"), "hello\n");
        // busybox sh itself adds PWD, SHLVL, PATH and _; nothing else may leak in.
        assert_eq!(dot("all"), "HOOKVAR=hello\n");
    }

    #[test]
    fn big_state_is_fed_fully() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("big");
        let state = vec![b'x'; 300_000];
        run(
            "poststop",
            0,
            &sh(&format!("cat > {}", out.display()), Some(10)),
            &state,
        )
        .unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 300_000);
    }

    #[test]
    fn nonzero_exit_names_path_code_and_output() {
        let e = run(
            "createRuntime",
            2,
            &sh("echo oops >&2; exit 3", None),
            b"{}",
        )
        .unwrap_err();
        match &e {
            HookError::Failed { code, output, .. } => {
                assert_eq!(*code, Some(3));
                assert_eq!(output, "oops");
            }
            other => panic!("unexpected {other}"),
        }
        let m = e.to_string();
        assert!(
            m.contains("hooks.createRuntime[2] /bin/busybox") && m.contains("exit code 3"),
            "{m}"
        );
    }

    #[test]
    fn timeout_kills() {
        let start = Instant::now();
        let e = run(
            "poststart",
            0,
            &sh("echo started; exec sleep 30", Some(1)),
            b"{}",
        )
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        match e {
            HookError::Timeout {
                seconds, output, ..
            } => {
                assert_eq!(seconds, 1);
                assert_eq!(output, "started");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn missing_binary_and_bad_timeout() {
        let h = silo_oci::Hook {
            path: "/nonexistent/hook".into(),
            ..Default::default()
        };
        let e = run("prestart", 0, &h, b"{}").unwrap_err();
        assert!(
            matches!(e, HookError::Spawn { .. }) && e.to_string().contains("/nonexistent/hook")
        );
        let e = run("prestart", 0, &sh("true", Some(0)), b"{}").unwrap_err();
        assert!(matches!(e, HookError::BadTimeout { .. }));
    }

    #[test]
    fn run_all_stops_at_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("m");
        let hooks = [
            sh("exit 1", None),
            sh(&format!("touch {}", marker.display()), None),
        ];
        assert!(run_all("prestart", &hooks, b"{}").is_err());
        assert!(!marker.exists());
    }
}

//! The monitor as a process: `--detach` (fork, new session, report the
//! init pid or the error over a pipe) and the top-level run that puts the
//! monitor's own stderr into `<state-dir>/monitor.log`.

use crate::args::Args;
use crate::fdio;
use crate::monitor::Monitor;
use crate::protocol::StartFailure;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Forks. The parent waits for the child's report, prints the init pid
/// (exit 0) or the error (exit 1), and never returns. The child starts a
/// new session and gets the pipe to report on.
pub fn detach() -> io::Result<OwnedFd> {
    let (r, w) = fdio::pipe()?;
    // SAFETY: the monitor is single-threaded here, so the child may go on
    // running ordinary Rust code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(r);
        // A fresh session: no controlling terminal, not in silod's group.
        let _ = rustix::process::setsid();
        return Ok(w);
    }
    drop(w);
    let mut report = String::new();
    let read = File::from(r).read_to_string(&mut report);
    if let (Ok(_), Some(pid)) = (&read, report.strip_prefix("ok ")) {
        println!("{}", pid.trim());
        std::process::exit(0);
    }
    // The child exits after a failed start: reap it here, or it would be
    // reparented to silod (a subreaper) and linger there as a zombie.
    let mut status = 0;
    // SAFETY: waitpid on our own child writes into a live i32.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let failure = report
        .strip_prefix("error ")
        .and_then(|json| serde_json::from_str::<StartFailure>(json.trim_end()).ok())
        .unwrap_or_else(|| StartFailure {
            message: format!(
                "the monitor (pid {pid}) exited before reporting; see monitor.log in the state directory"
            ),
            command: None,
        });
    eprintln!("silo-monitor: {}", failure.message);
    if let Ok(line) = serde_json::to_string(&failure) {
        println!("{line}");
    }
    std::process::exit(1);
}

fn report(ready: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = ready.take() {
        let _ = File::from(fd).write_all(msg.as_bytes());
    }
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs the monitor to the end; `ready` (from [`detach`]) gets `ok <pid>`
/// once the container runs, or `error <StartFailure as JSON>`. Returns the process exit
/// status: 0 once the container's exit has been recorded, 1 on failure.
pub fn run(args: &Args, mut ready: Option<OwnedFd>) -> i32 {
    let mut args = args.clone();
    args.state_dir = absolute(&args.state_dir);
    args.bundle = absolute(&args.bundle);
    args.runtime_root = absolute(&args.runtime_root);
    let fail_with = |ready: &mut Option<OwnedFd>, failure: StartFailure| {
        eprintln!("silo-monitor: {}", failure.message);
        let json = serde_json::to_string(&failure).unwrap_or_default();
        report(ready, &format!("error {json}\n"));
        1
    };
    let fail = |ready: &mut Option<OwnedFd>, message: String| {
        fail_with(
            ready,
            StartFailure {
                message,
                command: None,
            },
        )
    };
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        return fail(
            &mut ready,
            format!("creating state directory {}: {e}", args.state_dir.display()),
        );
    }
    let log_path = args.state_dir.join(crate::protocol::MONITOR_LOG);
    let log: OwnedFd = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f.into(),
        Err(e) => return fail(&mut ready, format!("opening {}: {e}", log_path.display())),
    };
    if let Err(e) = fdio::dup_onto(&log, 2) {
        return fail(
            &mut ready,
            format!("redirecting stderr to {}: {e}", log_path.display()),
        );
    }
    let mut monitor = match Monitor::start(&args, log.as_fd()) {
        Ok(m) => m,
        Err(e) => {
            let failure = StartFailure {
                message: e.to_string(),
                command: e.command_failure().map(Into::into),
            };
            return fail_with(&mut ready, failure);
        }
    };
    drop(log);
    if let Err(e) = monitor.write_info() {
        let msg = e.to_string();
        monitor.abort();
        return fail(&mut ready, msg);
    }
    report(&mut ready, &format!("ok {}\n", monitor.init_pid()));
    // Do not keep the caller's working directory (or its mount) busy.
    let _ = std::env::set_current_dir("/");
    eprintln!(
        "silo-monitor: container {} running (init {})",
        args.id,
        monitor.init_pid()
    );
    let code = monitor.run();
    eprintln!(
        "silo-monitor: container {} exited with code {code}",
        args.id
    );
    0
}

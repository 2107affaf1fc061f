//! The monitor's protocol with silod, defined once: the files it keeps in
//! its state directory, the records in them, the attach and control
//! sockets' requests and replies, its command line ([`crate::Args::to_args`])
//! and what `--detach` prints. The monitor writes and serves these; the
//! engine reads and calls them through the client half below. Attach
//! streams are framed with [`silo_sys::frame`].

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// [`MonitorInfo`]: written once the container runs.
pub const MONITOR_FILE: &str = "monitor.json";
/// [`ExitInfo`]: written when the init has exited.
pub const EXIT_FILE: &str = "exit.json";
/// Docker's json-file log of the container's output (rotated to `.1`, `.2`, ...).
pub const LOG_FILE: &str = "container-json.log";

/// The `k`-th rotated log file (1 is the newest): `container-json.log.k`.
pub fn rotated_log(dir: &std::path::Path, k: u32) -> std::path::PathBuf {
    dir.join(format!("{LOG_FILE}.{k}"))
}
/// Log records the monitor could not write (a full disk), with counts.
pub const LOG_ERRORS_FILE: &str = "log-errors.json";

/// What [`LOG_ERRORS_FILE`] says: container output the monitor could not
/// log (a full disk), and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LogErrors {
    pub dropped_bytes: u64,
    pub last_error: String,
}

/// Reads [`LOG_ERRORS_FILE`] in `dir` (None when nothing was lost).
pub fn read_log_errors(dir: &std::path::Path) -> Option<LogErrors> {
    let text = std::fs::read(dir.join(LOG_ERRORS_FILE)).ok()?;
    serde_json::from_slice::<LogErrors>(&text)
        .ok()
        .filter(|e| e.dropped_bytes > 0)
}
/// The monitor's own diagnostics.
pub const MONITOR_LOG: &str = "monitor.log";
/// Attach clients connect here and send an [`AttachRequest`] line.
pub const ATTACH_SOCK: &str = "attach.sock";
/// One [`ControlRequest`] line per connection, answered by one [`ControlReply`] line.
pub const CONTROL_SOCK: &str = "control.sock";

/// `monitor.json`: how silod finds and re-adopts a running container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MonitorInfo {
    pub monitor_pid: i32,
    #[serde(default)]
    pub init_pid: i32,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub tty: bool,
}

/// `exit.json`: written once the init has exited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// Docker's exit code: the status, or 128 + the signal.
    pub exit_code: i64,
    #[serde(default)]
    pub oom_killed: bool,
    /// RFC 3339.
    #[serde(default)]
    pub finished_at: String,
}

/// The first line an attach client sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AttachRequest {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replaying the log is silod's job (it reads [`LOG_FILE`]); ignored.
    pub logs: bool,
    /// Detach keys: once the client's input holds this sequence the
    /// client is let go, and the container's stdin stays open. Empty: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detach_keys: Vec<u8>,
}

/// A control command (one JSON line on [`CONTROL_SOCK`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Close the log file and open it again by name (CRI ReopenContainerLog).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reopen_log: bool,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resize {
    pub height: u16,
    pub width: u16,
}

/// The answer to a [`ControlRequest`]: `{"ok":true}` or `{"error":"..."}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlReply {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ControlReply {
    /// The reply line for a command's result.
    pub fn line(result: Result<(), String>) -> String {
        let reply = match result {
            Ok(()) => ControlReply {
                ok: true,
                error: None,
            },
            Err(e) => ControlReply {
                ok: false,
                error: Some(e),
            },
        };
        let mut s = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }
}

/// Why a container's command could not be run (exit codes 127 and 126).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    NotFound,
    NotExecutable,
}

impl CommandError {
    /// The exit code a shell gives it.
    pub fn exit_code(self) -> i64 {
        match self {
            CommandError::NotFound => 127,
            CommandError::NotExecutable => 126,
        }
    }
}

impl From<silo_isolation::CommandFailure> for CommandError {
    fn from(f: silo_isolation::CommandFailure) -> CommandError {
        match f {
            silo_isolation::CommandFailure::NotFound => CommandError::NotFound,
            silo_isolation::CommandFailure::NotExecutable => CommandError::NotExecutable,
        }
    }
}

/// Why a `--detach` monitor could not start its container: one JSON line
/// on its stdout (it exits 1; the message also goes to its stderr).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartFailure {
    pub message: String,
    /// Set when it was the command's fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandError>,
}

/// The [`StartFailure`] a failed `--detach` monitor printed.
pub fn start_failure(stdout: &str) -> Option<StartFailure> {
    serde_json::from_str(stdout.lines().last()?.trim()).ok()
}

/// The init pid a `--detach` monitor printed on success (its last line of
/// stdout); on failure it exits non-zero with the error on stderr.
pub fn detached_pid(stdout: &str) -> Option<i32> {
    stdout.lines().last()?.trim().parse().ok()
}

/// `exit.json` in `dir`, if the monitor has written it.
pub fn read_exit(dir: &Path) -> Option<ExitInfo> {
    let bytes = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `monitor.json` in `dir`, if the monitor has written it.
pub fn read_monitor(dir: &Path) -> Option<MonitorInfo> {
    let bytes = std::fs::read(dir.join(MONITOR_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Connects to the attach socket in `dir` and sends the request line; the
/// stream then carries the container's output (framed without a TTY) and
/// takes its input.
pub fn attach(dir: &Path, req: &AttachRequest) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(dir.join(ATTACH_SOCK))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    Ok(s)
}

/// Sends one control command to the monitor in `dir` and returns its
/// reply: `Err` when the monitor cannot be reached, `Ok(Err(msg))` when it
/// refused the command.
pub fn control(dir: &Path, req: &ControlRequest) -> std::io::Result<Result<(), String>> {
    let mut s = UnixStream::connect(dir.join(CONTROL_SOCK))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer)?;
    let reply: ControlReply = serde_json::from_str(&answer).map_err(std::io::Error::other)?;
    Ok(match reply.error {
        Some(e) => Err(e),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tolerate_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()), None);
        std::fs::write(dir.path().join(EXIT_FILE), r#"{"exit_code":137}"#).unwrap();
        let e = read_exit(dir.path()).unwrap();
        assert_eq!((e.exit_code, e.oom_killed), (137, false));
        let info = MonitorInfo {
            monitor_pid: 7,
            init_pid: 8,
            started_at: "2026-01-01T00:00:00Z".into(),
            tty: true,
        };
        std::fs::write(
            dir.path().join(MONITOR_FILE),
            serde_json::to_vec(&info).unwrap(),
        )
        .unwrap();
        assert_eq!(read_monitor(dir.path()), Some(info));
    }

    #[test]
    fn replies_and_detach_output() {
        assert_eq!(ControlReply::line(Ok(())), "{\"ok\":true}\n");
        let r: ControlReply =
            serde_json::from_str(ControlReply::line(Err("no tty".into())).trim()).unwrap();
        assert_eq!(r.error.as_deref(), Some("no tty"));
        assert_eq!(detached_pid("warning\n1234\n"), Some(1234));
        let f = StartFailure {
            message: "exec: \"nope\": not found".into(),
            command: Some(CommandError::NotFound),
        };
        let line = serde_json::to_string(&f).unwrap();
        assert_eq!(start_failure(&format!("{line}\n")), Some(f));
        assert_eq!(start_failure("1234\n"), None);
        assert_eq!(detached_pid(""), None);
        let req = ControlRequest {
            resize: Some(Resize {
                height: 2,
                width: 3,
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"resize":{"height":2,"width":3}}"#
        );
    }
}

//! ExecSync: runs a command in a container, collects its output, and kills
//! it when the CRI's timeout runs out (the kubelet's probes depend on it).

use crate::proto as cri;
use crate::status;
use silo_engine::{Engine, ExecSpec};
use std::io::Read;
use std::time::{Duration, Instant};
use tonic::Status;

/// At most this much of each stream is kept, as containerd does (16 MiB).
const MAX_OUTPUT: usize = 16 << 20;

pub(crate) fn exec_sync(
    engine: &Engine,
    id: &str,
    cmd: Vec<String>,
    timeout_secs: i64,
) -> Result<cri::ExecSyncResponse, Status> {
    if cmd.is_empty() {
        return Err(Status::invalid_argument("cmd is empty"));
    }
    let exec_id = engine
        .exec_create(
            id,
            ExecSpec {
                args: cmd,
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .map_err(status)?;
    let stream = engine
        .exec_start(&exec_id, false, false)
        .map_err(status)?
        .ok_or_else(|| Status::internal("the exec gave no stream"))?;
    let deadline =
        (timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(timeout_secs as u64));
    let mut socket = stream.socket;
    let mut raw = Vec::new();
    let mut buf = [0u8; 32 * 1024];
    let mut timed_out = false;
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                timed_out = true;
                break;
            }
            let _ = socket.set_read_timeout(Some(left));
        }
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if raw.len() < 2 * MAX_OUTPUT + 16 {
                    raw.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Status::internal(format!("reading the exec's output: {e}"))),
        }
    }
    if timed_out {
        if let Ok(info) = engine.exec_info(&exec_id) {
            if info.pid > 0 && info.running {
                // SAFETY: kill(2) with a pid and a signal number.
                unsafe { libc::kill(info.pid, libc::SIGKILL) };
            }
        }
        return Err(Status::deadline_exceeded(format!(
            "command timed out after {timeout_secs}s and was killed"
        )));
    }
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    silo_sys::frame::demux(&raw[..], &mut stdout, &mut stderr)
        .map_err(|e| Status::internal(format!("decoding the exec's output: {e}")))?;
    stdout.truncate(MAX_OUTPUT);
    stderr.truncate(MAX_OUTPUT);
    // The exit is recorded just after the stream ends.
    let wait_until = Instant::now() + Duration::from_secs(5);
    let code = loop {
        let info = engine.exec_info(&exec_id).map_err(status)?;
        match info.exit_code {
            Some(c) if !info.running => break c,
            _ if Instant::now() > wait_until => {
                return Err(Status::internal("the exec's exit status was not recorded"))
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    Ok(cri::ExecSyncResponse {
        stdout,
        stderr,
        exit_code: i32::try_from(code).unwrap_or(255),
    })
}

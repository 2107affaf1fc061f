//! ExecSync: runs a command in a container, collects its output, and kills
//! it when the CRI's timeout runs out (the kubelet's probes depend on it).

use crate::proto as cri;
use crate::status;
use silo_engine::{Engine, ExecSpec};
use std::io::Read as _;
use std::os::unix::net::UnixStream;
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
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // Docker's frames, demultiplexed as they come; each stream keeps at
    // most MAX_OUTPUT bytes, the rest is read and dropped.
    let mut timed_out = false;
    'frames: loop {
        let mut head = [0u8; silo_sys::frame::HEADER_LEN];
        match read_full(&mut socket, &mut head, deadline) {
            Read::Done => {}
            Read::End => break,
            Read::TimedOut => {
                timed_out = true;
                break;
            }
            Read::Failed(e) => {
                return Err(Status::internal(format!("reading the exec's output: {e}")))
            }
        }
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let mut data = vec![0u8; len.min(64 * 1024)];
        let mut left = len;
        while left > 0 {
            let n = left.min(data.len());
            match read_full(&mut socket, &mut data[..n], deadline) {
                Read::Done => {}
                Read::TimedOut => {
                    timed_out = true;
                    break 'frames;
                }
                Read::End | Read::Failed(_) => {
                    return Err(Status::internal("the exec's output ended inside a frame"))
                }
            }
            let out = match silo_sys::frame::Stream::from_byte(head[0]) {
                silo_sys::frame::Stream::Stderr => &mut stderr,
                _ => &mut stdout,
            };
            let room = MAX_OUTPUT.saturating_sub(out.len());
            out.extend_from_slice(&data[..n.min(room)]);
            left -= n;
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
    // The exit is recorded just after the stream ends.
    let code = engine
        .exec_exit(&exec_id, Duration::from_secs(5))
        .map_err(status)?
        .ok_or_else(|| Status::internal("the exec's exit status was not recorded"))?;
    Ok(cri::ExecSyncResponse {
        stdout,
        stderr,
        exit_code: i32::try_from(code).unwrap_or(255),
    })
}

enum Read {
    Done,
    /// The stream ended before the first byte.
    End,
    TimedOut,
    Failed(std::io::Error),
}

/// Fills `buf` from `s` before `deadline` (None: no limit).
fn read_full(s: &mut UnixStream, buf: &mut [u8], deadline: Option<Instant>) -> Read {
    let mut got = 0;
    while got < buf.len() {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read::TimedOut;
            }
            let _ = s.set_read_timeout(Some(left));
        }
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Read::End,
            Ok(0) => {
                return Read::Failed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended early",
                ))
            }
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Read::Failed(e),
        }
    }
    Read::Done
}

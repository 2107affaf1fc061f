//! The parent↔child channel used while a container's init (or an exec'd
//! process) is being set up: a SOCK_SEQPACKET socketpair carrying one-byte
//! tags, optional text, and passed file descriptors.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Tags of the messages on the channel.
pub const GO: u8 = b'G';
pub const HOOKS: u8 = b'H';
pub const CONTINUE: u8 = b'C';
pub const READY: u8 = b'R';
pub const ERROR: u8 = b'E';
/// An error that is the command's fault: not found (127) or not executable (126).
pub const NOT_FOUND: u8 = b'N';
pub const NOT_EXECUTABLE: u8 = b'X';

/// What went wrong on the other side, as [`Channel::expect`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Set when the command itself could not be run.
    pub command: Option<crate::spawn::CommandFailure>,
    pub message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            command: None,
            message,
        }
    }
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded, so both fds are open and owned by us alone.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends a tag with an optional text payload.
    pub fn send(&self, tag: u8, text: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 + text.len());
        buf.push(tag);
        buf.extend_from_slice(text);
        loop {
            // SAFETY: buf is a valid readable buffer of buf.len() bytes.
            let n = unsafe {
                libc::send(
                    self.raw(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one message: `None` when the peer closed its end.
    pub fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe { libc::recv(self.raw(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                buf.truncate(n as usize);
                let tag = buf[0];
                buf.remove(0);
                return Ok(Some((tag, buf)));
            }
            if n == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits for a given tag; an error message or EOF becomes a [`Failure`].
    pub fn expect(&self, want: u8) -> Result<Vec<u8>, Failure> {
        use crate::spawn::CommandFailure;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self.recv() {
            Ok(Some((tag, body))) if tag == want => Ok(body),
            Ok(Some((ERROR, body))) => Err(text(&body).into()),
            Ok(Some((NOT_FOUND, body))) => Err(Failure {
                command: Some(CommandFailure::NotFound),
                message: text(&body),
            }),
            Ok(Some((NOT_EXECUTABLE, body))) => Err(Failure {
                command: Some(CommandFailure::NotExecutable),
                message: text(&body),
            }),
            Ok(Some((tag, _))) => Err(format!(
                "protocol error: expected message {:?}, got {:?}",
                want as char, tag as char
            )
            .into()),
            Ok(None) => Err(String::from("the container process exited during setup").into()),
            Err(e) => Err(format!("reading from the setup channel: {e}").into()),
        }
    }
}

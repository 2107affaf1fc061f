//! Small file-descriptor helpers for the poll loop: pipes, socket pairs,
//! non-blocking reads and writes, and receiving the pty master.

use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// A close-on-exec unix stream socket pair.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

pub fn set_nonblocking(fd: BorrowedFd) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// What a non-blocking read gave.
pub enum Read {
    Data(usize),
    /// EOF, or EIO from a pty master whose slave side is all closed.
    Eof,
    WouldBlock,
    Failed(io::Error),
}

pub fn read(fd: BorrowedFd, buf: &mut [u8]) -> Read {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return Read::Eof,
            Ok(n) => return Read::Data(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Read::WouldBlock,
            Err(Errno::IO) => return Read::Eof,
            Err(e) => return Read::Failed(e.into()),
        }
    }
}

/// Writes as much of `buf` as the fd takes without blocking; returns how much.
pub fn write_some(fd: BorrowedFd, mut buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                buf = &buf[n..];
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Receives one fd sent with SCM_RIGHTS without waiting for it.
pub fn recv_fd_now(sock: BorrowedFd) -> io::Result<OwnedFd> {
    let mut data = [0u8; 128];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("the message carried no file descriptor"))
}

/// Puts `fd` on 0, 1 or 2 (clearing close-on-exec there).
pub fn dup_onto(fd: impl AsFd, target: i32) -> io::Result<()> {
    let fd = fd.as_fd();
    match target {
        0 => rustix::stdio::dup2_stdin(fd)?,
        1 => rustix::stdio::dup2_stdout(fd)?,
        _ => rustix::stdio::dup2_stderr(fd)?,
    }
    Ok(())
}

/// `/dev/null` opened read-write, close-on-exec.
pub fn dev_null() -> io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonblocking_pipe_reports_wouldblock_then_eof() {
        let (r, w) = pipe().unwrap();
        set_nonblocking(r.as_fd()).unwrap();
        let mut buf = [0u8; 8];
        assert!(matches!(read(r.as_fd(), &mut buf), Read::WouldBlock));
        assert_eq!(write_some(w.as_fd(), b"hi").unwrap(), 2);
        assert!(matches!(read(r.as_fd(), &mut buf), Read::Data(2)));
        drop(w);
        assert!(matches!(read(r.as_fd(), &mut buf), Read::Eof));
    }

    #[test]
    fn recv_fd_without_a_message_fails_at_once() {
        let (a, _b) = socketpair().unwrap();
        let e = recv_fd_now(a.as_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    }
}

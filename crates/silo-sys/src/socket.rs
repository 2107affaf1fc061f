//! Socket queries that std does not offer: how much of what we sent the
//! peer has not read yet (to hand a connection over at a clean boundary).

use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

/// The bytes written to the socket that its peer has not read yet
/// (`SIOCOUTQ`; for a unix stream socket, what sits in the peer's queue).
pub fn unread_by_peer(fd: impl AsFd) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (== SIOCOUTQ) writes one c_int into `n`, which lives
    // across the call; the fd is borrowed and open.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn counts_what_the_peer_has_not_read() {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(unread_by_peer(&a).unwrap(), 0);
        a.write_all(b"hello").unwrap();
        assert!(unread_by_peer(&a).unwrap() > 0);
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(unread_by_peer(&a).unwrap(), 0);
    }
}

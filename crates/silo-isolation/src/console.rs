//! The container's terminal: a pty pair, handing the master to the caller's
//! `--console-socket` with SCM_RIGHTS, and making the slave the controlling
//! terminal and stdio of the container process.

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketType,
};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A pty pair.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Failure of a console operation.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console: {op}: {source}")]
    Pty {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("console: opening the pty slave {path}: {source}")]
    OpenSlave {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process.consoleSize: setting {width}x{height}: {source}")]
    SetSize {
        width: u16,
        height: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("console socket {path}: {op}: {source}")]
    Socket {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("console socket: sending the pty master: {source}")]
    Send {
        #[source]
        source: std::io::Error,
    },
    #[error("console: making the pty the controlling terminal: {op}: {source}")]
    Controlling {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn pty_err(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> ConsoleError {
    move |e| ConsoleError::Pty {
        op,
        source: e.into(),
    }
}

/// Open a new pty pair, optionally with a window size.
pub fn open_pty(size: Option<silo_oci::ConsoleSize>) -> Result<Pty, ConsoleError> {
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(pty_err("posix_openpt"))?;
    rustix::pty::grantpt(&master).map_err(pty_err("grantpt"))?;
    rustix::pty::unlockpt(&master).map_err(pty_err("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(pty_err("ptsname"))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ConsoleError::OpenSlave {
        path: name.to_string_lossy().into_owned(),
        source: e.into(),
    })?;
    if let Some(s) = size {
        set_size(master.as_fd(), s)?;
    }
    Ok(Pty { master, slave })
}

/// Set the window size of a terminal fd.
pub fn set_size(fd: BorrowedFd, size: silo_oci::ConsoleSize) -> Result<(), ConsoleError> {
    let ws = rustix::termios::Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd, ws).map_err(|e| ConsoleError::SetSize {
        width: size.width,
        height: size.height,
        source: e.into(),
    })
}

/// Connect to the unix socket at `socket` and send `master` over it.
///
/// Paths longer than `sun_path` are reached through `/proc/self/fd/<dirfd>/<name>`.
pub fn send_master(socket: &Path, master: &OwnedFd) -> Result<(), ConsoleError> {
    let sock_err = |op: &'static str| {
        move |e: rustix::io::Errno| ConsoleError::Socket {
            path: socket.to_path_buf(),
            op,
            source: e.into(),
        }
    };
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(sock_err("socket"))?;
    // Keep the parent dir fd alive until connect returns.
    let mut _dir: Option<OwnedFd> = None;
    let addr = match rustix::net::SocketAddrUnix::new(socket) {
        Ok(a) => a,
        Err(_) => {
            let parent = socket
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = socket.file_name().ok_or_else(|| ConsoleError::Socket {
                path: socket.to_path_buf(),
                op: "the path has no file name",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            })?;
            let dir = rustix::fs::open(
                parent,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(sock_err("opening the parent directory"))?;
            let short = Path::new("/proc/self/fd")
                .join(dir.as_raw_fd().to_string())
                .join(name);
            _dir = Some(dir);
            rustix::net::SocketAddrUnix::new(short.as_path())
                .map_err(sock_err("building the address"))?
        }
    };
    rustix::net::connect(&sock, &addr).map_err(sock_err("connect"))?;
    send_master_fd(sock.as_fd(), master)
}

/// Send `master` with SCM_RIGHTS over a connected socket; the payload is the pty name.
pub fn send_master_fd(sock: BorrowedFd, master: &OwnedFd) -> Result<(), ConsoleError> {
    let name = rustix::pty::ptsname(master, Vec::new())
        .map(|n| n.into_bytes())
        .unwrap_or_else(|_| b"pty".to_vec());
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(ConsoleError::Send {
            source: std::io::Error::other("control buffer too small"),
        });
    }
    let iov = [IoSlice::new(&name)];
    loop {
        match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(ConsoleError::Send { source: e.into() }),
        }
    }
}

/// Child side: new session, `slave` as the controlling terminal, and as fds 0, 1, 2.
pub fn make_controlling(slave: &OwnedFd) -> Result<(), ConsoleError> {
    let err = |op: &'static str| {
        move |e: rustix::io::Errno| ConsoleError::Controlling {
            op,
            source: e.into(),
        }
    };
    // setsid fails with EPERM if we already lead a session (e.g. a pid-ns init
    // that called it); that is fine as long as TIOCSCTTY then works.
    if let Err(e) = rustix::process::setsid() {
        if e != rustix::io::Errno::PERM {
            return Err(err("setsid")(e));
        }
    }
    rustix::process::ioctl_tiocsctty(slave).map_err(err("TIOCSCTTY"))?;
    rustix::stdio::dup2_stdin(slave).map_err(err("dup2 to stdin"))?;
    rustix::stdio::dup2_stdout(slave).map_err(err("dup2 to stdout"))?;
    rustix::stdio::dup2_stderr(slave).map_err(err("dup2 to stderr"))?;
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS (the other end of `send_master_fd`;
/// runtimes, monitors and daemons all receive pty masters this way).
pub fn recv_fd(sock: BorrowedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, RawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points at live buffers sized as declared.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg filled in; the fd it
    // carries is new in this process and owned by nobody else.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
            return Ok(OwnedFd::from_raw_fd(fd));
        }
    }
    Err(std::io::Error::other(
        "no file descriptor received on the console socket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::IoSliceMut;

    fn recv_fd(conn: &OwnedFd) -> (Vec<u8>, OwnedFd) {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r =
            rustix::net::recvmsg(conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).unwrap();
        let n = r.bytes;
        let mut got = None;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                got = fds.next();
            }
        }
        (buf[..n].to_vec(), got.expect("no fd received"))
    }

    fn check_received_is_master(pty: &Pty, received: &OwnedFd) {
        // Whatever is written to the slave can be read from the received fd.
        rustix::io::write(&pty.slave, b"ping\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rustix::io::read(received, &mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("ping"));
    }

    #[test]
    fn open_pty_sets_size() {
        let pty = open_pty(Some(silo_oci::ConsoleSize {
            height: 33,
            width: 101,
        }))
        .unwrap();
        let ws = rustix::termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
        set_size(
            pty.master.as_fd(),
            silo_oci::ConsoleSize {
                height: 10,
                width: 20,
            },
        )
        .unwrap();
        let ws = rustix::termios::tcgetwinsize(&pty.slave).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (10, 20));
    }

    fn listen(path: &Path) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::bind(path).unwrap()
    }

    #[test]
    fn send_master_over_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let sp = dir.path().join("console.sock");
        let l = listen(&sp);
        let pty = open_pty(None).unwrap();
        send_master(&sp, &pty.master).unwrap();
        let (conn, _) = l.accept().unwrap();
        let (payload, fd) = recv_fd(&OwnedFd::from(conn));
        assert!(String::from_utf8_lossy(&payload).starts_with("/dev/pts/"));
        check_received_is_master(&pty, &fd);
    }

    #[test]
    fn send_master_over_long_path() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100)).join("e".repeat(50));
        std::fs::create_dir_all(&deep).unwrap();
        let sp = deep.join("console.sock");
        assert!(sp.as_os_str().len() > 108);
        // bind() on a long path needs the same trick; bind via the dir's /proc path.
        let d = std::fs::File::open(&deep).unwrap();
        let short = format!("/proc/self/fd/{}/console.sock", d.as_raw_fd());
        let l = listen(Path::new(&short));
        let pty = open_pty(None).unwrap();
        send_master(&sp, &pty.master).unwrap();
        let (conn, _) = l.accept().unwrap();
        let (_, fd) = recv_fd(&OwnedFd::from(conn));
        check_received_is_master(&pty, &fd);
    }

    #[test]
    fn send_master_missing_socket_names_path() {
        let pty = open_pty(None).unwrap();
        let e = send_master(Path::new("/nonexistent/sock"), &pty.master).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sock"), "{e}");
    }

    #[test]
    fn make_controlling_in_child() {
        use std::os::unix::process::CommandExt;
        let pty = open_pty(None).unwrap();
        let slave = pty.slave.try_clone().unwrap();
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["sh", "-c", "tty; test -t 0 && test -t 1 && echo isatty"]);
        // SAFETY: the closure only makes setsid/ioctl/dup2 syscalls.
        unsafe {
            cmd.pre_exec(move || make_controlling(&slave).map_err(std::io::Error::other));
        }
        let mut child = cmd.spawn().unwrap();
        // The closure in `cmd` holds a slave copy: drop it so reads end with EIO.
        drop(cmd);
        drop(pty.slave);
        let status = child.wait().unwrap();
        assert!(status.success());
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = rustix::io::read(&pty.master, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("/dev/pts/") && s.contains("isatty"), "{s}");
    }
}

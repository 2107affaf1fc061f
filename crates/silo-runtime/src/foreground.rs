//! Foreground `run` and `exec`: wait for the process, forward signals to
//! it, and relay a pty between our stdio and the container when asked.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const FORWARDED: [i32; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// A socketpair: one end goes to the container as its console socket, the
/// other receives the pty master.
pub fn console_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array for socketpair to fill.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Receives the pty master sent over the console socket.
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller owns `sock` for the duration of this call.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(sock) };
    silo_isolation::console::recv_fd(sock)
}

fn signal_set(extra: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for s in extra {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: ioctls with a valid winsize buffer.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enter(fd: RawFd) -> RawMode {
        // SAFETY: termios calls on fd with valid buffers.
        unsafe {
            if libc::isatty(fd) != 1 {
                return RawMode { saved: None };
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return RawMode { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restoring the attributes we read from fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Waits for `pid` (our child), forwarding signals and relaying `master`
/// if given. Returns the exit code runc would: the status, or 128+signal.
pub fn wait(pid: i32, master: Option<OwnedFd>) -> io::Result<i32> {
    let set = signal_set(&FORWARDED);
    // SAFETY: blocking signals for this thread, then a signalfd for them.
    let sfd = unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new fd we now own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let _raw = master.as_ref().map(|_| RawMode::enter(0));
    if let Some(m) = &master {
        copy_winsize(0, m.as_raw_fd());
    }
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Reap first: the child may have exited before we blocked SIGCHLD.
        if status.is_none() {
            let mut st = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r == pid {
                status = Some(silo_compute::exit_code(st));
            } else if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ECHILD) {
                    status = Some(255);
                }
            }
        }
        if status.is_some() && !master_open {
            break;
        }
        let mut pfds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(m) = &master {
            if master_open {
                pfds.push(libc::pollfd {
                    fd: m.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if stdin_open && status.is_none() {
                pfds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // Once the process is gone, drain the pty without blocking forever.
        let timeout = if status.is_some() { 100 } else { -1 };
        // SAFETY: pfds is a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        if n == 0 && status.is_some() {
            break;
        }
        for p in &pfds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == sfd.as_raw_fd() {
                // SAFETY: signalfd_siginfo is plain integers; all zeroes is valid.
                let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
                // SAFETY: reading signalfd records into a properly sized buffer.
                while unsafe {
                    libc::read(
                        sfd.as_raw_fd(),
                        (&mut info as *mut libc::signalfd_siginfo).cast(),
                        std::mem::size_of::<libc::signalfd_siginfo>(),
                    )
                } > 0
                {
                    let sig = info.ssi_signo as i32;
                    if sig == libc::SIGCHLD {
                        continue;
                    }
                    if sig == libc::SIGWINCH {
                        if let Some(m) = &master {
                            copy_winsize(0, m.as_raw_fd());
                        }
                        continue;
                    }
                    // SAFETY: forwarding a signal to our child.
                    unsafe { libc::kill(pid, sig) };
                }
            } else if p.fd == 0 {
                // SAFETY: reading into a valid buffer.
                let r = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if r <= 0 {
                    stdin_open = false;
                } else if let Some(m) = &master {
                    write_all(m.as_raw_fd(), &buf[..r as usize]);
                }
            } else {
                // SAFETY: reading into a valid buffer.
                let r = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r <= 0 {
                    master_open = false;
                } else {
                    write_all(1, &buf[..r as usize]);
                }
            }
        }
    }
    // SAFETY: restoring the signal mask we changed above.
    unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    Ok(status.unwrap_or(255))
}

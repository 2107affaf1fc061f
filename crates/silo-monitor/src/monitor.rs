//! The monitor proper: creates the container as our own child, then runs
//! one poll(2) loop that logs its output, serves attach and control clients,
//! and on the init's exit records the exit status and removes the container.

use crate::args::Args;
use crate::fdio::{self, Read};
use crate::files::{self, Reserve};

use crate::jsonlog::{LogWriter, Splitter, Stream};
use crate::protocol::{
    AttachRequest, ControlReply, ControlRequest, ExitInfo, MonitorInfo, ATTACH_SOCK, CONTROL_SOCK,
    EXIT_FILE, LOG_ERRORS_FILE, MONITOR_FILE,
};
use silo_compute::{ComputeSystem, CreateOptions, Host};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Size of the read buffer (and of one attach frame at most).
const READ_BUF: usize = 8 * 1024;
/// A client that falls this far behind is disconnected.
const CLIENT_BACKLOG: usize = 1024 * 1024;
/// Request lines (attach hello, control command) may not be longer.
const MAX_REQUEST: usize = 4096;
/// How long output may keep coming after the init has exited.
const DRAIN: Duration = Duration::from_secs(2);
/// An idle monitor gives back code and stack pages after this long.
const IDLE_TRIM: Duration = Duration::from_secs(5);
/// Space held back on the state directory's filesystem for exit.json.
const RESERVE_BYTES: usize = 64 * 1024;

/// Why the monitor could not start the container.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state directory {path}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    #[error("listening on {path}: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("setting up the container's {what}: {source}")]
    Stdio {
        what: &'static str,
        source: io::Error,
    },
    #[error("becoming a child subreaper: {0}")]
    Subreaper(io::Error),
    #[error("runtime root {path}: {source}")]
    Host {
        path: PathBuf,
        source: silo_compute::HostError,
    },
    #[error("creating container {id:?} from bundle {bundle}: {source}")]
    Create {
        id: String,
        bundle: PathBuf,
        source: Box<silo_compute::CreateError>,
    },
    #[error("--tty: receiving the pty master from the container: {0} (does config.json set process.terminal to true?)")]
    Console(io::Error),
    #[error("signalfd for SIGCHLD: {0}")]
    Signal(io::Error),
    #[error("writing {path}: {source}")]
    WriteState { path: PathBuf, source: io::Error },
    #[error("--wait-attach: {0}")]
    WaitAttach(String),
}

impl StartError {
    /// Set when the container's command itself could not be run.
    pub fn command_failure(&self) -> Option<silo_isolation::CommandFailure> {
        match self {
            StartError::Create { source, .. } => source.command_failure(),
            _ => None,
        }
    }
}

fn now() -> String {
    silo_compute::store::rfc3339_now()
}

/// `--wait-attach N`: accepts N attach clients and reads their request
/// lines before the container exists, so none of its output is missed.
fn accept_early(listener: &UnixListener, n: u32) -> Result<Vec<Client>, StartError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StartError::WaitAttach(format!(
                "only {} of {n} attach clients connected within 10 s",
                out.len()
            )));
        }
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        let Ok((s, _)) = listener.accept() else {
            continue;
        };
        let err = |e: io::Error| StartError::WaitAttach(format!("reading a request: {e}"));
        s.set_nonblocking(false).map_err(err)?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(100))))
            .map_err(err)?;
        // Byte by byte: whatever follows the request line is the client's
        // stdin and must stay in the socket for the poll loop.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 4096 {
            match std::io::Read::read(&mut &s, &mut byte).map_err(err)? {
                0 => break,
                _ if byte[0] == b'\n' => break,
                _ => line.push(byte[0]),
            }
        }
        let req: AttachRequest = serde_json::from_slice(&line)
            .map_err(|e| StartError::WaitAttach(format!("bad request line: {e}")))?;
        s.set_nonblocking(true).map_err(err)?;
        out.push(Client {
            fd: s.into(),
            hello: None,
            escape: silo_sys::escape::Escape::new(req.detach_keys.clone()),
            req,
            pending: Vec::new(),
            read_open: true,
            dead: false,
        });
    }
    Ok(out)
}

struct Client {
    fd: OwnedFd,
    /// Some while the request line is still being read.
    hello: Option<Vec<u8>>,
    req: AttachRequest,
    /// Watches the input for the client's detach keys.
    escape: silo_sys::escape::Escape,
    pending: Vec<u8>,
    read_open: bool,
    dead: bool,
}

struct Control {
    fd: OwnedFd,
    line: Vec<u8>,
    done: bool,
}

/// What stdin of the container is attached to.
enum StdinTarget {
    None,
    Pipe(OwnedFd),
    /// The pty master (same fd as the output).
    Pty,
}

#[derive(Clone, Copy)]
enum Tag {
    Signal,
    AttachListener,
    ControlListener,
    Out,
    Err,
    Stdin,
    Client(usize),
    Control(usize),
}

/// A started container and everything the loop watches.
pub struct Monitor {
    state_dir: PathBuf,
    /// The compute system is re-opened from its state when needed, so the
    /// parsed spec does not sit in an idle monitor's heap.
    host: Host,
    id: String,
    init_pid: i32,
    tty: bool,
    started_at: String,
    sigfd: OwnedFd,
    attach: UnixListener,
    control: UnixListener,
    /// The stdout pipe, or the pty master with --tty.
    out: Option<OwnedFd>,
    out_open: bool,
    err: Option<OwnedFd>,
    stdin: StdinTarget,
    stdin_pending: Vec<u8>,
    close_stdin: bool,
    clients: Vec<Client>,
    controls: Vec<Control>,
    log: LogWriter,
    split: [Splitter; 2],
    status: Option<i32>,
}

fn bind(dir: &Path, name: &str) -> Result<UnixListener, StartError> {
    let path = dir.join(name);
    let err = |source| StartError::Listen {
        path: path.clone(),
        source,
    };
    // Bound under a short temporary name and renamed into place once it
    // listens, so a client that sees `name` never gets ECONNREFUSED (the
    // file appears at bind, before listen). Short: sun_path has 108 bytes.
    let tmp = dir.join(format!(".{}", name.get(..1).unwrap_or("s")));
    for p in [&path, &tmp] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
    }
    let l = UnixListener::bind(&tmp).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(l)
}

fn stdio_err(what: &'static str) -> impl Fn(io::Error) -> StartError {
    move |source| StartError::Stdio { what, source }
}

fn set_signal(sig: i32, handler: libc::sighandler_t) {
    // SAFETY: installing SIG_DFL or SIG_IGN, no handler code involved.
    unsafe { libc::signal(sig, handler) };
}

fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; blocking
    // SIGCHLD for this (only) thread, then a signalfd for it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

impl Monitor {
    /// Creates and starts the container with our stdio plumbing; `log_fd`
    /// is the monitor's own stderr (monitor.log), restored on fd 2 after
    /// the container has inherited its pipes.
    pub fn start(args: &Args, log_fd: BorrowedFd) -> Result<Monitor, StartError> {
        let dir = args.state_dir.clone();
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(StartError::Subreaper(io::Error::last_os_error()));
        }
        // Files of an earlier run in the same directory would mislead silod.
        for stale in [EXIT_FILE, MONITOR_FILE, LOG_ERRORS_FILE] {
            match std::fs::remove_file(dir.join(stale)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StartError::StateDir {
                        path: dir.join(stale),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        let attach = bind(&dir, ATTACH_SOCK)?;
        let control = bind(&dir, CONTROL_SOCK)?;
        let remove_sockets = || {
            let _ = std::fs::remove_file(dir.join(ATTACH_SOCK));
            let _ = std::fs::remove_file(dir.join(CONTROL_SOCK));
        };
        let early = match accept_early(&attach, args.wait_attach) {
            Ok(c) => c,
            Err(e) => {
                remove_sockets();
                return Err(e);
            }
        };
        let result = Self::create(args, log_fd);
        let (sys, out, err, stdin) = match result {
            Ok(v) => v,
            Err(e) => {
                remove_sockets();
                return Err(e);
            }
        };
        let started_at = now();
        let init_pid = sys.pid();
        let sigfd = match sigchld_fd() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys.delete(true);
                remove_sockets();
                return Err(StartError::Signal(e));
            }
        };
        let host = sys.host().clone();
        drop(sys);
        let reserve = Reserve::create(&dir.join(".monitor-reserve"), RESERVE_BYTES);
        let log = LogWriter::new(&dir, args.log_max_bytes, reserve)
            .max_files(args.log_max_files)
            .cri(args.cri_log.clone())
            .disabled(args.no_log);
        Ok(Monitor {
            state_dir: dir,
            host,
            id: args.id.clone(),
            init_pid,
            tty: args.tty,
            started_at,
            sigfd,
            attach,
            control,
            out_open: out.is_some(),
            out,
            err,
            stdin,
            stdin_pending: Vec::new(),
            close_stdin: false,
            clients: early,
            controls: Vec::new(),
            log,
            split: [Splitter::default(), Splitter::default()],
            status: None,
        })
    }

    #[allow(clippy::type_complexity)]
    fn create(
        args: &Args,
        log_fd: BorrowedFd,
    ) -> Result<(ComputeSystem, Option<OwnedFd>, Option<OwnedFd>, StdinTarget), StartError> {
        let null = fdio::dev_null().map_err(stdio_err("/dev/null"))?;
        let host = Host::detect(&args.runtime_root, false).map_err(|source| StartError::Host {
            path: args.runtime_root.clone(),
            source,
        })?;
        let mut opts = CreateOptions {
            bundle: args.bundle.clone(),
            ..Default::default()
        };
        // Read ends we keep, write ends the container inherits on 0, 1, 2.
        let mut ours: (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>) = (None, None, None);
        let mut console = None;
        if args.tty {
            let (mine, theirs) = fdio::socketpair().map_err(stdio_err("console socket"))?;
            opts.console = Some(theirs);
            console = Some(mine);
            for fd in 0..2 {
                fdio::dup_onto(&null, fd).map_err(stdio_err("stdio"))?;
            }
        } else {
            let (out_r, out_w) = fdio::pipe().map_err(stdio_err("stdout pipe"))?;
            let (err_r, err_w) = fdio::pipe().map_err(stdio_err("stderr pipe"))?;
            if args.stdin {
                let (in_r, in_w) = fdio::pipe().map_err(stdio_err("stdin pipe"))?;
                fdio::dup_onto(&in_r, 0).map_err(stdio_err("stdin"))?;
                ours.2 = Some(in_w);
            } else {
                fdio::dup_onto(&null, 0).map_err(stdio_err("stdin"))?;
            }
            fdio::dup_onto(&out_w, 1).map_err(stdio_err("stdout"))?;
            fdio::dup_onto(&err_w, 2).map_err(stdio_err("stderr"))?;
            ours.0 = Some(out_r);
            ours.1 = Some(err_r);
        }
        // Rust starts us with SIGPIPE ignored; the container must not inherit that.
        set_signal(libc::SIGPIPE, libc::SIG_DFL);
        let created = silo_compute::create(&host, &args.id, opts);
        set_signal(libc::SIGPIPE, libc::SIG_IGN);
        set_signal(libc::SIGXFSZ, libc::SIG_IGN);
        // Our own 0, 1, 2 from now on: /dev/null and monitor.log. This also
        // drops our copies of the pipes' write ends, so EOF can come.
        let restore = fdio::dup_onto(&null, 0)
            .and_then(|()| fdio::dup_onto(&null, 1))
            .and_then(|()| fdio::dup_onto(log_fd, 2));
        let sys = created.map_err(|source| StartError::Create {
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            source: Box::new(source),
        })?;
        let fail = |sys: ComputeSystem, e: StartError| {
            let _ = sys.delete(true);
            e
        };
        if let Err(e) = restore {
            return Err(fail(sys, stdio_err("monitor's own stdio")(e)));
        }
        let (out, err, stdin) = if let Some(sock) = console {
            match fdio::recv_fd_now(sock.as_fd()) {
                // Without --stdin nothing is typed into the terminal.
                Ok(master) if args.stdin => (Some(master), None, StdinTarget::Pty),
                Ok(master) => (Some(master), None, StdinTarget::None),
                Err(e) => return Err(fail(sys, StartError::Console(e))),
            }
        } else {
            let stdin = ours.2.map_or(StdinTarget::None, StdinTarget::Pipe);
            (ours.0, ours.1, stdin)
        };
        let stdin_fd = match &stdin {
            StdinTarget::Pipe(p) => Some(p),
            _ => None,
        };
        let nb = [out.as_ref(), err.as_ref(), stdin_fd]
            .into_iter()
            .flatten()
            .try_for_each(|fd| fdio::set_nonblocking(fd.as_fd()));
        if let Err(e) = nb {
            return Err(fail(sys, stdio_err("non-blocking mode")(e)));
        }
        Ok((sys, out, err, stdin))
    }

    fn system(&self) -> Option<ComputeSystem> {
        match silo_compute::open(&self.host, &self.id) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("silo-monitor: opening container {}: {e}", self.id);
                None
            }
        }
    }

    /// The host pid of the container's init.
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// The contents of monitor.json.
    pub fn info(&self) -> MonitorInfo {
        MonitorInfo {
            monitor_pid: std::process::id() as i32,
            init_pid: self.init_pid,
            started_at: self.started_at.clone(),
            tty: self.tty,
        }
    }

    /// Writes `<state-dir>/monitor.json`. Not fsynced (it is on the path of
    /// every start): it lets silod re-adopt a live monitor, and after a host
    /// crash there is no live monitor to re-adopt.
    pub fn write_info(&mut self) -> Result<(), StartError> {
        let path = self.state_dir.join(MONITOR_FILE);
        files::write_json_with(&path, &self.info(), Some(self.log.reserve()), false)
            .map_err(|source| StartError::WriteState { path, source })
    }

    /// Runs until the init has exited and everything is recorded. Returns
    /// the container's exit code.
    pub fn run(mut self) -> i32 {
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut tags: Vec<Tag> = Vec::new();
        let mut deadline: Option<Instant> = None;
        // Trim right before the first poll, then after every idle spell.
        let mut busy_since_trim = true;
        let mut last_event = Instant::now()
            .checked_sub(IDLE_TRIM)
            .unwrap_or_else(Instant::now);
        loop {
            if self.status.is_none() {
                self.reap();
            }
            if self.status.is_some() {
                let d = *deadline.get_or_insert_with(|| Instant::now() + DRAIN);
                let outputs_open = self.out_open || self.err.is_some();
                if !outputs_open || Instant::now() >= d {
                    break;
                }
            }
            self.build_poll(&mut pfds, &mut tags);
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).as_millis() as i32 + 1,
                None if busy_since_trim => {
                    let idle = last_event.elapsed();
                    if idle >= IDLE_TRIM {
                        crate::trim::trim(Path::new("/proc/self"));
                        busy_since_trim = false;
                        -1
                    } else {
                        (IDLE_TRIM - idle).as_millis() as i32 + 1
                    }
                }
                None => -1,
            };
            // SAFETY: pfds is a valid, initialised array of pollfd.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("silo-monitor: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if n > 0 {
                busy_since_trim = true;
                last_event = Instant::now();
            }
            // Only while there is work: an idle monitor holds no read buffer.
            let mut buf = vec![0u8; READ_BUF];
            for (p, tag) in pfds.iter().zip(tags.iter()) {
                if p.revents != 0 {
                    self.handle(*tag, p.revents, &mut buf);
                }
            }
            self.clients.retain(|c| !c.dead);
            self.controls.retain(|c| !c.done);
        }
        self.finish(&mut vec![0u8; READ_BUF])
    }

    fn build_poll(&self, pfds: &mut Vec<libc::pollfd>, tags: &mut Vec<Tag>) {
        pfds.clear();
        tags.clear();
        let mut add = |fd: RawFd, events: i16, tag: Tag| {
            pfds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        };
        add(self.sigfd.as_raw_fd(), libc::POLLIN, Tag::Signal);
        add(self.attach.as_raw_fd(), libc::POLLIN, Tag::AttachListener);
        add(self.control.as_raw_fd(), libc::POLLIN, Tag::ControlListener);
        if let Some(o) = &self.out {
            let mut ev = if self.out_open { libc::POLLIN } else { 0 };
            if matches!(self.stdin, StdinTarget::Pty) && !self.stdin_pending.is_empty() {
                ev |= libc::POLLOUT;
            }
            if ev != 0 {
                add(o.as_raw_fd(), ev, Tag::Out);
            }
        }
        if let Some(e) = &self.err {
            add(e.as_raw_fd(), libc::POLLIN, Tag::Err);
        }
        if let StdinTarget::Pipe(p) = &self.stdin {
            // POLLERR (reader gone) is reported even with no events asked.
            let ev = if self.stdin_pending.is_empty() {
                0
            } else {
                libc::POLLOUT
            };
            add(p.as_raw_fd(), ev, Tag::Stdin);
        }
        let stdin_busy = !self.stdin_pending.is_empty();
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = 0;
            if c.read_open && (c.hello.is_some() || !stdin_busy) {
                ev |= libc::POLLIN;
            }
            if !c.pending.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.fd.as_raw_fd(), ev, Tag::Client(i));
        }
        for (i, c) in self.controls.iter().enumerate() {
            add(c.fd.as_raw_fd(), libc::POLLIN, Tag::Control(i));
        }
    }

    fn handle(&mut self, tag: Tag, revents: i16, buf: &mut [u8]) {
        match tag {
            Tag::Signal => {
                let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
                while let Read::Data(_) = fdio::read(self.sigfd.as_fd(), &mut info) {}
                self.reap();
            }
            Tag::AttachListener => {
                while let Ok((s, _)) = self.attach.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            fd: s.into(),
                            hello: Some(Vec::new()),
                            req: AttachRequest::default(),
                            escape: Default::default(),
                            pending: Vec::new(),
                            read_open: true,
                            dead: false,
                        });
                    }
                }
            }
            Tag::ControlListener => {
                while let Ok((s, _)) = self.control.accept() {
                    if s.set_nonblocking(true).is_ok() {
                        self.controls.push(Control {
                            fd: s.into(),
                            line: Vec::new(),
                            done: false,
                        });
                    }
                }
            }
            Tag::Out => {
                if revents & libc::POLLOUT != 0 {
                    self.flush_stdin();
                }
                if revents & !libc::POLLOUT != 0 {
                    self.read_output(Stream::Stdout, buf);
                }
            }
            Tag::Err => {
                self.read_output(Stream::Stderr, buf);
            }
            Tag::Stdin => {
                if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    // Nobody reads the container's stdin any more.
                    self.stdin = StdinTarget::None;
                    self.stdin_pending = Vec::new();
                } else {
                    self.flush_stdin();
                }
            }
            Tag::Client(i) => self.client_event(i, revents, buf),
            Tag::Control(i) => self.control_event(i, buf),
        }
    }

    /// Reaps every exited child; notes the init's status.
    fn reap(&mut self) {
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                if pid < 0
                    && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
                    && self.status.is_none()
                {
                    eprintln!("silo-monitor: init {} is not our child", self.init_pid);
                    self.status = Some(255 << 8);
                }
                return;
            }
            if pid == self.init_pid {
                self.status = Some(st);
            }
        }
    }

    /// Reads once from a stream; false when nothing more can come now.
    fn read_output(&mut self, stream: Stream, buf: &mut [u8]) -> bool {
        let fd = match stream {
            Stream::Stdout if self.out_open => self.out.as_ref(),
            Stream::Stdout => None,
            Stream::Stderr => self.err.as_ref(),
        };
        let Some(fd) = fd else { return false };
        match fdio::read(fd.as_fd(), buf) {
            Read::Data(n) => {
                self.output(stream, &buf[..n]);
                true
            }
            Read::WouldBlock => false,
            Read::Eof | Read::Failed(_) => {
                self.close_output(stream);
                false
            }
        }
    }

    fn close_output(&mut self, stream: Stream) {
        let log = &mut self.log;
        let time = now();
        self.split[stream as usize].flush(|rec| log.write(stream, rec, &time));
        match stream {
            Stream::Stdout => {
                self.out_open = false;
                if !self.tty {
                    self.out = None;
                }
            }
            Stream::Stderr => self.err = None,
        }
    }

    fn output(&mut self, stream: Stream, data: &[u8]) {
        let time = now();
        let log = &mut self.log;
        self.split[stream as usize].feed(data, |rec| log.write(stream, rec, &time));
        let header = silo_sys::frame::header(stream.frame_stream(), data.len());
        for c in &mut self.clients {
            let wants = match stream {
                Stream::Stdout => c.req.stdout,
                Stream::Stderr => c.req.stderr,
            };
            if c.hello.is_some() || !wants || c.dead {
                continue;
            }
            if !self.tty {
                c.pending.extend_from_slice(&header);
            }
            c.pending.extend_from_slice(data);
            flush_client(c);
        }
    }

    fn flush_stdin(&mut self) {
        let fd = match &self.stdin {
            StdinTarget::Pipe(p) => Some(p.as_fd()),
            StdinTarget::Pty => self.out.as_ref().map(|o| o.as_fd()),
            StdinTarget::None => None,
        };
        if let Some(fd) = fd {
            match fdio::write_some(fd, &self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(_) => {
                    self.stdin_pending.clear();
                    if matches!(self.stdin, StdinTarget::Pipe(_)) {
                        self.stdin = StdinTarget::None;
                    }
                }
            }
        } else {
            self.stdin_pending.clear();
        }
        if self.stdin_pending.capacity() > READ_BUF && self.stdin_pending.is_empty() {
            self.stdin_pending = Vec::new();
        }
        if self.stdin_pending.is_empty() && self.close_stdin {
            if let StdinTarget::Pipe(_) = self.stdin {
                self.stdin = StdinTarget::None;
            }
            self.close_stdin = false;
        }
    }

    fn client_event(&mut self, i: usize, revents: i16, buf: &mut [u8]) {
        if revents & libc::POLLOUT != 0 {
            flush_client(&mut self.clients[i]);
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
            && self.clients[i].read_open
        {
            let fd = self.clients[i].fd.as_fd();
            match fdio::read(fd, buf) {
                Read::Data(n) => self.client_input(i, &buf[..n]),
                Read::WouldBlock => {}
                Read::Eof | Read::Failed(_) => {
                    let c = &mut self.clients[i];
                    c.read_open = false;
                    if c.hello.is_some() {
                        c.dead = true;
                    } else if c.req.stdin {
                        // StdinOnce: the attached stdin ended, so does the container's.
                        self.close_stdin = true;
                        self.flush_stdin();
                    }
                }
            }
        }
        let c = &mut self.clients[i];
        if revents & libc::POLLERR != 0 || (revents & libc::POLLHUP != 0 && !c.read_open) {
            c.dead = true;
        }
    }

    fn client_input(&mut self, i: usize, data: &[u8]) {
        let c = &mut self.clients[i];
        let data = if let Some(hello) = &mut c.hello {
            let Some(nl) = data.iter().position(|b| *b == b'\n') else {
                hello.extend_from_slice(data);
                if hello.len() > MAX_REQUEST {
                    c.dead = true;
                }
                return;
            };
            hello.extend_from_slice(&data[..nl]);
            match serde_json::from_slice::<AttachRequest>(hello) {
                Ok(req) => {
                    c.escape = silo_sys::escape::Escape::new(req.detach_keys.clone());
                    c.req = req;
                    c.hello = None;
                }
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
            &data[nl + 1..]
        } else {
            data
        };
        if !c.req.stdin || data.is_empty() {
            return;
        }
        let mut pass = Vec::new();
        if c.escape.feed(data, &mut pass) {
            // Detached: the client goes, the container's stdin stays open.
            c.req.stdin = false;
            c.dead = true;
        }
        if !pass.is_empty() && !matches!(self.stdin, StdinTarget::None) {
            self.stdin_pending.extend_from_slice(&pass);
            self.flush_stdin();
        }
    }

    fn control_event(&mut self, i: usize, buf: &mut [u8]) {
        let fd = self.controls[i].fd.as_fd();
        let line = match fdio::read(fd, buf) {
            Read::Data(n) => {
                let c = &mut self.controls[i];
                c.line.extend_from_slice(&buf[..n]);
                match c.line.iter().position(|b| *b == b'\n') {
                    Some(nl) => {
                        c.line.truncate(nl);
                        std::mem::take(&mut c.line)
                    }
                    None if c.line.len() > MAX_REQUEST => {
                        c.done = true;
                        return;
                    }
                    None => return,
                }
            }
            Read::WouldBlock => return,
            Read::Eof | Read::Failed(_) => {
                let c = &mut self.controls[i];
                if c.line.is_empty() {
                    c.done = true;
                    return;
                }
                std::mem::take(&mut c.line)
            }
        };
        let answer = ControlReply::line(self.command(&line));
        let c = &mut self.controls[i];
        let _ = fdio::write_some(c.fd.as_fd(), answer.as_bytes());
        c.done = true;
    }

    fn command(&mut self, line: &[u8]) -> Result<(), String> {
        let req: ControlRequest =
            serde_json::from_slice(line).map_err(|e| format!("bad control request: {e}"))?;
        if req.resize.is_none() && req.signal.is_none() && !req.reopen_log {
            return Err(
                "bad control request: expected \"resize\", \"signal\" or \"reopen_log\"".into(),
            );
        }
        if req.reopen_log {
            self.log.reopen()?;
        }
        if let Some(r) = req.resize {
            let master = match (&self.stdin, &self.out, self.tty) {
                (_, Some(m), true) => m,
                _ => {
                    return Err(
                        "resize: the container has no terminal (started without --tty)".into(),
                    )
                }
            };
            let ws = rustix::termios::Winsize {
                ws_row: r.height,
                ws_col: r.width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            rustix::termios::tcsetwinsize(master, ws)
                .map_err(|e| format!("resize to {}x{}: {e}", r.height, r.width))?;
        }
        if let Some(sig) = req.signal {
            if self.status.is_some() {
                return Err(format!(
                    "signal {sig}: the container's init {} has exited",
                    self.init_pid
                ));
            }
            // SAFETY: kill(2) of our own child, which has not been reaped.
            if unsafe { libc::kill(self.init_pid, sig) } != 0 {
                return Err(format!(
                    "signal {sig} to init {}: {}",
                    self.init_pid,
                    io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }

    /// Gives up after a start that could not be completed: kills and
    /// removes the container and the sockets.
    pub fn abort(mut self) {
        if let Some(sys) = self.system() {
            let _ = sys.delete(true);
        }
        self.reap();
        let _ = std::fs::remove_file(self.state_dir.join(ATTACH_SOCK));
        let _ = std::fs::remove_file(self.state_dir.join(CONTROL_SOCK));
        if let Some(r) = self.log.reserve().take() {
            r.release();
        }
    }

    /// Records the exit, removes the container and says goodbye to clients.
    fn finish(mut self, buf: &mut [u8]) -> i32 {
        let status = self.status.unwrap_or(255 << 8);
        let code = silo_compute::exit_code(status);
        let mut sys = self.system();
        let oom_killed = sys
            .as_ref()
            .and_then(|s| s.stats().ok())
            .is_some_and(|st| st.memory.oom_kills > 0);
        // Kill whatever is left (no pid namespace: orphans may hold the pipes).
        if let Some(job) = sys.as_ref().and_then(|s| s.job().ok()) {
            let _ = job.signal_all(libc::SIGKILL);
        }
        // Drain what is still buffered in the pipes, without waiting.
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut rounds = 0;
            while rounds < 256 && self.read_output(stream, buf) {
                rounds += 1;
            }
            let log = &mut self.log;
            let time = now();
            self.split[stream as usize].flush(|rec| log.write(stream, rec, &time));
        }
        let exit = ExitInfo {
            exit_code: i64::from(code),
            oom_killed,
            finished_at: now(),
        };
        let path = self.state_dir.join(EXIT_FILE);
        if let Err(e) = files::write_json(&path, &exit, Some(self.log.reserve())) {
            eprintln!("silo-monitor: writing {}: {e}", path.display());
        }
        if let Some(mut s) = sys.take() {
            if let Err(e) = s.mark_stopped() {
                eprintln!("silo-monitor: marking container stopped: {e}");
            }
            if let Err(e) = s.delete(true) {
                eprintln!("silo-monitor: deleting container: {e}");
            }
        }
        self.reap();
        for c in &mut self.clients {
            // Let slow clients take the tail of the output, for a moment.
            let deadline = Instant::now() + Duration::from_millis(500);
            while !c.pending.is_empty() && !c.dead && Instant::now() < deadline {
                flush_client(c);
                if !c.pending.is_empty() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = rustix::net::shutdown(&c.fd, rustix::net::Shutdown::Write);
        }
        self.clients.clear();
        let _ = std::fs::remove_file(self.state_dir.join(ATTACH_SOCK));
        let _ = std::fs::remove_file(self.state_dir.join(CONTROL_SOCK));
        if let Some(r) = self.log.reserve().take() {
            r.release();
        }
        code
    }
}

fn flush_client(c: &mut Client) {
    match fdio::write_some(c.fd.as_fd(), &c.pending) {
        Ok(n) => {
            c.pending.drain(..n);
        }
        Err(_) => {
            c.dead = true;
            c.pending = Vec::new();
            return;
        }
    }
    if c.pending.len() > CLIENT_BACKLOG {
        c.dead = true;
        c.pending = Vec::new();
    } else if c.pending.is_empty() && c.pending.capacity() > READ_BUF {
        c.pending = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Resize;

    #[test]
    fn requests_parse() {
        let a: AttachRequest = serde_json::from_str(r#"{"stdin":true,"stdout":true}"#).unwrap();
        assert!(a.stdin && a.stdout && !a.stderr && !a.logs);
        let c: ControlRequest =
            serde_json::from_str(r#"{"resize":{"height":40,"width":100}}"#).unwrap();
        assert_eq!(
            c.resize,
            Some(Resize {
                height: 40,
                width: 100
            })
        );
        assert!(serde_json::from_str::<ControlRequest>(r#"{"bogus":1}"#).is_err());
    }
}

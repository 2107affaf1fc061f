//! Test scaffolding shared by the integration tests of silod and of the
//! silo CLI: it exists so that one copy of the busybox image tar, the
//! private silod and the client wrappers serves both suites, instead of two
//! copies drifting apart.
//!
//! A [`Daemon`] is a silod on a temporary socket, data root and exec root,
//! with its log in the same temporary directory; dropping it removes its
//! containers, stops it and unmounts anything left below the directory.
//! silod's path is a parameter because only the silod crate's own tests get
//! it from Cargo (`CARGO_BIN_EXE_silod`); silo-monitor and silo-runtime are
//! taken from the same directory (see [`sibling`]). Dev-dependency only.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The docker CLI the tests drive.
pub const DOCKER: &str = "/usr/local/bin/docker";

/// How long silod may take to listen on its socket.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary `name` in the directory of `bin` (silo-monitor and
/// silo-runtime next to silod in the target dir); panics naming the build
/// command when it is missing.
pub fn sibling(bin: &Path, name: &str) -> PathBuf {
    let path = bin.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p silod -p silo-monitor -p silo-runtime)",
        path.display()
    );
    path
}

/// A tar of the busybox rootfs (scripts/mkrootfs.sh), built once per
/// content of its inputs and kept in the target dir, so test binaries share
/// it and nothing is left in /tmp. Concurrent builders each write a
/// temporary file and rename it into place.
pub fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let scripts = repo_root().join("scripts");
        let mut inputs = DefaultHasher::new();
        for f in ["mkrootfs.sh", "silo-check"] {
            std::fs::read(scripts.join(f))
                .unwrap_or_else(|e| panic!("read scripts/{f}: {e}"))
                .hash(&mut inputs);
        }
        if let Ok(m) = std::fs::metadata("/bin/busybox") {
            (m.len(), m.modified().ok()).hash(&mut inputs);
        }
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => PathBuf::from(t),
            None => repo_root().join("target"),
        };
        std::fs::create_dir_all(&target).expect("create the target dir");
        let tar = target.join(format!("silo-test-busybox-{:016x}.tar", inputs.finish()));
        if tar.exists() {
            return tar;
        }
        let dir = tempfile::tempdir_in(&target).expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        let st = Command::new("bash")
            .arg(scripts.join("mkrootfs.sh"))
            .arg(&rootfs)
            .status()
            .expect("run mkrootfs.sh");
        assert!(st.success(), "mkrootfs.sh failed");
        let tmp = dir.path().join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tmp)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success(), "tar failed");
        std::fs::rename(&tmp, &tar)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), tar.display()));
        tar
    })
}

/// A command's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

mod registry;
pub use registry::{Fault, Proxy, Registry};

/// The command-line client a [`Daemon`] is driven with.
#[derive(Clone, Debug)]
pub enum Cli {
    /// The docker CLI at [`DOCKER`], pointed at the daemon with `DOCKER_HOST`.
    Docker,
    /// The silo CLI at this path, pointed at the daemon with `-H`.
    Silo(PathBuf),
}

impl Cli {
    /// `timeout 60 <client>` aimed at `host` (`unix://...`); add the
    /// arguments.
    pub fn command(&self, host: &str) -> Command {
        let mut c = Command::new("timeout");
        c.arg("60");
        match self {
            Cli::Docker => {
                c.arg(DOCKER).env("DOCKER_HOST", host);
            }
            Cli::Silo(bin) => {
                c.arg(bin).arg("-H").arg(host);
            }
        }
        c
    }

    fn name(&self) -> &'static str {
        match self {
            Cli::Docker => "docker",
            Cli::Silo(_) => "silo",
        }
    }
}

/// A private silod: socket, data root, exec root and log in one temporary
/// directory.
pub struct Daemon {
    dir: tempfile::TempDir,
    silod: PathBuf,
    cli: Cli,
    child: Option<Child>,
    /// Extra silod flags (registry mirrors, insecure registries...).
    extra: Vec<String>,
    /// Run silod in a network namespace of its own (loopback up), so what
    /// it does to the network never touches the host's.
    private_netns: bool,
}

impl Daemon {
    /// Starts silod (the binary at `silod`) in a network namespace of its
    /// own (so the default network's bridge, veths and nftables rules never
    /// touch the host's) and waits until it listens.
    pub fn start(silod: &Path, cli: Cli) -> Daemon {
        Self::start_in_netns(silod, cli)
    }

    /// Like [`Daemon::start`], with silod in a network namespace of its own.
    pub fn start_in_netns(silod: &Path, cli: Cli) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon {
            dir,
            silod: silod.to_path_buf(),
            cli,
            child: None,
            extra: Vec::new(),
            private_netns: true,
        };
        d.spawn();
        d
    }

    /// [`Daemon::start_in_netns`] with extra silod flags.
    pub fn start_in_netns_with(silod: &Path, cli: Cli, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon {
            dir,
            silod: silod.to_path_buf(),
            cli,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            private_netns: true,
        };
        d.spawn();
        d
    }

    /// The pinned file of silod's network namespace.
    pub fn netns_file(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    /// Runs `args` in silod's network namespace (for checks of its links).
    pub fn in_netns(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.netns_file().display()))
            .args(args)
            .output()
            .expect("nsenter (util-linux)")
    }

    /// silod in the host's network namespace with extra flags: for tests
    /// that need the host's loopback (a registry on 127.0.0.1). Their
    /// containers must use `--network none` (or host), never the default
    /// network, which would make its bridge on the host.
    pub fn start_with(silod: &Path, cli: Cli, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon {
            dir,
            silod: silod.to_path_buf(),
            cli,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            private_netns: false,
        };
        d.spawn();
        d
    }

    /// Starts silod again on the same directories (after [`Daemon::kill9`]
    /// or [`Daemon::terminate`]) and waits until it listens.
    pub fn spawn(&mut self) {
        if let Err(e) = self.launch() {
            panic!("{e}; log:\n{}", self.log());
        }
    }

    /// Stops silod with SIGTERM and starts it again.
    pub fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "silod is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("silod.log"))
            .map_err(|e| format!("open silod.log: {e}"))?;
        let mut cmd = if self.private_netns {
            // One namespace for every run of this daemon (a restart must
            // find its containers' links), pinned at <dir>/netns; nsenter
            // execs, so the pid stays silod's.
            let ns = self.netns_file();
            if !ns.exists() {
                std::fs::File::create(&ns)
                    .map_err(|e| format!("creating {}: {e}", ns.display()))?;
                let st = Command::new("unshare")
                    .arg(format!("--net={}", ns.display()))
                    .args(["ip", "link", "set", "lo", "up"])
                    .status()
                    .map_err(|e| format!("unshare: {e}"))?;
                if !st.success() {
                    return Err(format!("unshare --net={} failed", ns.display()));
                }
            }
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg(&self.silod);
            c
        } else {
            Command::new(&self.silod)
        };
        let child = cmd
            .arg("-H")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--monitor")
            .arg(sibling(&self.silod, "silo-monitor"))
            .arg("--runtime")
            .arg(sibling(&self.silod, "silo-runtime"))
            .arg("--log-level")
            .arg("debug")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.silod.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while Instant::now() < deadline {
            if UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("silod did not listen within {LISTEN_TIMEOUT:?}"))
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("silod.sock")
    }

    /// `unix://<socket>`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }

    /// silod's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// silod's stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("silod.log")).unwrap_or_default()
    }

    /// Sets the environment the docker CLI needs to talk to this daemon
    /// (for commands that wrap it, like `script`).
    pub fn client_env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
    }

    /// The client (60 s limit) aimed at this daemon; add the arguments.
    pub fn command(&self) -> Command {
        let mut c = self.cli.command(&self.host());
        self.client_env(&mut c);
        c
    }

    /// Runs the client with `args`, stdin empty.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.cli.name()))
    }

    /// Runs the client and requires success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({:?}): stdout {:?} stderr {:?}\nsilod log:\n{}",
            self.cli.name(),
            out.status,
            stdout(&out),
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }

    /// Runs the client with `input` on stdin.
    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.cli.name()));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("wait for the client")
    }

    /// Imports the busybox rootfs as `busybox:latest`.
    pub fn import_busybox(&self) {
        let tar = rootfs_tar().to_str().expect("utf-8 path").to_string();
        let id = self.ok(&["import", &tar, "busybox:latest"]);
        assert!(id.trim().starts_with("sha256:"), "import printed {id:?}");
    }

    /// A raw HTTP/1.1 request on the socket; returns (status line +
    /// headers, body).
    pub fn http(&self, method: &str, path: &str) -> (String, String) {
        self.http_body(method, path, "")
    }

    /// Like [`Daemon::http`] with a JSON body.
    pub fn http_body(&self, method: &str, path: &str, body: &str) -> (String, String) {
        let mut s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: silod\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read response");
        match raw.split_once("\r\n\r\n") {
            Some((head, body)) => (head.to_string(), body.to_string()),
            None => (raw, String::new()),
        }
    }

    /// SIGKILL to silod, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to silod; SIGKILL if it has not exited after 10 s.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A test that failed while silod was down may have left containers
        // running: bring silod back to remove them.
        let left = std::fs::read_dir(self.data_root().join("containers"))
            .map(|mut rd| rd.next().is_some())
            .unwrap_or(false);
        if self.child.is_none() && left {
            let _ = self.launch();
        }
        if self.child.is_some() {
            let ids = self.cli(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.cli(&["rm", "-f", id]);
            }
            self.terminate();
        }
        // Unmount anything left under the temp dir (deepest first).
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

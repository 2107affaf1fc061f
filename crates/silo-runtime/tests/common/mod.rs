//! Shared harness for the runtime integration tests: builds the busybox rootfs
//! template once, makes throwaway bundles, drives the runtime binary under test
//! (silo-runtime, or any runc-compatible binary named by `SILO_TEST_RUNTIME`), and
//! checks that nothing (cgroups, state, mounts, processes) is left behind.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![allow(dead_code)]

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Default time any single runtime invocation may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime binary under test.
pub fn runtime_path() -> PathBuf {
    match std::env::var_os("SILO_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_silo-runtime")),
    }
}

/// True when the runtime under test is runc itself (used to gate assertions on
/// silo-specific output formats and to skip the differential test).
pub fn is_runc() -> bool {
    runtime_path().file_name() == Some(OsStr::new("runc"))
}

/// Path to the reference runc binary (for differential tests).
pub fn runc_path() -> PathBuf {
    for p in ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("runc")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => repo_root().join("target"),
    }
}

/// Builds (once per content of the scripts) and returns the rootfs template at
/// `target/silo-test-rootfs`. Concurrent test binaries serialize on a `flock`.
pub fn rootfs_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let target = target_dir();
        fs::create_dir_all(&target).expect("create target dir");
        let dir = target.join("silo-test-rootfs");
        let lock = File::create(target.join("silo-test-rootfs.lock")).expect("create lock file");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        let scripts = repo_root().join("scripts");
        let mut stamp = fs::read(scripts.join("mkrootfs.sh")).expect("read scripts/mkrootfs.sh");
        stamp.extend(fs::read(scripts.join("silo-check")).expect("read scripts/silo-check"));
        stamp.extend(
            fs::metadata("/bin/busybox")
                .map(|m| m.len().to_le_bytes().to_vec())
                .unwrap_or_default(),
        );
        let stamp_path = target.join("silo-test-rootfs.stamp");
        if fs::read(&stamp_path).ok().as_deref() != Some(&stamp[..])
            || !dir.join("bin/busybox").exists()
        {
            let out = Command::new("bash")
                .arg(scripts.join("mkrootfs.sh"))
                .arg(&dir)
                .output()
                .expect("spawn mkrootfs.sh");
            assert!(
                out.status.success(),
                "mkrootfs.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            fs::write(&stamp_path, &stamp).expect("write rootfs stamp");
        }
        drop(lock);
        dir
    })
}

/// `runc spec`'s default config.json, with `terminal: false`, a writable rootfs and
/// the given process args.
pub fn default_config(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Docker's default capability set (CapEff 0x00000000a80425fb).
pub const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A throwaway OCI bundle: a tempdir with a private copy of the rootfs template and
/// a config.json written from `config` by [`Bundle::write_config`].
pub struct Bundle {
    dir: TempDir,
    config: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let template = rootfs_template();
        let dir = tempfile::Builder::new()
            .prefix("silo-bundle-")
            .tempdir()
            .expect("bundle tempdir");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(dir.path().join("rootfs"))
            .status()
            .expect("spawn cp");
        assert!(st.success(), "copying the rootfs template failed");
        let b = Bundle {
            dir,
            config: default_config(args),
        };
        b.write_config();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Mutable access to the config; call [`Bundle::write_config`] (or create a
    /// container through [`Runtime::container`]) afterwards.
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    pub fn write_config(&self) {
        let text = serde_json::to_vec_pretty(&self.config).expect("serialize config");
        fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }

    /// Where the init's stdout/stderr go for create and detached runs.
    pub fn stdout_log(&self) -> PathBuf {
        self.dir.path().join("init.stdout")
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.path().join("init.stderr")
    }
}

/// Runs `cmd` to completion, capturing output, failing the test after `timeout`.
pub fn output_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r.unwrap_or_else(|e| panic!("wait {desc}: {e}")),
        Err(_) => {
            // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{desc} did not finish within {timeout:?}");
        }
    }
}

/// Runs `cmd` with stdio going to files (so that processes which outlive the
/// command, like a created container's init, cannot hold our pipes open).
pub fn output_to_files(mut cmd: Command, out: &Path, err: &Path, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let o = File::create(out).expect("create stdout file");
    let e = File::create(err).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let status = wait_timeout(&mut child, timeout)
        .unwrap_or_else(|| panic!("{desc} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: fs::read(out).unwrap_or_default(),
        stderr: fs::read(err).unwrap_or_default(),
    }
}

/// Waits for a child up to `timeout`; kills it and returns None on timeout.
pub fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Panics with the command's stderr unless it succeeded.
#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Asserts a command failed and its stderr contains every one of `words`.
#[track_caller]
pub fn assert_fails_with(o: &Output, what: &str, words: &[&str]) {
    assert!(
        !o.status.success(),
        "{what} succeeded; stdout: {}",
        stdout(o)
    );
    let err = stderr(o);
    for w in words {
        assert!(err.contains(w), "{what}: stderr lacks {w:?}: {err}");
    }
}

/// Parses silo-check's `key=value` lines.
pub fn parse_check(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container id unique across concurrently running test binaries.
pub fn unique_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xffff)
}

/// The runtime under test with its own private `--root` state directory.
#[derive(Clone)]
pub struct Runtime {
    bin: PathBuf,
    root: Arc<TempDir>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        Self::with_binary(runtime_path())
    }

    pub fn with_binary(bin: PathBuf) -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("silo-root-")
            .tempdir_in("/run")
            .or_else(|_| tempfile::Builder::new().prefix("silo-root-").tempdir())
            .expect("runtime root tempdir");
        Runtime {
            bin,
            root: Arc::new(root),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command for the runtime with `--root <private dir>` already added.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).stdin(Stdio::null());
        c
    }

    /// Runs `<runtime> --root R args...` and captures its output.
    pub fn exec_args<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd();
        c.args(args);
        output_timeout(c, CMD_TIMEOUT)
    }

    /// Writes the bundle's config (with a per-container cgroupsPath) and returns a
    /// guard that force-deletes the container when dropped.
    pub fn container(&self, bundle: &mut Bundle) -> Container {
        let id = unique_id("silo");
        bundle.config_mut()["linux"]["cgroupsPath"] = json!(format!("/silo-test-{id}"));
        bundle.write_config();
        Container {
            rt: self.clone(),
            id,
            bundle: bundle.path().to_path_buf(),
        }
    }

    /// `list --format json` parsed (runc prints `null` when empty).
    pub fn list_json(&self) -> Vec<Value> {
        let o = self.exec_args(["list", "--format", "json"]);
        assert_ok(&o);
        match serde_json::from_slice::<Value>(&o.stdout) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) => Vec::new(),
            other => panic!("list --format json gave {other:?}: {}", stdout(&o)),
        }
    }
}

/// One container of a [`Runtime`]; `delete --force` on drop.
pub struct Container {
    pub rt: Runtime,
    pub id: String,
    pub bundle: PathBuf,
}

impl Container {
    pub fn cgroups_path(&self) -> String {
        format!("/silo-test-{}", self.id)
    }

    fn logs(&self) -> (PathBuf, PathBuf) {
        (
            self.bundle.join("init.stdout"),
            self.bundle.join("init.stderr"),
        )
    }

    /// Foreground `run` with output captured (the init's stdio is the runtime's).
    pub fn run(&self) -> Output {
        self.run_with(&[])
    }

    pub fn run_with(&self, extra: &[&str]) -> Output {
        let mut c = self.rt.cmd();
        c.arg("run")
            .arg("--bundle")
            .arg(&self.bundle)
            .args(extra)
            .arg(&self.id);
        output_timeout(c, CMD_TIMEOUT)
    }

    /// `run --detach`; the init's stdio goes to files in the bundle.
    pub fn run_detached(&self) -> Output {
        let (o, e) = self.logs();
        let mut c = self.rt.cmd();
        c.arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(&self.id);
        output_to_files(c, &o, &e, CMD_TIMEOUT)
    }

    /// `create`; the init's stdio goes to files in the bundle.
    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    pub fn create_with(&self, extra: &[&str]) -> Output {
        let (o, e) = self.logs();
        let mut c = self.rt.cmd();
        c.arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .args(extra)
            .arg(&self.id);
        output_to_files(c, &o, &e, CMD_TIMEOUT)
    }

    /// What the init wrote to stdout (for created/detached containers).
    pub fn init_stdout(&self) -> String {
        fs::read_to_string(self.logs().0).unwrap_or_default()
    }

    pub fn start(&self) -> Output {
        self.rt.exec_args(["start", &self.id])
    }

    pub fn state_raw(&self) -> Output {
        self.rt.exec_args(["state", &self.id])
    }

    /// `state` parsed as JSON; panics if the command fails.
    pub fn state(&self) -> Value {
        let o = self.state_raw();
        assert_ok(&o);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("state JSON: {e}: {}", stdout(&o)))
    }

    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().expect("state has pid") as i32
    }

    /// Polls `state` until its status is `want` (or panics after `timeout`).
    #[track_caller]
    pub fn wait_status(&self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            // `state` may fail while the container is still being set up.
            let o = self.state_raw();
            if o.status.success() {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
                last = v["status"].as_str().unwrap_or_default().to_string();
            }
            if last == want {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("container {} stayed {last:?}, wanted {want:?}", self.id);
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.rt.exec_args(["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Output {
        self.rt.exec_args(["delete", &self.id])
    }

    pub fn delete_force(&self) -> Output {
        self.rt.exec_args(["delete", "--force", &self.id])
    }

    /// Foreground `exec ID args...` with optional runtime flags before the id.
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut c = self.rt.cmd();
        c.arg("exec").args(flags).arg(&self.id).args(args);
        output_timeout(c, CMD_TIMEOUT)
    }

    /// Asserts nothing of this container remains (see [`cleanup_check`]).
    #[track_caller]
    pub fn assert_gone(&self) {
        cleanup_check(&self.rt, &self.id, &self.cgroups_path());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let mut c = self.rt.cmd();
        c.arg("delete").arg("--force").arg(&self.id);
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Every mounted cgroup hierarchy root under /sys/fs/cgroup (v1 controllers and
/// the unified one), or /sys/fs/cgroup itself on a pure v2 host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(base) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                v.push(p);
            }
        }
    }
    v
}

/// Asserts no cgroup directory for `cgroups_path` (nor for the bare id, runc's
/// default, nor `silo/<id>`, silo's default) exists in any hierarchy, and no state directory for `id` under the
/// runtime's --root.
#[track_caller]
pub fn cleanup_check(rt: &Runtime, id: &str, cgroups_path: &str) {
    let rel = cgroups_path.trim_start_matches('/');
    for h in cgroup_hierarchies() {
        for cand in [h.join(rel), h.join(id), h.join("silo").join(id)] {
            assert!(!cand.exists(), "cgroup {} was left behind", cand.display());
        }
    }
    let state = rt.root().join(id);
    assert!(
        !state.exists(),
        "state dir {} was left behind",
        state.display()
    );
}

/// Everything a failed create must not leave behind: state, cgroups, mounts,
/// processes inside the bundle, and a `list` entry.
#[track_caller]
pub fn assert_nothing_left(c: &Container, bundle: &Bundle) {
    c.assert_gone();
    let mounts = mounts_under(bundle.path());
    assert!(
        mounts.is_empty(),
        "mounts left under the bundle: {mounts:?}"
    );
    let procs = processes_in(bundle.path());
    assert!(
        procs.is_empty(),
        "processes left inside the bundle: {procs:?}"
    );
    let listed = c.rt.list_json();
    assert!(
        !listed.iter().any(|e| e["id"] == json!(c.id)),
        "{} still listed: {listed:?}",
        c.id
    );
}

/// Mount points in this (the host's) mount table whose path is under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|mp| mp.starts_with(&prefix))
        .collect()
}

/// Pids of processes whose root or cwd is inside `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            for link in ["root", "cwd"] {
                if let Ok(t) = fs::read_link(e.path().join(link)) {
                    if t.starts_with(dir) {
                        v.push(pid);
                        break;
                    }
                }
            }
        }
    }
    v
}

/// Whether a pid exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => !s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// Field of /proc/<pid>/status (e.g. "State", "Uid").
pub fn proc_status_field(pid: i32, field: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

/// A console socket: listens on a unix socket, receives one pty master fd via
/// SCM_RIGHTS and then collects everything read from it until the slave closes.
pub struct ConsoleSocket {
    pub path: PathBuf,
    _dir: TempDir,
    handle: thread::JoinHandle<Result<String, String>>,
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let dir = tempfile::Builder::new()
            .prefix("silo-console-")
            .tempdir()
            .expect("console tempdir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        let handle = thread::spawn(move || receive_and_read(listener));
        ConsoleSocket {
            path,
            _dir: dir,
            handle,
        }
    }

    /// Waits for the pty output (what the container wrote to its terminal).
    pub fn output(self) -> Result<String, String> {
        self.handle
            .join()
            .map_err(|_| "console thread panicked".to_string())?
    }
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

fn receive_and_read(listener: UnixListener) -> Result<String, String> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::io::IoSliceMut;
    use std::mem::MaybeUninit;

    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 256];
    recvmsg(
        stream.as_fd(),
        &mut [IoSliceMut::new(&mut name)],
        &mut cmsg,
        RecvFlags::empty(),
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let mut master: Option<OwnedFd> = None;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                master.get_or_insert(fd);
            }
        }
    }
    let master = master.ok_or("no fd received over the console socket")?;
    let mut f = File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // EIO: every slave fd is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => return Err(format!("read pty: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

//! End-to-end tests of the silo-monitor binary with real containers: a
//! busybox rootfs, `--detach`, exit.json, the json-file log, attach and
//! control sockets, tty resize, OOM, a full disk, and the idle footprint.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A busybox rootfs built once (scripts/mkrootfs.sh), shared read-only.
fn rootfs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let dir = target.join("silo-monitor-rootfs");
        fs::create_dir_all(&target).unwrap();
        let lock = fs::File::create(target.join("silo-monitor-rootfs.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        if !dir.join("bin/busybox").exists() {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/mkrootfs.sh"))
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// The binary under test: `SILO_MONITOR_BIN` (e.g. target/release/silo-monitor)
/// or the one cargo built for this test run.
fn monitor_bin() -> PathBuf {
    match std::env::var_os("SILO_MONITOR_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_silo-monitor")),
    }
}

fn spec(args: &[&str], tty: bool) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/"
        },
        "root": {"path": rootfs(), "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755", "size=1024k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "mount"}, {"type": "pid"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "network"}
            ]
        }
    })
}

/// One container under one monitor, with its own dirs; cleans up on drop.
struct Ctr {
    _tmp: TempDir,
    id: String,
    bundle: PathBuf,
    root: PathBuf,
    state: PathBuf,
    init_pid: i32,
}

impl Ctr {
    fn new(config: Value) -> Ctr {
        Self::with_state(config, None)
    }

    fn with_state(config: Value, state: Option<PathBuf>) -> Ctr {
        static N: AtomicU32 = AtomicU32::new(0);
        let tmp = tempfile::tempdir().unwrap();
        let id = format!(
            "mon-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let bundle = tmp.path().join("bundle");
        fs::create_dir(&bundle).unwrap();
        fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        Ctr {
            root: tmp.path().join("root"),
            state: state.unwrap_or_else(|| tmp.path().join("state")),
            _tmp: tmp,
            id,
            bundle,
            init_pid: 0,
        }
    }

    /// Spawns the monitor with `extra` (stdout piped) and waits until its
    /// attach socket exists.
    fn spawn_waiting(&self, extra: &[&str]) -> std::process::Child {
        let child = self
            .command(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let sock = self.state.join("attach.sock");
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < end, "attach.sock never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// A `--detach` monitor exits successfully and prints the init pid.
    fn detached(&mut self, mut child: std::process::Child) {
        assert!(child.wait().unwrap().success());
        let mut pid = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut pid)
            .unwrap();
        self.init_pid = pid.trim().parse().unwrap();
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(monitor_bin());
        c.arg("--runtime-root")
            .arg(&self.root)
            .args(["--id", &self.id, "--bundle"])
            .arg(&self.bundle)
            .arg("--state-dir")
            .arg(&self.state)
            .args(extra);
        c
    }

    /// `silo-monitor --detach`: returns once the container runs.
    fn start(&mut self, extra: &[&str]) {
        let out = self
            .command(&[&["--detach"], extra].concat())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "silo-monitor --detach failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(self.state.join("monitor.log")).unwrap_or_default()
        );
        self.init_pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(self.init_pid > 0);
    }

    fn monitor_info(&self) -> Value {
        read_json(&self.state.join("monitor.json"))
    }

    fn wait_exit(&self, timeout: Duration) -> Value {
        let path = self.state.join("exit.json");
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if path.exists() {
                // The monitor finishes its clean-up right after writing it.
                let mpid = self.monitor_info()["monitor_pid"].as_i64().unwrap() as i32;
                wait_gone(mpid, Duration::from_secs(10));
                return read_json(&path);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no exit.json after {timeout:?}; monitor.log: {}",
            fs::read_to_string(self.state.join("monitor.log")).unwrap_or_default()
        );
    }

    fn log_lines(&self) -> Vec<Value> {
        fs::read_to_string(self.state.join("container-json.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
            .collect()
    }

    fn control(&self, req: &str) -> Value {
        let mut s = UnixStream::connect(self.state.join("control.sock")).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_to_string(&mut out).unwrap();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"))
    }

    fn attach(&self, req: Value) -> UnixStream {
        let mut s = UnixStream::connect(self.state.join("attach.sock")).unwrap();
        s.write_all(format!("{req}\n").as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Everything the container and monitor made is gone.
    fn assert_cleaned_up(&self) {
        assert!(!self.root.join(&self.id).exists(), "runtime state left");
        for c in ["memory", "pids", "cpu", "freezer"] {
            let p = Path::new("/sys/fs/cgroup")
                .join(c)
                .join("silo")
                .join(&self.id);
            assert!(!p.exists(), "cgroup {} left", p.display());
        }
        assert!(!self.state.join("attach.sock").exists());
        assert!(!self.state.join("control.sock").exists());
        assert!(!self.state.join(".monitor-reserve").exists());
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        if self.init_pid > 0 && !self.state.join("exit.json").exists() {
            // SAFETY: killing the test's own container init.
            unsafe { libc::kill(self.init_pid, libc::SIGKILL) };
            let end = Instant::now() + Duration::from_secs(10);
            while !self.state.join("exit.json").exists() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(v) = fs::read_to_string(self.state.join("monitor.json")) {
                if let Ok(v) = serde_json::from_str::<Value>(&v) {
                    wait_gone(
                        v["monitor_pid"].as_i64().unwrap_or(0) as i32,
                        Duration::from_secs(5),
                    );
                }
            }
        }
    }
}

fn read_json(p: &Path) -> Value {
    let s = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {s:?}: {e}", p.display()))
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let st = s[s.rfind(')').unwrap() + 2..].chars().next();
            st != Some('Z') && st != Some('X')
        })
        .unwrap_or(false)
}

fn ppid(pid: i32) -> i32 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s[s.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn wait_gone(pid: i32, timeout: Duration) {
    let end = Instant::now() + timeout;
    while pid > 0 && alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// RFC 3339 with nanoseconds in UTC, as Docker writes: 2026-11-29T12:00:00.123456789Z
fn assert_rfc3339_nano(t: &str) {
    let b = t.as_bytes();
    assert_eq!(b.len(), 30, "{t}");
    for (i, c) in b.iter().enumerate() {
        let want = match i {
            4 | 7 => Some(b'-'),
            10 => Some(b'T'),
            13 | 16 => Some(b':'),
            19 => Some(b'.'),
            29 => Some(b'Z'),
            _ => None,
        };
        match want {
            Some(w) => assert_eq!(*c, w, "{t}"),
            None => assert!(c.is_ascii_digit(), "{t}"),
        }
    }
    let month: u32 = t[5..7].parse().unwrap();
    let day: u32 = t[8..10].parse().unwrap();
    assert!((1..=12).contains(&month) && (1..=31).contains(&day), "{t}");
}

/// Reads Docker multiplexed frames until `want` has been seen in `stream`'s
/// payloads or the stream ends; returns (stream, payload) frames.
fn read_frames(s: &mut UnixStream, until: impl Fn(&[(u8, Vec<u8>)]) -> bool) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    loop {
        let mut h = [0u8; 8];
        if s.read_exact(&mut h).is_err() {
            return frames;
        }
        assert!(h[0] == 1 || h[0] == 2, "bad stream byte in {h:?}");
        assert_eq!(&h[1..4], &[0, 0, 0]);
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        frames.push((h[0], p));
        if until(&frames) {
            return frames;
        }
    }
}

#[test]
fn exit_code_log_streams_and_clean_up() {
    let mut c = Ctr::new(spec(&["sh", "-c", "echo out; echo err >&2; exit 3"], false));
    c.start(&[]);
    let exit = c.wait_exit(Duration::from_secs(20));
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["oom_killed"], false);
    assert_rfc3339_nano(exit["finished_at"].as_str().unwrap());
    let info = c.monitor_info();
    assert_eq!(info["init_pid"], c.init_pid);
    assert_eq!(info["tty"], false);
    assert_rfc3339_nano(info["started_at"].as_str().unwrap());
    let lines = c.log_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let find = |s: &str| {
        lines
            .iter()
            .find(|l| l["stream"] == s)
            .unwrap_or_else(|| panic!("{lines:?}"))
    };
    assert_eq!(find("stdout")["log"], "out\n");
    assert_eq!(find("stderr")["log"], "err\n");
    for l in &lines {
        assert_rfc3339_nano(l["time"].as_str().unwrap());
    }
    c.assert_cleaned_up();
}

#[test]
fn partial_last_line_is_logged_at_exit() {
    let mut c = Ctr::new(spec(
        &["sh", "-c", "printf 'a\\nno newline'; exit 1"],
        false,
    ));
    c.start(&[]);
    assert_eq!(c.wait_exit(Duration::from_secs(20))["exit_code"], 1);
    let lines = c.log_lines();
    let logs: Vec<&str> = lines.iter().map(|l| l["log"].as_str().unwrap()).collect();
    assert_eq!(logs, ["a\n", "no newline"]);
}

#[test]
fn restart_in_the_same_state_dir_appends_the_log_and_clears_the_old_exit() {
    let mut c = Ctr::new(spec(&["sh", "-c", "echo run; exit 2"], false));
    c.start(&[]);
    assert_eq!(c.wait_exit(Duration::from_secs(20))["exit_code"], 2);
    let mut cfg = spec(&["sleep", "1000"], false);
    cfg["process"]["args"] = json!(["sh", "-c", "echo again; exec sleep 1000"]);
    fs::write(c.bundle.join("config.json"), cfg.to_string()).unwrap();
    c.start(&[]);
    // The old exit.json is gone while the new run is alive.
    assert!(!c.state.join("exit.json").exists());
    std::thread::sleep(Duration::from_millis(200));
    let logs: Vec<String> = c
        .log_lines()
        .iter()
        .map(|l| l["log"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logs, ["run\n", "again\n"]);
    assert_eq!(c.control(r#"{"signal":9}"#), json!({"ok": true}));
    assert_eq!(c.wait_exit(Duration::from_secs(20))["exit_code"], 137);
    c.assert_cleaned_up();
}

#[test]
fn attach_gets_frames_and_control_signals() {
    let mut c = Ctr::new(spec(
        &[
            "sh",
            "-c",
            "while true; do echo tick; echo tock >&2; sleep 0.2; done",
        ],
        false,
    ));
    c.start(&[]);
    let mut both = c.attach(json!({"stdin": false, "stdout": true, "stderr": true, "logs": false}));
    let mut only_out = c.attach(json!({"stdout": true}));
    let frames = read_frames(&mut both, |f| {
        f.iter().filter(|x| x.0 == 1).count() >= 3 && f.iter().any(|x| x.0 == 2)
    });
    assert!(
        frames.iter().any(|(t, p)| *t == 1 && p == b"tick\n"),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|(t, p)| *t == 2 && p == b"tock\n"),
        "{frames:?}"
    );
    let frames = read_frames(&mut only_out, |f| f.len() >= 3);
    assert!(
        frames.iter().all(|(t, p)| *t == 1 && p == b"tick\n"),
        "{frames:?}"
    );

    // Bad requests are answered with an error naming the problem.
    let e = c.control(r#"{"resize":{"height":10,"width":20}}"#);
    assert!(e["error"].as_str().unwrap().contains("no terminal"), "{e}");
    let e = c.control(r#"{"frobnicate":1}"#);
    assert!(e["error"].as_str().unwrap().contains("frobnicate"), "{e}");

    assert_eq!(c.control(r#"{"signal":9}"#), json!({"ok": true}));
    let exit = c.wait_exit(Duration::from_secs(20));
    assert_eq!(exit["exit_code"], 137);
    // Attached clients see the end of the stream.
    let rest = read_frames(&mut both, |_| false);
    assert!(rest.len() < 100);
    let lines = c.log_lines();
    assert!(lines
        .iter()
        .any(|l| l["stream"] == "stdout" && l["log"] == "tick\n"));
    assert!(lines
        .iter()
        .any(|l| l["stream"] == "stderr" && l["log"] == "tock\n"));
    c.assert_cleaned_up();
}

#[test]
fn stdin_through_attach_and_stdin_once() {
    let mut c = Ctr::new(spec(&["cat"], false));
    c.start(&["--stdin"]);
    let mut s = c.attach(json!({"stdin": true, "stdout": true, "stderr": true}));
    s.write_all(b"hello through attach\n").unwrap();
    let frames = read_frames(&mut s, |f| f.iter().any(|x| x.1.ends_with(b"attach\n")));
    let all: Vec<u8> = frames.iter().flat_map(|f| f.1.clone()).collect();
    assert_eq!(all, b"hello through attach\n");
    // EOF on the attached stdin closes the container's stdin: cat exits 0.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let exit = c.wait_exit(Duration::from_secs(20));
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(c.log_lines()[0]["log"], "hello through attach\n");
    c.assert_cleaned_up();
}

#[test]
fn tty_resize_is_seen_inside() {
    let mut c = Ctr::new(spec(&["sh", "-c", "read x; stty size; exit 7"], true));
    c.start(&["--tty", "--stdin"]);
    assert_eq!(c.monitor_info()["tty"], true);
    let mut s = c.attach(json!({"stdin": true, "stdout": true}));
    assert_eq!(
        c.control(r#"{"resize":{"height":41,"width":123}}"#),
        json!({"ok": true})
    );
    s.write_all(b"go\n").unwrap();
    // Raw bytes with a tty: no frame headers.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("41 123") && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("41 123"), "{text:?}");
    assert_ne!(got.first(), Some(&1u8), "tty output must not be framed");
    let exit = c.wait_exit(Duration::from_secs(20));
    assert_eq!(exit["exit_code"], 7);
    let lines = c.log_lines();
    assert!(lines.iter().all(|l| l["stream"] == "stdout"), "{lines:?}");
    let logged: String = lines.iter().map(|l| l["log"].as_str().unwrap()).collect();
    assert!(logged.contains("41 123\r\n"), "{logged:?}");
    c.assert_cleaned_up();
}

fn private_kib(pid: i32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in smaps_rollup"))
    };
    (field("Private_Clean:"), field("Private_Dirty:"))
}

/// The idle monitor's private memory limit (Private_Clean + Private_Dirty):
/// 300 KiB for the release build (measured: about 250); an unoptimised
/// debug build has more code and relocations (measured: about 730).
fn idle_limit_kib(bin: &Path) -> u64 {
    if bin.components().any(|c| c.as_os_str() == "release") {
        300
    } else {
        900
    }
}

#[test]
fn detached_monitor_outlives_its_parent_and_stays_small() {
    // A freshly linked binary's page-cache pages are still dirty and would
    // count as Private_Dirty; write them back first.
    fs::File::open(monitor_bin()).unwrap().sync_all().unwrap();
    let mut c = Ctr::new(spec(&["sleep", "1000"], false));
    c.start(&[]);
    let mpid = c.monitor_info()["monitor_pid"].as_i64().unwrap() as i32;
    // The process that ran `--detach` has exited; the monitor was reparented
    // away from us and is the parent of the container's init.
    assert_ne!(ppid(mpid), std::process::id() as i32);
    assert_eq!(ppid(c.init_pid), mpid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(mpid) && alive(c.init_pid));
    let (clean, dirty) = private_kib(mpid);
    eprintln!("idle monitor private memory: clean {clean} KiB + dirty {dirty} KiB");
    let limit = idle_limit_kib(&monitor_bin());
    assert!(
        clean + dirty < limit,
        "idle monitor uses {clean} + {dirty} KiB private memory (limit {limit})"
    );
    // An attach client that goes away does not disturb it.
    drop(c.attach(json!({"stdout": true})));
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(mpid) && alive(c.init_pid));
    // SAFETY: killing our test container's init.
    unsafe { libc::kill(c.init_pid, libc::SIGKILL) };
    assert_eq!(c.wait_exit(Duration::from_secs(20))["exit_code"], 137);
    c.assert_cleaned_up();
}

#[test]
fn oom_kill_is_recorded() {
    let mut cfg = spec(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        false,
    );
    let limit = 16 * 1024 * 1024;
    cfg["linux"]["resources"] = json!({"memory": {"limit": limit, "swap": limit}});
    let mut c = Ctr::new(cfg);
    c.start(&[]);
    let exit = c.wait_exit(Duration::from_secs(30));
    assert_eq!(exit["oom_killed"], true, "{exit}");
    assert_eq!(exit["exit_code"], 137, "{exit}");
    c.assert_cleaned_up();
}

#[test]
fn full_disk_drops_log_bytes_but_keeps_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    fs::create_dir(&state).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success());
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _umount = Umount(state.clone());
    let script = "i=0; while [ $i -lt 6000 ]; do echo line-$i-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; i=$((i+1)); done; echo done >&2; exit 5";
    let mut c = Ctr::with_state(spec(&["sh", "-c", script], false), Some(state.clone()));
    c.start(&[]);
    let exit = c.wait_exit(Duration::from_secs(60));
    assert_eq!(exit["exit_code"], 5);
    let errors = read_json(&state.join("log-errors.json"));
    assert!(errors["dropped_bytes"].as_u64().unwrap() > 0, "{errors}");
    let last = errors["last_error"].as_str().unwrap();
    assert!(last.contains("space"), "{last}");
    // What did get written is still one valid JSON object per line.
    let lines = c.log_lines();
    assert!(lines.len() > 100, "{}", lines.len());
    assert_eq!(
        lines[0]["log"],
        "line-0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
    );
    c.assert_cleaned_up();
}

#[test]
fn log_rotation_keeps_max_files() {
    let script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done";
    let mut c = Ctr::new(spec(&["sh", "-c", script], false));
    c.start(&["--log-max-bytes", "4096", "--log-max-files", "3"]);
    assert_eq!(c.wait_exit(Duration::from_secs(20))["exit_code"], 0);
    let size = |n: &str| fs::metadata(c.state.join(n)).unwrap().len();
    let (cur, one, two) = (
        size("container-json.log"),
        size("container-json.log.1"),
        size("container-json.log.2"),
    );
    assert!(
        cur <= 4096 && one <= 4096 && two <= 4096,
        "{cur} {one} {two}"
    );
    assert!(one > 3000 && two > 3000, "{one} {two}");
    assert!(!c.state.join("container-json.log.3").exists());
    let last = c.log_lines().pop().unwrap();
    assert_eq!(last["log"], "line-399\n");
}

#[test]
fn bad_bundle_fails_cleanly_with_a_clear_error() {
    let mut cfg = spec(&["true"], false);
    cfg["root"]["path"] = json!("/nonexistent/rootfs");
    let c = Ctr::new(cfg);
    let out = c.command(&["--detach"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/rootfs"), "{err}");
    assert!(!c.state.join("monitor.json").exists());
    c.assert_cleaned_up();
    // Usage errors exit 2 and name the argument.
    let out = Command::new(monitor_bin())
        .args(["--id", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runtime-root"));
}

#[test]
fn terminal_in_config_without_tty_flag_is_refused() {
    let c = Ctr::new(spec(&["true"], true));
    let out = c.command(&["--detach"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("terminal"), "{err}");
    assert!(!c.state.join("monitor.json").exists());
    c.assert_cleaned_up();
}

/// `--wait-attach 1`: the container starts only once an attach client is
/// connected, so even `echo` is seen whole (how `docker run` attaches).
#[test]
fn wait_attach_sees_the_output_of_a_short_process() {
    let mut c = Ctr::new(spec(&["sh", "-c", "echo early; echo late >&2"], false));
    let child = c.spawn_waiting(&["--detach", "--wait-attach", "1"]);
    let mut s = c.attach(json!({"stdin": false, "stdout": true, "stderr": true}));
    let frames = read_frames(&mut s, |f| f.len() >= 2);
    let out: Vec<(u8, String)> = frames
        .iter()
        .map(|(k, p)| (*k, String::from_utf8_lossy(p).into_owned()))
        .collect();
    assert!(out.contains(&(1, "early\n".into())), "{out:?}");
    assert!(out.contains(&(2, "late\n".into())), "{out:?}");
    c.detached(child);
    assert_eq!(c.wait_exit(Duration::from_secs(10))["exit_code"], 0);
}

/// Nobody attaches: the monitor gives up with a clear error and leaves nothing.
#[test]
fn wait_attach_without_a_client_fails_cleanly() {
    let c = Ctr::new(spec(&["true"], false));
    let out = c
        .command(&["--detach", "--wait-attach", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned()
        + &String::from_utf8_lossy(&out.stderr)
        + &fs::read_to_string(c.state.join("monitor.log")).unwrap_or_default();
    assert!(text.contains("--wait-attach"), "{text}");
    assert!(!c.state.join("attach.sock").exists());
    assert!(!c.root.join(&c.id).exists(), "runtime state left");
}

/// Stdin sent right behind the request line (before the container exists)
/// is not lost: `echo x | docker run -i busybox cat`.
#[test]
fn wait_attach_keeps_stdin_sent_with_the_request() {
    let mut c = Ctr::new(spec(&["cat"], false));
    let child = c.spawn_waiting(&["--detach", "--stdin", "--wait-attach", "1"]);
    let sock = c.state.join("attach.sock");
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"stdin\":true,\"stdout\":true,\"stderr\":true}\npiped\n")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let frames = read_frames(&mut s, |f| !f.is_empty());
    assert_eq!(
        frames.first().map(|f| f.1.clone()),
        Some(b"piped\n".to_vec())
    );
    c.detached(child);
    assert_eq!(c.wait_exit(Duration::from_secs(10))["exit_code"], 0);
}

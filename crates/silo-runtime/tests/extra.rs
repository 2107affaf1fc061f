//! Integration tests of the runtime flags and error paths the first test files
//! left out: --systemd-cgroup without systemd, --log/--log-format, --preserve-fds,
//! --no-pivot, exec --process, streaming events, AppArmor/SELinux warnings, failing
//! createRuntime hooks, typed state errors, ps/list/update, kill --all of a paused
//! container, and the ociVersion range.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Kills and reaps a child when dropped, so a failing assertion leaves no
/// runtime process behind.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// 1. --systemd-cgroup on a host where systemd is not PID 1.

#[test]
fn systemd_cgroup_without_systemd_fails_cleanly() {
    if Path::new("/run/systemd/system").is_dir() {
        // The premise (no systemd as PID 1) does not hold on this host.
        eprintln!("systemd is running here; the no-systemd error cannot be provoked");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "echo should-not-run"]);
    let c = rt.container(&mut b);
    let mut cmd = rt.cmd();
    cmd.arg("--systemd-cgroup")
        .arg("run")
        .arg("--bundle")
        .arg(b.path())
        .arg(&c.id);
    let o = output_timeout(cmd, CMD_TIMEOUT);
    assert_fails_with(&o, "run --systemd-cgroup", &["systemd"]);
    assert!(
        !stdout(&o).contains("should-not-run"),
        "the container ran: {}",
        stdout(&o)
    );
    assert_nothing_left(&c, &b);
}

// 2. --log FILE with --log-format json and text.

fn failing_create_with_log(format: &str) -> (String, String) {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    let missing = b.path().join("missing-rootfs");
    b.config_mut()["root"]["path"] = json!(missing.to_string_lossy());
    let c = rt.container(&mut b);
    let log = b.path().join("runtime.log");
    // --log appends: an earlier line must survive.
    fs::write(&log, "earlier line\n").expect("seed log file");
    let mut cmd = rt.cmd();
    cmd.arg("--log")
        .arg(&log)
        .arg("--log-format")
        .arg(format)
        .arg("create")
        .arg("--bundle")
        .arg(b.path())
        .arg(&c.id);
    let o = output_to_files(
        cmd,
        &b.path().join("create.out"),
        &b.path().join("create.err"),
        CMD_TIMEOUT,
    );
    assert!(
        !o.status.success(),
        "create with a missing rootfs succeeded"
    );
    let text = fs::read_to_string(&log).expect("read --log file");
    assert!(
        text.starts_with("earlier line\n"),
        "--log truncated the file instead of appending: {text:?}"
    );
    assert_nothing_left(&c, &b);
    (text, missing.to_string_lossy().into_owned())
}

#[test]
fn log_file_json_gets_an_error_line() {
    let (text, missing) = failing_create_with_log("json");
    let errors: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .filter(|v: &Value| v["level"] == "error")
        .collect();
    let last = errors
        .last()
        .unwrap_or_else(|| panic!("no \"level\":\"error\" line in the log: {text}"));
    let msg = last["msg"].as_str().expect("msg is a string");
    assert!(
        msg.contains(&missing),
        "error msg does not name the rootfs {missing}: {msg}"
    );
    assert!(last["time"].is_string(), "no time in {last}");
}

#[test]
fn log_file_text_gets_level_error() {
    let (text, missing) = failing_create_with_log("text");
    let line = text
        .lines()
        .skip(1)
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("no level=error line in the log: {text}"));
    assert!(line.contains("msg="), "no msg= in {line}");
    assert!(line.contains(&missing), "{line} does not name {missing}");
}

// 3. --preserve-fds.

/// Foreground `run` of `c` with `file` opened as fd 3 of the runtime.
fn run_with_fd3(c: &Container, file: &File, extra: &[&str]) -> Output {
    let mut cmd = c.rt.cmd();
    cmd.arg("run")
        .arg("--bundle")
        .arg(&c.bundle)
        .args(extra)
        .arg(&c.id);
    let raw = file.as_raw_fd();
    // SAFETY: the closure only calls async-signal-safe dup2/fcntl on fds that
    // exist in the forked child (the file is open in the parent across spawn).
    unsafe {
        cmd.pre_exec(move || {
            if raw == 3 {
                // dup2 onto itself would keep FD_CLOEXEC; clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    output_timeout(cmd, CMD_TIMEOUT)
}

const FD3_SCRIPT: &str =
    "if [ -e /proc/$$/fd/3 ]; then echo fd3-open; cat <&3; else echo fd3-closed; fi";

#[test]
fn preserve_fds_passes_fd_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fd3.txt");
    fs::write(&data, "hello-through-fd3\n").expect("write fd3 data");
    let file = File::open(&data).expect("open fd3 data");

    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", FD3_SCRIPT]);
    let c = rt.container(&mut b);
    let o = run_with_fd3(&c, &file, &["--preserve-fds", "1"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "fd3-open\nhello-through-fd3\n");
    c.assert_gone();
}

#[test]
fn without_preserve_fds_fd_3_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fd3.txt");
    fs::write(&data, "must-not-leak\n").expect("write fd3 data");
    let file = File::open(&data).expect("open fd3 data");

    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", FD3_SCRIPT]);
    let c = rt.container(&mut b);
    let o = run_with_fd3(&c, &file, &[]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "fd3-closed\n");
    c.assert_gone();
}

// 4. create --no-pivot.

#[test]
fn create_no_pivot_then_start() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /silo-no-pivot-marker; ls /; readlink /proc/1/root",
    ]);
    fs::write(
        b.rootfs().join("silo-no-pivot-marker"),
        "marker-in-rootfs\n",
    )
    .expect("marker");
    let c = rt.container(&mut b);
    assert_ok(&c.create_with(&["--no-pivot"]));
    assert_eq!(c.status(), "created");
    assert_ok(&c.start());
    c.wait_status("stopped", WAIT);
    let out = c.init_stdout();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("marker-in-rootfs"), "output: {out}");
    let names: Vec<&str> = out.lines().collect();
    for want in ["bin", "proc", "tmp", "silo-no-pivot-marker"] {
        assert!(names.contains(&want), "ls / lacks {want}: {out}");
    }
    // The bundle's own files (config.json) are outside the container's /.
    assert!(
        !names.contains(&"config.json"),
        "bundle visible at /: {out}"
    );
    assert_eq!(out.lines().last(), Some("/"), "/proc/1/root: {out}");
    assert_ok(&c.delete());
    c.assert_gone();
}

// 5. exec --process FILE.

#[test]
fn exec_process_json() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());

    let pfile = b.path().join("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", "echo $SILO_P $(pwd) $(id -u):$(id -g); exit 7"],
        "env": ["PATH=/usr/bin:/bin", "SILO_P=from-process-json"],
        "cwd": "/tmp"
    });
    fs::write(&pfile, serde_json::to_vec(&process).expect("json")).expect("write process.json");
    let o = c.exec(&["--process", pfile.to_str().expect("utf8")], &[]);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "from-process-json /tmp 1000:1000\n");

    // A wrong type for args: the error names the file and the field.
    let bad = b.path().join("bad-process.json");
    fs::write(&bad, r#"{"args": "not-a-list", "cwd": "/"}"#).expect("write bad");
    let o = c.exec(&["--process", bad.to_str().expect("utf8")], &[]);
    assert_fails_with(
        &o,
        "exec with a malformed process.json",
        &[bad.to_str().expect("utf8"), "args"],
    );
    // Not JSON at all.
    fs::write(&bad, "{ nope").expect("write bad");
    let o = c.exec(&["--process", bad.to_str().expect("utf8")], &[]);
    assert_fails_with(
        &o,
        "exec with a non-JSON process.json",
        &[bad.to_str().expect("utf8")],
    );
    // A missing file.
    let gone = b.path().join("no-such-process.json");
    let o = c.exec(&["--process", gone.to_str().expect("utf8")], &[]);
    assert_fails_with(
        &o,
        "exec with a missing process.json",
        &[gone.to_str().expect("utf8")],
    );
    // The container is unharmed.
    assert_eq!(c.status(), "running");
    assert_ok(&c.delete_force());
    c.assert_gone();
}

// 6. Streaming events.

/// Spawns `events --interval <interval> ID`; the returned receiver yields each
/// stdout line parsed as JSON (a thread reads until EOF).
fn stream_events(c: &Container, interval: &str) -> (Reap, mpsc::Receiver<Value>) {
    let mut cmd = c.rt.cmd();
    cmd.args(["events", "--interval", interval, &c.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn events");
    let out = child.stdout.take().expect("events stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|e| json!({"unparsable": line, "error": e.to_string()}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (Reap(child), rx)
}

/// Receives events until one has `type == kind` (returning it) or `timeout` passes.
fn wait_event(rx: &mpsc::Receiver<Value>, kind: &str, timeout: Duration) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(v) if v["type"] == kind => return Some(v),
            Ok(v) => assert!(v.get("unparsable").is_none(), "events printed {v}"),
            Err(_) => return None,
        }
    }
}

#[test]
fn events_reports_pids_limit_hits() {
    let rt = Runtime::new();
    // The forks start only once the test has created /go, after `events` runs.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "while [ ! -e /go ]; do sleep 0.1; done; \
         for i in 1 2 3 4 5 6 7 8; do sleep 10 & done; wait",
    ]);
    b.config_mut()["linux"]["resources"]["pids"] = json!({"limit": 5});
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let (_events, rx) = stream_events(&c, "200ms");
    // The first line proves `events` has taken its baseline.
    assert!(
        wait_event(&rx, "stats", WAIT).is_some(),
        "no stats event before the fork storm"
    );
    fs::write(b.rootfs().join("go"), "").expect("create /go");
    let ev = wait_event(&rx, "pids.limit", Duration::from_secs(15))
        .expect("no pids.limit event after forks beyond the limit");
    assert_eq!(ev["id"], json!(c.id), "{ev}");
    assert_eq!(ev["data"]["limit"].as_u64(), Some(5), "{ev}");
    assert_ok(&c.delete_force());
    c.assert_gone();
}

#[test]
fn events_streams_stats_and_exits_on_delete() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let (mut events, rx) = stream_events(&c, "200ms");
    let start = Instant::now();
    let mut stats = 0;
    while stats < 4 {
        let ev = wait_event(&rx, "stats", Duration::from_secs(3))
            .unwrap_or_else(|| panic!("only {stats} stats events in {:?}", start.elapsed()));
        assert_eq!(ev["id"], json!(c.id), "{ev}");
        assert!(
            ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
            "no pids.current in {ev}"
        );
        stats += 1;
    }
    // Four events at 200ms take ~600ms; the 5s default would take 15s.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "4 stats events took {:?} at --interval 200ms",
        start.elapsed()
    );
    assert_ok(&c.delete_force());
    let st = wait_timeout(&mut events.0, WAIT)
        .expect("streaming events kept running after the container was deleted");
    assert!(st.success(), "events exited with {st}");
    c.assert_gone();
}

// 7. AppArmor / SELinux warnings.

#[test]
fn apparmor_profile_and_selinux_label_warn_but_run() {
    let kernel_has_apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    let kernel_has_selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let rt = Runtime::new();
    for (field, value, word, present) in [
        (
            "apparmorProfile",
            "silo-test-profile",
            "AppArmor",
            kernel_has_apparmor,
        ),
        (
            "selinuxLabel",
            "system_u:system_r:container_t:s0",
            "SELinux",
            kernel_has_selinux,
        ),
    ] {
        if present {
            eprintln!("{word} is enabled here; the missing-{word} warning cannot be provoked");
            continue;
        }
        let mut b = Bundle::new(&["sh", "-c", "echo ran-despite-label"]);
        b.config_mut()["process"][field] = json!(value);
        let c = rt.container(&mut b);
        let o = c.run();
        assert_ok(&o);
        assert_eq!(stdout(&o), "ran-despite-label\n", "with {field}");
        let err = stderr(&o);
        assert!(
            err.contains(word) && err.contains(field),
            "no {word} warning naming {field}: {err:?}"
        );
        c.assert_gone();
    }
}

// 8. Failing createRuntime hooks.

fn create_with_hook(hook: Value) -> (Output, Duration, Bundle, Container) {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "echo init-ran"]);
    b.config_mut()["hooks"] = json!({ "createRuntime": [hook] });
    let c = rt.container(&mut b);
    let start = Instant::now();
    let o = c.create();
    (o, start.elapsed(), b, c)
}

#[test]
fn failing_create_runtime_hook_aborts_create() {
    let (o, _, b, c) = create_with_hook(json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", "echo hook-said-no >&2; exit 1"]
    }));
    assert_fails_with(
        &o,
        "create with a failing createRuntime hook",
        &["createRuntime", "/bin/sh", "hook-said-no"],
    );
    assert_eq!(c.init_stdout(), "", "the init ran");
    assert_nothing_left(&c, &b);
}

/// Pids of processes whose argv is exactly `argv`.
fn pids_with_cmdline(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want) && pid_alive(pid) {
                v.push(pid);
            }
        }
    }
    v
}

#[test]
fn timed_out_create_runtime_hook_aborts_create() {
    // A distinctive duration so the hook's process can be found by its argv.
    let argv = ["sleep", "5.4321"];
    let (o, took, b, c) = create_with_hook(json!({
        "path": "/bin/sleep",
        "args": argv,
        "timeout": 1
    }));
    assert_fails_with(
        &o,
        "create with a hanging createRuntime hook",
        &["createRuntime", "/bin/sleep", "timeout"],
    );
    assert!(
        took < Duration::from_secs(4),
        "create took {took:?} with a 1s hook timeout"
    );
    let left = pids_with_cmdline(&argv);
    assert!(left.is_empty(), "hook process left running: {left:?}");
    assert_nothing_left(&c, &b);
}

/// A createRuntime hook whose shell forks `sleep <secs>` (which inherits the
/// output pipe) and times out after 1s.
fn create_with_forking_hook(secs: &str) -> (Output, Duration, Bundle, Container) {
    create_with_hook(json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("sleep {secs}; true")],
        "timeout": 1
    }))
}

#[test]
fn timed_out_hook_with_a_grandchild_does_not_block_create() {
    let (o, took, b, c) = create_with_forking_hook("6.4321");
    assert_fails_with(
        &o,
        "create with a hanging createRuntime hook",
        &["createRuntime", "timeout"],
    );
    assert!(
        took < Duration::from_secs(4),
        "create took {took:?} with a 1s hook timeout"
    );
    assert_nothing_left(&c, &b);
}

#[test]

fn timed_out_hook_leaves_no_grandchild() {
    let (o, _, _b, _c) = create_with_forking_hook("6.4322");
    assert!(!o.status.success(), "create with a hanging hook succeeded");
    let left = pids_with_cmdline(&["sleep", "6.4322"]);
    assert!(left.is_empty(), "hook's child left running: {left:?}");
}

// 9. Typed state errors.

#[test]
fn operations_in_the_wrong_state_are_refused() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    let id = c.id.as_str();

    assert_ok(&c.create());
    let o = rt.exec_args(["pause", id]);
    assert_fails_with(&o, "pause of a created container", &[id, "created"]);
    assert_eq!(c.status(), "created");

    assert_ok(&c.start());
    let o = c.start();
    assert_fails_with(&o, "start of a running container", &[id, "running"]);
    let o = rt.exec_args(["resume", id]);
    assert_fails_with(&o, "resume of a running container", &[id, "running"]);
    let o = c.delete();
    assert_fails_with(&o, "delete of a running container", &[id, "running"]);
    assert_eq!(c.status(), "running", "a refused delete changed the state");
    assert!(pid_alive(c.pid()));

    assert_ok(&c.kill("KILL"));
    c.wait_status("stopped", WAIT);
    let st = c.state();
    assert_eq!(st["status"], "stopped");
    assert_eq!(
        st["pid"].as_i64(),
        Some(0),
        "pid of a stopped container: {st}"
    );

    let o = c.exec(&[], &["true"]);
    assert_fails_with(&o, "exec into a stopped container", &[id, "stopped"]);
    let o = c.kill("TERM");
    assert_fails_with(&o, "kill of a stopped container", &[id, "stopped"]);

    assert_ok(&c.delete());
    c.assert_gone();
}

// 10. ps (table), list -q, update flags.

#[test]
fn ps_table_list_quiet_and_update_flags() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let pid = c.pid();

    let o = rt.exec_args(["ps", &c.id]);
    assert_ok(&o);
    let text = stdout(&o);
    let mut lines = text.lines();
    let header = lines.next().expect("ps printed nothing");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column in {header:?}"));
    let pids: Vec<i32> = lines
        .filter_map(|l| l.split_whitespace().nth(col)?.parse().ok())
        .collect();
    assert_eq!(pids, vec![pid], "ps table: {text}");

    let o = rt.exec_args(["list", "-q"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("{}\n", c.id));

    let o = rt.exec_args(["update", "--memory", "64m", "--pids-limit", "20", &c.id]);
    assert_ok(&o);
    let rel = c.cgroups_path();
    let mem = fs::read_to_string(format!("/sys/fs/cgroup/memory{rel}/memory.limit_in_bytes"))
        .expect("memory.limit_in_bytes");
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let pids_max =
        fs::read_to_string(format!("/sys/fs/cgroup/pids{rel}/pids.max")).expect("pids.max");
    assert_eq!(pids_max.trim(), "20");

    let o = rt.exec_args(["update", "--memory", "lots", &c.id]);
    assert_fails_with(&o, "update --memory lots", &["--memory", "lots"]);

    assert_ok(&c.delete_force());
    c.assert_gone();
}

// 11. kill --all of a paused container.

#[test]
fn kill_all_of_paused_container() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let init = c.pid();
    assert_ok(&rt.exec_args(["pause", &c.id]));
    assert_eq!(c.status(), "paused");

    let mut cmd = rt.cmd();
    cmd.args(["kill", "--all", &c.id, "KILL"]);
    let o = output_timeout(cmd, Duration::from_secs(15));
    assert_ok(&o);
    c.wait_status("stopped", WAIT);
    assert!(!pid_alive(init), "init {init} survived");

    let mut cmd = rt.cmd();
    cmd.args(["delete", &c.id]);
    let o = output_timeout(cmd, Duration::from_secs(15));
    assert_ok(&o);
    c.assert_gone();
}

// 12. ociVersion range.

#[test]
fn oci_versions_1_x_run_and_2_is_refused() {
    let rt = Runtime::new();
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        let mut b = Bundle::new(&["sh", "-c", "echo version-ok"]);
        b.config_mut()["ociVersion"] = json!(v);
        let c = rt.container(&mut b);
        let o = c.run();
        assert_ok(&o);
        assert_eq!(stdout(&o), "version-ok\n", "ociVersion {v}");
        c.assert_gone();
    }
    let mut b = Bundle::new(&["sh", "-c", "echo version-ok"]);
    b.config_mut()["ociVersion"] = json!("2.0.0");
    let c = rt.container(&mut b);
    let o = c.run();
    assert_fails_with(&o, "run with ociVersion 2.0.0", &["ociVersion", "2.0.0"]);
    assert!(!stdout(&o).contains("version-ok"), "it ran: {}", stdout(&o));
    assert_nothing_left(&c, &b);
}

/// Rust ignores SIGPIPE and callers may block signals; none of that may
/// leak into the workload (ignored dispositions and the mask survive execve).
#[test]
fn workload_starts_with_default_signals() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["cat", "/proc/self/status"]);
    let c = rt.container(&mut b);
    let o = c.run();
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
}

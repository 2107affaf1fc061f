//! Lifecycle of containers through the runc-compatible command line: run, create,
//! start, state, kill, delete, pause/resume, ps, list, events, update, exec (plain,
//! detached and with a console socket), spec, features and --version.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A shell init that exits 0 on SIGTERM (pid 1 ignores signals it has no handler for).
const TERMINABLE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

#[test]
fn run_propagates_exit_code() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let c = rt.container(&mut b);
    let o = c.run();
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"));
    // A foreground run deletes its container when the init exits.
    assert!(
        !c.state_raw().status.success(),
        "container still exists after run"
    );
    c.assert_gone();
}

#[test]
fn run_exit_code_from_shell_signal_convention() {
    // The init reports a child's SIGKILL as 137 through its own exit code.
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "sh -c 'kill -9 $$'; exit $?"]);
    let c = rt.container(&mut b);
    let o = c.run();
    assert_eq!(o.status.code(), Some(137), "stderr: {}", stderr(&o));
}

#[test]
fn run_reports_128_plus_signal_when_init_is_killed() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    let mut cmd = rt.cmd();
    cmd.arg("run").arg("--bundle").arg(b.path()).arg(&c.id);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    // Kill the foreground `run` if an assertion below fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    c.wait_status("running", WAIT);
    assert_ok(&c.kill("KILL"));
    let st = wait_timeout(&mut child.0, WAIT).expect("run did not return after SIGKILL");
    assert_eq!(st.code(), Some(137));
    let _ = c.delete();
    c.assert_gone();
}

#[test]
fn create_start_kill_delete() {
    let rt = Runtime::new();
    let mut b = Bundle::new(TERMINABLE);
    let c = rt.container(&mut b);
    let pidfile = b.path().join("init.pid");
    assert_ok(&c.create_with(&["--pid-file", pidfile.to_str().expect("utf8")]));

    let st = c.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], json!(c.id));
    let pid = st["pid"].as_i64().expect("pid") as i32;
    assert!(pid > 0 && pid_alive(pid));
    let filed: i32 = fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid file holds a number");
    assert_eq!(filed, pid, "--pid-file disagrees with state");
    assert!(
        st["bundle"].as_str().is_some_and(
            |p| p.ends_with(b.path().file_name().and_then(|n| n.to_str()).expect("name"))
        )
    );

    assert_ok(&c.start());
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid);

    assert_ok(&c.kill("TERM"));
    c.wait_status("stopped", WAIT);
    assert!(!pid_alive(pid));

    assert_ok(&c.delete());
    let o = c.state_raw();
    assert!(!o.status.success(), "state after delete succeeded");
    c.assert_gone();
}

#[test]
fn start_of_created_container_runs_its_args() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "echo started-ok"]);
    let c = rt.container(&mut b);
    assert_ok(&c.create());
    assert_eq!(c.init_stdout(), "", "init ran before start");
    assert_ok(&c.start());
    c.wait_status("stopped", WAIT);
    assert_eq!(c.init_stdout(), "started-ok\n");
    assert_ok(&c.delete());
    c.assert_gone();
}

#[test]
fn run_detach() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    assert_eq!(c.status(), "running");
    assert!(pid_alive(c.pid()));
    assert_ok(&c.delete_force());
    c.assert_gone();
}

#[test]
fn kill_accepts_signal_names_and_numbers() {
    let rt = Runtime::new();
    for sig in ["SIGTERM", "TERM", "15"] {
        let mut b = Bundle::new(TERMINABLE);
        let c = rt.container(&mut b);
        assert_ok(&c.run_detached());
        let pid = c.pid();
        let o = c.kill(sig);
        assert_ok(&o);
        c.wait_status("stopped", WAIT);
        assert!(!pid_alive(pid), "init survived kill {sig}");
        assert_ok(&c.delete());
        c.assert_gone();
    }
}

#[test]
fn kill_all_reaches_every_process() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let pids = wait_for_pids(&c, 3);
    let o = rt.exec_args(["kill", "--all", &c.id, "KILL"]);
    assert_ok(&o);
    c.wait_status("stopped", WAIT);
    for p in pids {
        for _ in 0..100 {
            if !pid_alive(p) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!pid_alive(p), "pid {p} survived kill --all");
    }
    assert_ok(&c.delete());
    c.assert_gone();
}

/// Polls `ps --format json` until at least `n` pids are listed.
fn wait_for_pids(c: &Container, n: usize) -> Vec<i32> {
    let mut last = Vec::new();
    for _ in 0..250 {
        last = ps_json(c);
        if last.len() >= n {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("expected {n} processes, ps gave {last:?}");
}

fn ps_json(c: &Container) -> Vec<i32> {
    let o = c.rt.exec_args(["ps", "--format", "json", &c.id]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).expect("ps JSON");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_i64())
                .map(|p| p as i32)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    assert_ok(&rt.exec_args(["pause", &c.id]));
    assert_eq!(c.status(), "paused");
    let freezer = freezer_state(&c);
    if std::path::Path::new("/sys/fs/cgroup/freezer").is_dir() {
        // A v1 freezer hierarchy exists, so the container's cgroup must be in it.
        assert_eq!(
            freezer.as_deref(),
            Some("FROZEN"),
            "freezer.state of {}",
            c.cgroups_path()
        );
    } else if let Some(f) = &freezer {
        assert_eq!(f, "FROZEN");
    }
    // Every process of the container is stopped by the freezer.
    let st = proc_status_field(c.pid(), "State").expect("State of the init");
    assert!(!st.starts_with('R'), "paused init is running: {st}");
    assert_ok(&rt.exec_args(["resume", &c.id]));
    assert_eq!(c.status(), "running");
    if freezer.is_some() {
        assert_eq!(freezer_state(&c).as_deref(), Some("THAWED"));
    }
    assert_ok(&c.delete_force());
    c.assert_gone();
}

/// The freezer state of the container's cgroup (v1 freezer.state, or v2 cgroup.freeze
/// mapped to FROZEN/THAWED), if a freezer is visible.
fn freezer_state(c: &Container) -> Option<String> {
    let rel = c.cgroups_path();
    let v1 = format!("/sys/fs/cgroup/freezer{rel}/freezer.state");
    if let Ok(s) = fs::read_to_string(&v1) {
        return Some(s.trim().to_string());
    }
    for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(s) = fs::read_to_string(format!("{base}{rel}/cgroup.freeze")) {
            return Some(if s.trim() == "1" { "FROZEN" } else { "THAWED" }.to_string());
        }
    }
    None
}

#[test]
fn ps_and_list() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let pid = c.pid();
    assert!(
        ps_json(&c).contains(&pid),
        "ps does not list the init pid {pid}"
    );

    let o = rt.exec_args(["list"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.starts_with("ID"), "list header: {text}");
    assert!(text
        .lines()
        .any(|l| l.starts_with(&c.id) && l.contains("running")));

    let o = rt.exec_args(["list", "-q"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), c.id);

    let listed = rt.list_json();
    let me = listed
        .iter()
        .find(|e| e["id"] == json!(c.id))
        .expect("container in list --format json");
    assert_eq!(me["status"], "running");
    assert_eq!(me["pid"].as_i64(), Some(pid as i64));
    assert_ok(&c.delete_force());
    assert!(rt.list_json().is_empty());
    c.assert_gone();
}

#[test]
fn events_stats_prints_one_stats_object() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let o = rt.exec_args(["events", "--stats", &c.id]);
    assert_ok(&o);
    let text = stdout(&o);
    let v: Value = serde_json::from_str(text.trim()).expect("events --stats is one JSON object");
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], json!(c.id));
    assert!(v["data"].is_object(), "no data in {v}");
    assert!(
        v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "pids.current in {v}"
    );
    assert_ok(&c.delete_force());
}

fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn update_resources_from_stdin_sets_pids_limit() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let mut cmd = rt.cmd();
    cmd.args(["update", "--resources", "-", &c.id]);
    let o = with_stdin(cmd, r#"{"pids": {"limit": 42}}"#);
    assert_ok(&o);
    let o = c.exec(
        &[],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "42");
    // The same from the host side.
    let rel = c.cgroups_path();
    let host = fs::read_to_string(format!("/sys/fs/cgroup/pids{rel}/pids.max"))
        .or_else(|_| fs::read_to_string(format!("/sys/fs/cgroup{rel}/pids.max")))
        .expect("pids.max on the host");
    assert_eq!(host.trim(), "42");
    // runc's flag form too.
    assert_ok(&rt.exec_args(["update", "--pids-limit", "17", &c.id]));
    let o = c.exec(
        &[],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    );
    assert_eq!(stdout(&o).trim(), "17");
    assert_ok(&c.delete_force());
    c.assert_gone();
}

#[test]
fn exec_foreground_detached_env_cwd_user() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());

    let o = c.exec(&[], &["sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "in-exec\n");

    let o = c.exec(
        &[
            "--env",
            "SILO_X=hello",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1000",
        ],
        &["sh", "-c", "echo $SILO_X $(pwd) $(id -u) $(id -g)"],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "hello /tmp 1000 1000");

    let pidfile = b.path().join("exec.pid");
    let mut cmd = rt.cmd();
    cmd.arg("exec")
        .arg("--detach")
        .arg("--pid-file")
        .arg(&pidfile)
        .arg(&c.id)
        .args(["sleep", "999"]);
    let o = output_to_files(
        cmd,
        &b.path().join("exec.out"),
        &b.path().join("exec.err"),
        CMD_TIMEOUT,
    );
    assert_ok(&o);
    let epid: i32 = fs::read_to_string(&pidfile)
        .expect("exec pid file")
        .trim()
        .parse()
        .expect("number in exec pid file");
    assert!(
        pid_alive(epid),
        "detached exec process {epid} is not running"
    );
    assert!(
        ps_json(&c).contains(&epid),
        "ps does not list the exec'd pid"
    );
    let cmdline = fs::read(format!("/proc/{epid}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, b"sleep\0999\0");

    assert_ok(&c.delete_force());
    assert!(!pid_alive(epid));
    c.assert_gone();
}

#[test]
fn exec_tty_through_console_socket() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let console = ConsoleSocket::new();
    let o = c.exec(
        &[
            "--detach",
            "--tty",
            "--console-socket",
            console.path.to_str().expect("utf8"),
        ],
        &["sh", "-c", "tty; echo tty-ok"],
    );
    assert_ok(&o);
    let text = console.output().expect("pty output");
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
    assert!(text.contains("tty-ok"), "tty output: {text:?}");
    assert_ok(&c.delete_force());
}

#[test]
fn run_with_terminal_and_console_socket() {
    // runc accepts --console-socket on `run` only together with --detach.
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "tty; echo term-ok; exit 4"]);
    b.config_mut()["process"]["terminal"] = json!(true);
    let c = rt.container(&mut b);
    let console = ConsoleSocket::new();
    let o = c.run_with(&[
        "--detach",
        "--console-socket",
        console.path.to_str().expect("utf8"),
    ]);
    assert_ok(&o);
    let text = console.output().expect("pty output");
    assert!(text.contains("/dev/pts/0"), "tty output: {text:?}");
    assert!(text.contains("term-ok"), "tty output: {text:?}");
    c.wait_status("stopped", WAIT);
    assert_ok(&c.delete());
    c.assert_gone();
}

#[test]
fn spec_writes_a_loadable_config() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let o = rt.exec_args(["spec", "--bundle", dir.path().to_str().expect("utf8")]);
    assert_ok(&o);
    let text = fs::read_to_string(dir.path().join("config.json")).expect("config.json written");
    let v: Value = serde_json::from_str(&text).expect("spec JSON");
    assert!(v["ociVersion"]
        .as_str()
        .is_some_and(|s| s.starts_with("1.")));
    assert_eq!(v["root"]["path"], "rootfs");
    assert!(v["process"]["args"].is_array());
    assert!(v["linux"]["namespaces"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    // A second spec must refuse to overwrite.
    let o = rt.exec_args(["spec", "--bundle", dir.path().to_str().expect("utf8")]);
    assert!(
        !o.status.success(),
        "spec overwrote an existing config.json"
    );
}

#[test]
fn features_and_version() {
    let rt = Runtime::new();
    let o = rt.exec_args(["features"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).expect("features JSON");
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert!(v["ociVersionMin"].is_string(), "{v}");

    let o = rt.exec_args(["--version"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("version"), "--version printed {text:?}");
    assert!(
        text.contains("spec:"),
        "--version lacks the spec version: {text:?}"
    );
}

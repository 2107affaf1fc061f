//! End-to-end tests of exec against a real container started with the
//! runtime binary (needs root and a built `target/debug/silo-runtime`).

use super::*;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runtime() -> PathBuf {
    let p = repo().join("target/debug/silo-runtime");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p silo-runtime` first",
        p.display()
    );
    p
}

/// Writes a busybox bundle under `dir` running `args`.
fn make_bundle(dir: &Path, args: &[&str]) -> (PathBuf, PathBuf, serde_json::Value) {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    let st = Command::new(repo().join("scripts/mkrootfs.sh"))
        .arg(&rootfs)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "mkrootfs.sh failed");
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_SPEC=1"],
            "cwd": "/"
        },
        "root": {"path": rootfs, "readonly": false},
        "hostname": "e2e",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    (bundle, rootfs, spec)
}

/// A running busybox container (`sleep 1000`), removed on drop.
struct Ctr {
    _tmp: tempfile::TempDir,
    engine: Arc<Engine>,
    cref: ContainerRef,
    root: PathBuf,
}

impl Ctr {
    fn start(name: &str) -> Ctr {
        let tmp = tempfile::tempdir().unwrap();
        let (bundle, rootfs, spec) = make_bundle(tmp.path(), &["sleep", "1000"]);
        let config = Config {
            data_root: tmp.path().join("data"),
            exec_root: tmp.path().join("exec"),
            monitor_binary: repo().join("target/debug/silo-monitor"),
            runtime_binary: runtime(),
            init_binary: Some(std::path::PathBuf::from("/usr/bin/tini-static"))
                .filter(|p| p.exists()),
        };
        let engine = Engine::open(config).unwrap();
        let root = engine.compute_host().unwrap().root;
        let id = format!("io-e2e-{name}-{}", std::process::id());
        let out = Command::new(runtime())
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // A file, not a pipe: the container's init inherits it.
            .stderr(std::fs::File::create(tmp.path().join("run.err")).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(tmp.path().join("run.err")).unwrap_or_default();
        assert!(out.success(), "run: {err}");
        let state_dir = tmp.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let cref = ContainerRef {
            id: id.clone(),
            name: format!("/{id}"),
            state_dir,
            rootfs,
            running: true,
            paused: false,
            pid: 0,
            tty: false,
            spec: serde_json::from_value(spec).unwrap(),
            user: String::new(),
        };
        Ctr {
            _tmp: tmp,
            engine,
            cref,
            root,
        }
    }

    fn exec(&self, cfg: ExecConfig, detach: bool) -> (String, Option<AttachStream>) {
        let id = exec::new_id();
        exec::registry().lock().insert(
            id.clone(),
            exec::Exec {
                id: id.clone(),
                container_id: self.cref.id.clone(),
                config: cfg.clone(),
                started: true,
                running: true,
                exit_code: None,
                pid: 0,
                master: None,
            },
        );
        let s = self
            .engine
            .exec_launch(&id, &self.cref, &cfg, detach)
            .unwrap();
        (id, s)
    }

    fn exit_code(&self, exec_id: &str) -> Option<i64> {
        exec::registry().wait_exit(exec_id, Duration::from_secs(10));
        let i = self.engine.exec_inspect(exec_id).unwrap();
        assert_eq!(i.running, Some(false));
        i.exit_code
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = Command::new(runtime())
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.cref.id])
            .output();
    }
}

fn read_all(s: &mut AttachStream) -> Vec<u8> {
    s.socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut v = Vec::new();
    s.socket.read_to_end(&mut v).unwrap();
    v
}

fn cmd(args: &[&str]) -> Option<Vec<String>> {
    Some(args.iter().map(|s| s.to_string()).collect())
}

#[test]
fn exec_echo_is_framed_and_exit_code_recorded() {
    let c = Ctr::start("echo");
    let (id, s) = c.exec(
        ExecConfig {
            cmd: cmd(&["sh", "-c", "echo hi; echo $FROM_SPEC$X >&2; exit 3"]),
            env: Some(vec!["X=y".into()]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        },
        false,
    );
    let mut s = s.unwrap();
    assert!(!s.tty);
    let got = read_all(&mut s);
    let mut f1 = exec::frame(1, b"hi\n");
    let f2 = exec::frame(2, b"1y\n");
    // The two streams are relayed independently; accept either order.
    let ok =
        got == [f1.clone(), f2.clone()].concat() || got == [f2, std::mem::take(&mut f1)].concat();
    assert!(ok, "unexpected stream {got:?}");
    assert_eq!(c.exit_code(&id), Some(3));
}

#[test]
fn exec_stdin_reaches_the_process() {
    let c = Ctr::start("stdin");
    let (id, s) = c.exec(
        ExecConfig {
            cmd: cmd(&["cat"]),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            ..Default::default()
        },
        false,
    );
    let mut s = s.unwrap();
    s.socket.write_all(b"ping\n").unwrap();
    s.socket.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), exec::frame(1, b"ping\n"));
    assert_eq!(c.exit_code(&id), Some(0));
}

#[test]
fn exec_tty_gets_a_sized_terminal() {
    let c = Ctr::start("tty");
    let (id, s) = c.exec(
        ExecConfig {
            cmd: cmd(&["sh", "-c", "stty size; tty; exit 5"]),
            tty: Some(true),
            console_size: Some(vec![21, 77]),
            attach_stdout: Some(true),
            ..Default::default()
        },
        false,
    );
    let mut s = s.unwrap();
    assert!(s.tty);
    let text = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(text.contains("21 77"), "stty output: {text:?}");
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
    assert_eq!(c.exit_code(&id), Some(5));
}

#[test]
fn detached_exec_runs_and_user_is_resolved() {
    let c = Ctr::start("detach");
    let (id, s) = c.exec(
        ExecConfig {
            cmd: cmd(&["sh", "-c", "id -u > /tmp/who"]),
            user: Some("nobody".into()),
            ..Default::default()
        },
        true,
    );
    assert!(s.is_none());
    assert_eq!(c.exit_code(&id), Some(0));
    let who = std::fs::read_to_string(c.cref.rootfs.join("tmp/who")).unwrap();
    let passwd = std::fs::read_to_string(c.cref.rootfs.join("etc/passwd")).unwrap();
    let want = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap();
    assert_eq!(who.trim(), want);
}

#[test]
fn exec_without_a_user_runs_as_the_containers_user() {
    let mut c = Ctr::start("user");
    // The stored spec's process is root's; the container runs as 1000:1000.
    c.cref.user = "1000:1000".into();
    let run = |c: &Ctr, user: Option<&str>| {
        let (id, s) = c.exec(
            ExecConfig {
                cmd: cmd(&["sh", "-c", "echo $(id -u):$(id -g)"]),
                user: user.map(String::from),
                attach_stdout: Some(true),
                ..Default::default()
            },
            false,
        );
        let (out, _) = deframe(&read_all(&mut s.unwrap()));
        assert_eq!(c.exit_code(&id), Some(0));
        out
    };
    assert_eq!(run(&c, None), "1000:1000\n");
    assert_eq!(run(&c, Some("")), "1000:1000\n");
    assert_eq!(run(&c, Some("0")), "0:0\n");
    // A named user is looked up in the container's files at exec time.
    c.cref.user = "nobody".into();
    let passwd = std::fs::read_to_string(c.cref.rootfs.join("etc/passwd")).unwrap();
    let nobody = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').skip(2).take(2).collect::<Vec<_>>().join(":"))
        .unwrap();
    assert_eq!(run(&c, None), format!("{nobody}\n"));
}

#[test]
fn failing_exec_reports_the_runtime_error() {
    let c = Ctr::start("fail");
    let id = exec::new_id();
    let cfg = ExecConfig {
        cmd: cmd(&["/no/such/binary"]),
        attach_stdout: Some(true),
        ..Default::default()
    };
    exec::registry().lock().insert(
        id.clone(),
        exec::Exec {
            id: id.clone(),
            container_id: c.cref.id.clone(),
            config: cfg.clone(),
            started: true,
            running: true,
            exit_code: None,
            pid: 0,
            master: None,
        },
    );
    match c.engine.exec_launch(&id, &c.cref, &cfg, false) {
        Err(EngineError::Internal(m)) => assert!(m.contains("OCI runtime exec failed"), "{m}"),
        Ok(Some(mut s)) => {
            // The failure may only show in the child: then it exits non-zero.
            let _ = read_all(&mut s);
            let code = c.exit_code(&id);
            assert!(code.is_some_and(|c| c != 0), "exit code {code:?}");
        }
        Ok(None) => panic!("attached exec returned no stream"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// Splits Docker frames into (stdout, stderr) text.
fn deframe(mut b: &[u8]) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let text = String::from_utf8_lossy(&b[8..8 + n]);
        if b[0] == 2 {
            err.push_str(&text);
        } else {
            out.push_str(&text);
        }
        b = &b[8 + n..];
    }
    assert!(b.is_empty(), "trailing bytes {b:?}");
    (out, err)
}

#[test]
fn top_and_stats_of_a_running_container() {
    let c = Ctr::start("top");
    let top = c.engine.top_ref(&c.cref, None).unwrap();
    let titles = top.titles.unwrap();
    assert!(titles.contains(&"PID".to_string()), "{titles:?}");
    let rows = top.processes.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].last().unwrap().contains("sleep 1000"), "{rows:?}");
    let s1 = c.engine.stats_ref(c.cref.clone()).unwrap();
    assert_eq!(s1.name.as_deref(), Some(c.cref.name.as_str()));
    assert_eq!(s1.pids_stats.as_ref().unwrap().current, Some(1));
    assert!(s1.memory_stats.as_ref().unwrap().usage.unwrap() > 0);
    let cpu1 = s1.cpu_stats.clone().unwrap();
    assert!(cpu1.system_cpu_usage.unwrap() > 0);
    assert!(cpu1.online_cpus.unwrap() >= 1);
    let s2 = c.engine.stats_ref(c.cref.clone()).unwrap();
    assert_eq!(
        s2.precpu_stats.unwrap().system_cpu_usage,
        cpu1.system_cpu_usage
    );
    assert_eq!(s2.preread, s1.read);
}

#[test]
fn attach_before_start_sees_all_output_then_logs_replay_it() {
    let monitor = repo().join("target/debug/silo-monitor");
    assert!(
        monitor.exists(),
        "{} missing: cargo build -p silo-monitor",
        monitor.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, rootfs, spec) = make_bundle(tmp.path(), &["sh", "-c", "echo out; echo err >&2"]);
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let id = format!("io-e2e-attach-{}", std::process::id());
    let mut cref = ContainerRef {
        id: id.clone(),
        name: format!("/{id}"),
        state_dir: state.clone(),
        rootfs,
        running: false,
        paused: false,
        pid: 0,
        tty: false,
        spec: serde_json::from_value(spec).unwrap(),
        user: String::new(),
    };
    let mut s = Engine::attach_ref(&cref, false, true, true, false).unwrap();
    let config = Config {
        data_root: tmp.path().join("data"),
        exec_root: tmp.path().join("exec"),
        monitor_binary: monitor.clone(),
        runtime_binary: runtime(),
        init_binary: Some(std::path::PathBuf::from("/usr/bin/tini-static")).filter(|p| p.exists()),
    };
    let engine = Engine::open(config).unwrap();
    assert_eq!(engine.waiting_attaches(&id), 1);
    let st = Command::new(&monitor)
        .arg("--runtime-root")
        .arg(tmp.path().join("runtime"))
        .args(["--id", &id, "--bundle"])
        .arg(&bundle)
        .arg("--state-dir")
        .arg(&state)
        .args(["--wait-attach", "1", "--detach"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "monitor failed: {:?}",
        std::fs::read_to_string(state.join("monitor.log"))
    );
    let (out, err) = deframe(&read_all(&mut s));
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(engine.waiting_attaches(&id), 0);
    // Wait for the monitor to record the exit, then replay the log.
    for _ in 0..200 {
        if state.join(EXIT_FILE).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    cref.running = false;
    let opts = LogOptions {
        stdout: true,
        stderr: true,
        timestamps: true,
        ..Default::default()
    };
    let chunks: Vec<LogChunk> = Engine::logs_ref(&cref, opts).unwrap().collect();
    assert_eq!(chunks.len(), 2);
    let texts: Vec<(u8, String)> = chunks
        .iter()
        .map(|c| (c.stream, String::from_utf8_lossy(&c.bytes).into_owned()))
        .collect();
    for (stream, want) in [(1u8, "out\n"), (2, "err\n")] {
        let (_, t) = texts.iter().find(|(s, _)| *s == stream).unwrap();
        let (time, rest) = t.split_once(' ').unwrap();
        assert!(logs::parse_time(time).is_some(), "{t:?}");
        assert_eq!(rest, want);
    }
}

#[test]
fn attach_to_a_running_tty_container_and_resize_it() {
    let monitor = repo().join("target/debug/silo-monitor");
    assert!(
        monitor.exists(),
        "{} missing: cargo build -p silo-monitor",
        monitor.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (bundle, rootfs, mut spec) =
        make_bundle(tmp.path(), &["sh", "-c", "sleep 1; stty size; echo done"]);
    spec["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let id = format!("io-e2e-tty-{}", std::process::id());
    let st = Command::new(&monitor)
        .arg("--runtime-root")
        .arg(tmp.path().join("runtime"))
        .args(["--id", &id, "--bundle"])
        .arg(&bundle)
        .arg("--state-dir")
        .arg(&state)
        .args(["--tty", "--detach"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "monitor failed: {:?}",
        std::fs::read_to_string(state.join("monitor.log"))
    );
    let cref = ContainerRef {
        id: id.clone(),
        name: format!("/{id}"),
        state_dir: state.clone(),
        rootfs,
        running: true,
        paused: false,
        pid: 0,
        tty: true,
        spec: serde_json::from_value(spec).unwrap(),
        user: String::new(),
    };
    let mut s = Engine::attach_ref(&cref, false, true, true, false).unwrap();
    assert!(s.tty);
    let reply = control(
        &state,
        &serde_json::json!({"resize": {"height": 33, "width": 99}}),
    )
    .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    let text = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(text.contains("33 99"), "{text:?}");
    assert!(text.contains("done"), "{text:?}");
    for _ in 0..200 {
        if state.join(EXIT_FILE).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

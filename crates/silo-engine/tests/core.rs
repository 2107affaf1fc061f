#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The engine core through its public API only, on the real kernel (root):
//! what a front end other than Docker's (the CRI) would use. Containers are
//! described by `ContainerConfig`, never by a Docker request.

use silo_engine::{
    Action, Config, ContainerConfig, CreateRequest, Engine, Error, ExecSpec, ImageRef, LogOptions,
    NetworkMode, Outcome, PodConfig, PodStatus, ProcessConfig, Services, Sharing, Status, Step,
    WaitCondition,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A workspace binary, built on demand.
fn binary(name: &str) -> PathBuf {
    let p = repo().join("target/debug").join(name);
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", name])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(st.success(), "building {name} failed");
    }
    p
}

struct Env {
    /// Held so the directory lives as long as the test.
    _tmp: tempfile::TempDir,
    config: Config,
    image: String,
}

impl Drop for Env {
    /// Even after a failed assertion: no container, pod, mount or monitor
    /// outlives the test.
    fn drop(&mut self) {
        if let Ok(e) = Engine::open(self.config.clone(), Services::default()) {
            for p in e.pods() {
                let _ = e.remove_pod(&p.id);
            }
            for c in e.containers() {
                let _ = e.remove(&c.id, true, true);
            }
        }
    }
}

fn setup() -> (Env, Arc<Engine>) {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let st = Command::new(repo().join("scripts/mkrootfs.sh"))
        .arg(&rootfs)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "mkrootfs.sh failed");
    let config = Config {
        data_root: tmp.path().join("data"),
        exec_root: tmp.path().join("exec"),
        monitor_binary: binary("silo-monitor"),
        runtime_binary: binary("silo-runtime"),
        init_binary: None,
        registry: Default::default(),
        sandbox_disk: None,
    };
    let engine = Engine::open(config.clone(), Services::default()).unwrap();
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tar.stdout.take().unwrap();
    let image = engine
        .import_image(&mut out, Some("busybox:latest"), &[], None)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    (
        Env {
            _tmp: tmp,
            config,
            image: image.id,
        },
        engine,
    )
}

/// A container running `args` with silo's defaults (Docker's capability set).
fn config(env: &Env, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        image: ImageRef {
            name: "busybox".into(),
            id: env.image.clone(),
        },
        process: ProcessConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            capabilities: silo_oci::DEFAULT_CAPS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn create(engine: &Engine, name: &str, config: ContainerConfig) -> String {
    engine
        .create(CreateRequest {
            name: Some(name.into()),
            config,
            ..Default::default()
        })
        .unwrap()
        .id
}

fn run(engine: &Engine, name: &str, config: ContainerConfig) -> String {
    let id = create(engine, name, config);
    assert_eq!(engine.start(&id).unwrap(), Outcome::Done);
    id
}

fn pid_of(engine: &Engine, id: &str) -> i32 {
    engine
        .container(id)
        .unwrap()
        .state
        .status
        .run()
        .unwrap()
        .pid
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

fn ns_of(pid: i32, t: &str) -> u64 {
    inode(Path::new(&format!("/proc/{pid}/ns/{t}")))
}

fn netns_pin(env: &Env, id: &str) -> PathBuf {
    env.config.exec_root.join("netns").join(id)
}

fn mounted(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(needle)
}

fn read_all(s: &mut silo_engine::AttachStream) -> Vec<u8> {
    s.socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut v = Vec::new();
    s.socket.read_to_end(&mut v).unwrap();
    v
}

/// Splits a multiplexed stream into (stdout, stderr) text.
fn deframe(b: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    silo_sys::frame::demux(b, &mut out, &mut err).unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Runs an exec attached and returns (stdout, stderr, exit code).
fn exec(engine: &Engine, id: &str, spec: ExecSpec) -> (String, String, Option<i64>) {
    let x = engine.exec_create(id, spec).unwrap();
    let mut s = engine.exec_start(&x, false, false).unwrap().unwrap();
    let (out, err) = deframe(&read_all(&mut s));
    let mut code = None;
    for _ in 0..400 {
        let i = engine.exec_info(&x).unwrap();
        if !i.running {
            code = i.exit_code;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    (out, err, code)
}

fn sh(cmd: &str) -> ExecSpec {
    ExecSpec {
        args: vec!["sh".into(), "-c".into(), cmd.into()],
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

#[test]
fn lifecycle_through_the_core_leaves_nothing_behind() {
    let (env, engine) = setup();
    let events = engine.events(None, None);
    let id = run(
        &engine,
        "echo",
        config(&env, &["sh", "-c", "echo hi; exit 4"]),
    );
    let w = engine.wait(&id, WaitCondition::NotRunning).unwrap();
    assert_eq!(w.exit_code, 4);
    let c = engine.container(&id).unwrap();
    match &c.state.status {
        Status::Exited(e) => assert_eq!(e.code, 4),
        s => panic!("{s:?}"),
    }
    // Its pinned network namespace went with the run.
    assert!(!netns_pin(&env, &id).exists());
    let chunks: Vec<_> = engine
        .logs(
            &id,
            LogOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .unwrap()
        .collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].bytes, b"hi\n");
    let mut seen = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_secs(5)) {
        seen.push(e.action);
        if matches!(seen.last(), Some(Action::Die { .. })) {
            break;
        }
    }
    assert_eq!(
        seen,
        [Action::Create, Action::Start, Action::Die { exit_code: 4 }]
    );
    // Start of an exited container runs it again; start of a running one changes nothing.
    let id2 = run(&engine, "sleeper", config(&env, &["sleep", "1000"]));
    assert_eq!(engine.start(&id2).unwrap(), Outcome::Unchanged);
    assert!(matches!(
        engine.remove(&id2, false, false),
        Err(Error::Conflict(_))
    ));
    engine.remove(&id2, true, false).unwrap();
    engine.remove(&id, false, true).unwrap();
    assert!(matches!(engine.container(&id), Err(Error::NotFound { .. })));
    for i in [&id, &id2] {
        assert!(!mounted(i), "a mount of {i} is left");
        assert!(!engine.container_dir(i).exists());
        assert!(!netns_pin(&env, i).exists());
    }
}

#[test]
fn network_namespaces_are_pinned_per_run_and_shared_by_container_mode() {
    let (env, engine) = setup();
    let a = run(&engine, "net-a", config(&env, &["sleep", "1000"]));
    let pin = netns_pin(&env, &a);
    assert_eq!(
        ns_of(pid_of(&engine, &a), "net"),
        inode(&pin),
        "the container runs in its pinned namespace"
    );
    // Loopback is up inside (IFF_UP in its flags).
    let (out, _, code) = exec(&engine, &a, sh("cat /sys/class/net/lo/flags"));
    assert_eq!(code, Some(0));
    let flags = u32::from_str_radix(out.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down: {out}");
    // A container in a's network namespace (and a's IPC one, and its PIDs).
    let mut cfg = config(&env, &["sleep", "1000"]);
    cfg.namespaces.network = NetworkMode::Container("net-a".into());
    cfg.namespaces.pid = Sharing::Container(a.clone());
    let b = run(&engine, "net-b", cfg);
    let (pa, pb) = (pid_of(&engine, &a), pid_of(&engine, &b));
    assert_eq!(ns_of(pa, "net"), ns_of(pb, "net"));
    assert_eq!(ns_of(pa, "pid"), ns_of(pb, "pid"));
    assert_ne!(ns_of(pa, "mnt"), ns_of(pb, "mnt"));
    assert!(
        !netns_pin(&env, &b).exists(),
        "b has no namespace of its own"
    );
    // b sees a's processes.
    let (out, _, _) = exec(&engine, &b, sh("ps -o args"));
    assert!(out.matches("sleep 1000").count() >= 2, "{out}");
    // The host's network: no namespace of its own.
    let mut cfg = config(&env, &["sleep", "1000"]);
    cfg.namespaces.network = NetworkMode::Host;
    let h = run(&engine, "net-host", cfg);
    assert_eq!(
        ns_of(pid_of(&engine, &h), "net"),
        inode(Path::new("/proc/self/ns/net"))
    );
    // Joining a container that does not run is refused.
    engine.stop(&a, None, Some(0)).unwrap();
    assert!(!pin.exists(), "the pin goes when a stops");
    let mut cfg = config(&env, &["true"]);
    cfg.namespaces.network = NetworkMode::Container(a.clone());
    let c = create(&engine, "net-c", cfg);
    let e = engine.start(&c).unwrap_err();
    assert!(e.to_string().contains("not running"), "{e}");
    assert!(!netns_pin(&env, &c).exists());
    // Unknown containers to join are refused at create.
    let mut cfg = config(&env, &["true"]);
    cfg.namespaces.ipc = Sharing::Container("nosuch".into());
    let e = engine
        .create(CreateRequest {
            config: cfg,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
    drop(env);
}

#[test]
fn pods_share_network_ipc_and_uts_without_a_pause_process() {
    let (env, engine) = setup();
    let pod = engine
        .create_pod(
            PodConfig {
                name: "web-pod".into(),
                hostname: "podhost".into(),
                ..Default::default()
            },
            Default::default(),
        )
        .unwrap();
    assert_eq!(pod.status, PodStatus::Ready);
    let dir = env.config.exec_root.join("pods").join(&pod.id);
    let mut cfg = config(&env, &["sleep", "1000"]);
    cfg.pod = Some("web-pod".into());
    let a = run(&engine, "pa", cfg.clone());
    let b = run(&engine, "pb", cfg.clone());
    let (pa, pb) = (pid_of(&engine, &a), pid_of(&engine, &b));
    for t in ["net", "ipc", "uts"] {
        assert_eq!(ns_of(pa, t), ns_of(pb, t), "{t}");
        assert_eq!(ns_of(pa, t), inode(&dir.join(t)), "{t} is the pod's");
    }
    assert_ne!(ns_of(pa, "pid"), ns_of(pb, "pid"));
    let (out, _, _) = exec(&engine, &a, sh("hostname; cat /etc/hostname"));
    assert_eq!(out, "podhost\npodhost\n");
    // A container in a pod takes the pod's namespaces, not others.
    let mut bad = cfg.clone();
    bad.namespaces.network = NetworkMode::Host;
    assert!(matches!(
        engine.create(CreateRequest {
            config: bad,
            ..Default::default()
        }),
        Err(Error::InvalidArgument { .. })
    ));
    // Stopping the pod stops its containers and releases its namespaces.
    engine.stop_pod(&pod.id, Some(0)).unwrap();
    assert_eq!(engine.pod(&pod.id).unwrap().status, PodStatus::NotReady);
    for id in [&a, &b] {
        assert!(!engine.container(id).unwrap().state.status.is_running());
    }
    assert!(!mounted(&pod.id), "a pinned namespace of the pod is left");
    assert!(engine.start(&a).is_err(), "the pod is not ready");
    // The pod survives an engine restart; removing it removes its containers.
    let engine = Engine::open(env.config.clone(), Services::default()).unwrap();
    assert_eq!(engine.pods().len(), 1);
    engine.remove_pod("web-pod").unwrap();
    assert!(engine.pods().is_empty() && engine.containers().is_empty());
    assert!(!dir.exists());
    drop(env);
}

#[test]
fn a_removal_that_cannot_finish_marks_the_container_dead_and_can_be_retried() {
    let (env, engine) = setup();
    let id = create(&engine, "stuck", config(&env, &["true"]));
    // Something else holds a mount inside the container's directory.
    let busy = engine.container_dir(&id).join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&busy)
        .status()
        .unwrap();
    assert!(st.success());
    let e = engine.remove(&id, false, true).unwrap_err();
    match &e {
        Error::Teardown(t) => {
            let steps: Vec<Step> = t.failures.iter().map(|(s, _)| *s).collect();
            assert_eq!(steps, [Step::Files], "{e}");
        }
        other => panic!("{other}"),
    }
    // Every other step was done; the container is dead, not lost.
    let c = engine.container(&id).unwrap();
    assert_eq!(c.state.status, Status::Dead);
    assert!(!env
        .config
        .data_root
        .join("storage/snapshots")
        .join(&id)
        .exists());
    let st = Command::new("umount").arg(&busy).status().unwrap();
    assert!(st.success());
    engine.remove(&id, false, true).unwrap();
    assert!(engine.container(&id).is_err());
    assert!(!engine.container_dir(&id).exists());
}

#[test]
fn recovery_readopts_runs_and_releases_what_dead_runs_hold() {
    let (env, engine) = setup();
    let keep = run(&engine, "keep", config(&env, &["sleep", "1000"]));
    let gone = run(&engine, "gone", config(&env, &["true"]));
    engine.wait(&gone, WaitCondition::NotRunning).unwrap();
    let pk = pid_of(&engine, &keep);
    // As if silod had died between an exit and the release of its
    // network: the stopped container still holds a pinned namespace. And a
    // pin nobody owns (a crash between pinning and recording a start).
    let pin = netns_pin(&env, &gone);
    let orphan = env.config.exec_root.join("netns").join("f".repeat(64));
    for p in [&pin, &orphan] {
        silo_isolation::pin::pin(&[(silo_oci::NamespaceType::Network, p.clone())], None).unwrap();
    }
    // A new engine (silod restarted) adopts the running container and
    // releases what the stopped ones hold.
    let engine2 = Engine::open(env.config.clone(), Services::default()).unwrap();
    assert_eq!(pid_of(&engine2, &keep), pk, "re-adopted");
    assert!(
        netns_pin(&env, &keep).exists(),
        "a running container keeps its pin"
    );
    assert!(!pin.exists() && !orphan.exists());
    assert!(!mounted(&format!("netns/{gone}")));
    engine2.stop(&keep, None, Some(0)).unwrap();
    drop(engine);
    drop(env);
}

#[test]
fn exec_streams_stdin_tty_users_and_failures() {
    let (env, engine) = setup();
    let mut cfg = config(&env, &["sleep", "1000"]);
    cfg.process.env.push("FROM_SPEC=1".into());
    let id = run(&engine, "execs", cfg);
    // Framed output, the exec's env over the container's, the exit code.
    let mut spec = sh("echo hi; echo $FROM_SPEC$X >&2; exit 3");
    spec.env = vec!["X=y".into()];
    assert_eq!(
        exec(&engine, &id, spec),
        ("hi\n".into(), "1y\n".into(), Some(3))
    );
    // Input reaches the process.
    let x = engine
        .exec_create(
            &id,
            ExecSpec {
                args: vec!["cat".into()],
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut s = engine.exec_start(&x, false, false).unwrap().unwrap();
    s.socket.write_all(b"ping\n").unwrap();
    s.socket.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(deframe(&read_all(&mut s)).0, "ping\n");
    // A terminal of the asked size.
    let x = engine
        .exec_create(
            &id,
            ExecSpec {
                args: vec!["sh".into(), "-c".into(), "stty size; tty; exit 5".into()],
                terminal: true,
                console_size: Some((21, 77)),
                stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut s = engine.exec_start(&x, false, false).unwrap().unwrap();
    assert!(s.tty);
    let text = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(
        text.contains("21 77") && text.contains("/dev/pts/"),
        "{text:?}"
    );
    // Users: named, numeric, and the container's own by default.
    let mut as_user = sh("echo $(id -u):$(id -g)");
    as_user.user = Some("1000:1000".into());
    assert_eq!(exec(&engine, &id, as_user).0, "1000:1000\n");
    assert_eq!(exec(&engine, &id, sh("id -u")).0, "0\n");
    let mut cfg = config(&env, &["sleep", "1000"]);
    cfg.process.user = "nobody".into();
    let nobody = run(&engine, "nobody", cfg);
    let passwd = std::fs::read_to_string(
        engine
            .storage()
            .snapshot_paths(&nobody)
            .merged
            .join("etc/passwd"),
    )
    .unwrap();
    let want = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').skip(2).take(2).collect::<Vec<_>>().join(":"))
        .unwrap();
    assert_eq!(
        exec(&engine, &nobody, sh("echo $(id -u):$(id -g)")).0,
        format!("{want}\n")
    );
    // A missing binary is an error or a non-zero exit, never a hang.
    let x = engine
        .exec_create(
            &id,
            ExecSpec {
                args: vec!["/no/such/binary".into()],
                stdout: true,
                ..Default::default()
            },
        )
        .unwrap();
    match engine.exec_start(&x, false, false) {
        Err(e) => assert!(e.to_string().contains("OCI runtime exec failed"), "{e}"),
        Ok(Some(mut s)) => {
            let _ = read_all(&mut s);
            std::thread::sleep(Duration::from_millis(200));
            assert!(engine
                .exec_info(&x)
                .unwrap()
                .exit_code
                .is_some_and(|c| c != 0));
        }
        Ok(None) => panic!("attached exec returned no stream"),
    }
    assert!(matches!(
        engine.exec_info("nosuch"),
        Err(Error::NotFound { .. })
    ));
    drop(env);
}

#[test]
fn top_stats_attach_and_resize() {
    let (env, engine) = setup();
    let id = run(&engine, "top", config(&env, &["sleep", "1000"]));
    let t = engine.top(&id, None).unwrap();
    assert!(t.titles.contains(&"PID".to_string()));
    assert_eq!(t.rows.len(), 1, "{:?}", t.rows);
    assert!(t.rows[0].last().unwrap().contains("sleep 1000"));
    let s = engine.stats(&id).unwrap().unwrap();
    assert_eq!(s.job.pids.current, 1);
    assert!(s.job.memory.current > 0 && s.system_cpu_ns > 0 && s.online_cpus >= 1);

    // Attached before start: every byte of even the shortest process.
    let short = create(
        &engine,
        "short",
        config(&env, &["sh", "-c", "echo out; echo err >&2"]),
    );
    let mut s = engine.attach(&short, live_output()).unwrap();
    engine.start(&short).unwrap();
    assert_eq!(deframe(&read_all(&mut s)), ("out\n".into(), "err\n".into()));
    engine.wait(&short, WaitCondition::NotRunning).unwrap();
    // The log replays it, with timestamps.
    let chunks: Vec<_> = engine
        .logs(
            &short,
            LogOptions {
                stdout: true,
                stderr: true,
                timestamps: true,
                ..Default::default()
            },
        )
        .unwrap()
        .collect();
    assert_eq!(chunks.len(), 2);
    for c in &chunks {
        let text = String::from_utf8_lossy(&c.bytes);
        let (time, rest) = text.split_once(' ').unwrap();
        assert!(silo_units::parse_rfc3339(time).is_ok(), "{text:?}");
        assert!(rest == "out\n" || rest == "err\n", "{text:?}");
    }

    // A terminal container: attach and resize.
    let mut cfg = config(&env, &["sh", "-c", "sleep 1; stty size; echo done"]);
    cfg.process.terminal = true;
    let tty = run(&engine, "tty", cfg);
    let mut s = engine.attach(&tty, live_output()).unwrap();
    assert!(s.tty);
    engine.resize(&tty, 33, 99).unwrap();
    let text = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(text.contains("33 99") && text.contains("done"), "{text:?}");
    drop(env);
}

/// Attach options for the live stdout and stderr.
fn live_output() -> silo_engine::AttachOptions {
    silo_engine::AttachOptions {
        stdout: true,
        stderr: true,
        stream: true,
        ..Default::default()
    }
}

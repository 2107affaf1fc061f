//! Engine-level end-to-end tests on the real kernel (root): a busybox image
//! imported through silo-storage, containers run by the real `silo-monitor`.

use crate::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The monitor binary, built on demand.
fn monitor() -> PathBuf {
    let p = repo().join("target/debug/silo-monitor");
    if !p.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "silo-monitor"])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(st.success(), "building silo-monitor failed");
    }
    p
}

struct Env {
    tmp: tempfile::TempDir,
    config: Config,
}

impl Drop for Env {
    /// Even when an assertion failed: remove every container so no mount,
    /// cgroup or monitor outlives the test.
    fn drop(&mut self) {
        if let Ok(engine) = Engine::open(self.config.clone()) {
            if let Ok(list) = engine.list(true, None, false, &Filters::new()) {
                for c in list {
                    let _ = engine.remove(c.id.as_deref().unwrap_or(""), true, true);
                }
            }
        }
        let _ = &self.tmp;
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
        monitor_binary: monitor(),
        runtime_binary: repo().join("target/debug/silo-runtime"),
        init_binary: Some(std::path::PathBuf::from("/usr/bin/tini-static")).filter(|p| p.exists()),
    };
    let engine = Engine::open(config.clone()).unwrap();
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tar.stdout.take().unwrap();
    let id = engine
        .import_image(&mut out, Some("busybox"), Some("latest"), &[], None)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(id.starts_with("sha256:"));
    (Env { tmp, config }, engine)
}

fn body(cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some("busybox".into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mounted(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(needle)
}

fn cgroup_exists(id: &str) -> bool {
    ["pids", "memory", "cpu", "freezer", "unified"]
        .iter()
        .any(|c| Path::new(&format!("/sys/fs/cgroup/{c}/silo/{id}")).exists())
}

#[test]
fn echo_runs_logs_persists_and_is_removed_cleanly() {
    let (env, engine) = setup();
    // Unknown image: 404 in Docker's words, nothing created.
    let e = engine
        .create_container(
            None,
            ContainerCreateBody {
                image: Some("nosuch".into()),
                ..body(&["true"])
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 404);
    assert_eq!(e.to_string(), "No such image: nosuch:latest");

    let created = engine
        .create_container(Some("e2e-echo"), body(&["echo", "hi"]))
        .unwrap();
    let id = created.id.clone();
    assert_eq!(id.len(), 64);
    // Name conflict: 409 naming the holder.
    let e = engine
        .create_container(Some("/e2e-echo"), body(&["true"]))
        .unwrap_err();
    assert_eq!(e.status(), 409);
    assert!(e.to_string().contains(&id), "{e}");
    assert_eq!(
        engine
            .list(true, None, false, &Filters::new())
            .unwrap()
            .len(),
        1
    );

    let events = engine.events(None, None, &Filters::new()).unwrap();
    engine.start("e2e-echo").unwrap();
    let w = engine.wait(&id, WaitCondition::NotRunning).unwrap();
    assert_eq!(w.status_code, 0);
    let log =
        std::fs::read_to_string(engine.container_dir(&id).join("container-json.log")).unwrap();
    assert!(log.contains("\"log\":\"hi\\n\""), "log: {log}");
    let mut got: Vec<String> = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_secs(2)) {
        got.extend(e.action);
        if got.iter().any(|a| a == "die") {
            break;
        }
    }
    assert!(
        got.contains(&"start".to_string()) && got.contains(&"die".to_string()),
        "{got:?}"
    );

    let ins = engine.inspect(&id[..12], false).unwrap();
    let st = ins.state.unwrap();
    assert_eq!(st.status, Some(ContainerStateStatusEnum::EXITED));
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(ins.name.as_deref(), Some("/e2e-echo"));
    let ps = engine.list(false, None, false, &Filters::new()).unwrap();
    assert!(ps.is_empty(), "ps without -a hides exited containers");
    let ps = engine
        .list(
            true,
            None,
            false,
            &Filters::from([("exited".to_string(), vec!["0".to_string()])]),
        )
        .unwrap();
    assert_eq!(ps.len(), 1);
    assert!(ps[0].status.as_deref().unwrap().starts_with("Exited (0)"));

    // A second engine on the same data root sees the same state.
    let engine2 = Engine::open(env.config.clone()).unwrap();
    let ins = engine2.inspect("e2e-echo", false).unwrap();
    assert_eq!(ins.state.unwrap().exit_code, Some(0));

    // Restart it: it runs again and exits again.
    engine2.start(&id).unwrap();
    assert_eq!(
        engine2
            .wait(&id, WaitCondition::NotRunning)
            .unwrap()
            .status_code,
        0
    );

    engine2.remove(&id, false, true).unwrap();
    assert_eq!(engine2.inspect(&id, false).unwrap_err().status(), 404);
    assert!(!mounted(&id), "snapshot still mounted");
    assert!(!cgroup_exists(&id), "cgroup left behind");
    assert!(!engine2.container_dir(&id).exists());
    assert!(!env
        .config
        .data_root
        .join("storage/snapshots")
        .join(&id)
        .exists());
    let engine3 = Engine::open(env.config.clone()).unwrap();
    assert!(
        engine3
            .list(true, None, false, &Filters::new())
            .unwrap()
            .is_empty(),
        "row left behind"
    );
    drop(env);
}

#[test]
fn stop_kill_readopt_and_force_remove() {
    let (env, engine) = setup();
    let id = engine
        .create_container(None, body(&["sleep", "1000"]))
        .unwrap()
        .id;
    engine.start(&id).unwrap();
    let ins = engine.inspect(&id, false).unwrap();
    let pid = ins.state.unwrap().pid.unwrap();
    assert!(pid > 0);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // rm without force: 409.
    let e = engine.remove(&id, false, false).unwrap_err();
    assert_eq!(e.status(), 409);
    assert!(
        e.to_string()
            .contains("You cannot remove a running container"),
        "{e}"
    );
    // kill on a stopped container is a 409, pause/unpause work.
    engine.pause(&id).unwrap();
    assert_eq!(engine.pause(&id).unwrap_err().status(), 409);
    engine.unpause(&id).unwrap();

    // A new engine (as after a silod restart) adopts the running container.
    let engine2 = Engine::open(env.config.clone()).unwrap();
    let st = engine2.inspect(&id, false).unwrap().state.unwrap();
    assert_eq!(st.running, Some(true));
    assert_eq!(st.pid, Some(pid));

    // sleep as pid 1 ignores SIGTERM: stop escalates to SIGKILL after 1 s.
    let t = std::time::Instant::now();
    engine2.stop(&id, None, Some(1)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(900));
    let st = engine2.inspect(&id, false).unwrap().state.unwrap();
    assert_eq!(st.running, Some(false));
    assert_eq!(st.exit_code, Some(137));
    assert_eq!(engine2.stop(&id, None, None).unwrap_err().status(), 304);
    assert_eq!(engine2.kill(&id, None).unwrap_err().status(), 409);

    // Start again and force-remove while running.
    engine2.start(&id).unwrap();
    engine2.remove(&id, true, true).unwrap();
    assert!(!mounted(&id));
    assert!(!cgroup_exists(&id));
    assert!(engine2
        .list(true, None, false, &Filters::new())
        .unwrap()
        .is_empty());
    drop(engine);
    drop(env);
}

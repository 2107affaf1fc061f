#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! A data root written by silod 45941af (store schema 1: rows holding
//! Docker request bodies) opens with today's engine and keeps its
//! containers, images and volumes.
//!
//! The fixture was made with that silod and the docker CLI: an imported
//! busybox, a volume `data`, and containers `web` (created; label, restart
//! policy, env, the volume, a healthcheck), `job` (ran, exit 3, logged
//! "hi" and "oops"), `svc` (`--init`, running when silod was stopped, then
//! killed while it was down), `hc` (healthcheck results, stopped: 137) and
//! `vol` (wrote `kept` into the volume, renamed to `vol2`). Paths in the old
//! records are absolute, so the data root goes back where it was made; the
//! busybox layer's files are left out of the fixture and made again by
//! mkrootfs.sh (layers are not re-hashed at open).

mod common;

use common::{binary, code, mounted, repo, wait_for};
use silo_engine::{Config, WaitCondition};
use std::path::Path;
use std::process::{Command, Stdio};

const DATA: &str = "/var/tmp/silo-legacy";
const EXEC: &str = "/tmp/silo-legacy-x";

fn extract() -> Config {
    for d in [DATA, EXEC] {
        if Path::new(d).exists() {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    std::fs::create_dir_all(DATA).unwrap();
    let fixture = repo().join("crates/silo-docker/tests/fixtures/legacy-45941af.tar.gz");
    let st = Command::new("tar")
        .args(["-xzf"])
        .arg(&fixture)
        .args(["-C", DATA])
        .status()
        .unwrap();
    assert!(st.success());
    let layers = Path::new(DATA).join("data/storage/layers");
    let layer = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    std::fs::remove_dir(&layer).unwrap();
    let st = Command::new(repo().join("scripts/mkrootfs.sh"))
        .arg(&layer)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    Config {
        data_root: Path::new(DATA).join("data"),
        exec_root: EXEC.into(),
        monitor_binary: binary("silo-monitor"),
        runtime_binary: binary("silo-runtime"),
        init_binary: Some("/usr/bin/tini-static".into())
            .filter(|p: &std::path::PathBuf| p.exists()),
        registry: Default::default(),
        sandbox_disk: None,
    }
}

fn schema_version(config: &Config) -> u32 {
    rusqlite::Connection::open(config.data_root.join("silo.db"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_data_root_of_silod_45941af_keeps_its_containers_images_and_volumes() {
    let config = extract();
    assert_eq!(schema_version(&config), 0, "the fixture is unversioned");
    let d = common::open(&config);
    assert_eq!(schema_version(&config), silo_engine::SCHEMA_VERSION);

    // Containers: every one, in the state it had (svc's exit while silod
    // was down is recorded now).
    let all = d.list(true, None, false, &Default::default()).unwrap();
    let mut names: Vec<String> = all
        .iter()
        .map(|c| c.names.as_ref().unwrap()[0].clone())
        .collect();
    names.sort();
    assert_eq!(names, ["/hc", "/job", "/svc", "/vol2", "/web"]);
    let state = |n: &str| d.inspect(n, false).unwrap().state.unwrap();
    let st = state("job");
    assert_eq!(
        (st.status.unwrap().to_string(), st.exit_code),
        ("exited".into(), Some(3))
    );
    assert_eq!(state("svc").exit_code, Some(137));
    assert_eq!(state("hc").exit_code, Some(137));
    assert_eq!(state("vol2").exit_code, Some(0));
    assert_eq!(state("web").status.unwrap().to_string(), "created");

    // What they were created with.
    let web = d.inspect("web", false).unwrap();
    let cfg = web.config.unwrap();
    assert_eq!(
        cfg.labels.unwrap().get("tier").map(String::as_str),
        Some("front")
    );
    assert!(cfg.env.unwrap().contains(&"A=1".to_string()));
    assert_eq!(
        cfg.healthcheck.unwrap().test.unwrap(),
        ["CMD-SHELL", "true"]
    );
    let hc = web.host_config.unwrap();
    assert_eq!(
        hc.restart_policy.unwrap().name.unwrap().to_string(),
        "unless-stopped"
    );
    let m = &web.mounts.unwrap()[0];
    assert_eq!(
        (
            m.name.as_deref(),
            m.destination.as_deref(),
            m.typ.as_deref()
        ),
        (Some("data"), Some("/data"), Some("volume"))
    );
    let svc = d.inspect("svc", false).unwrap();
    assert_eq!(svc.host_config.unwrap().init, Some(true));
    assert_eq!(
        svc.path.as_deref(),
        Some("sleep"),
        "the init is not the command"
    );
    let health = state("hc").health.unwrap();
    assert_eq!(health.log.unwrap().len(), 5, "the probe log is kept");
    let logs = |n: &str| -> String {
        let (_, chunks) = d
            .logs(
                n,
                silo_engine::LogOptions {
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                },
            )
            .unwrap();
        chunks
            .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
            .collect()
    };
    assert_eq!(logs("job"), "hi\noops\n");

    // Images and volumes.
    let images = d.images(false, &Default::default()).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, ["busybox:latest"]);
    assert_eq!(images[0].containers, 5);
    let v = d.volume_inspect("data").unwrap();
    let kept = std::fs::read_to_string(Path::new(&v.mountpoint).join("f")).unwrap();
    assert_eq!(kept, "kept\n");

    // They still work: job runs again and logs again; web starts and stops.
    d.start("job").unwrap();
    let w = d.wait("job", WaitCondition::NotRunning).unwrap();
    assert_eq!(w.status_code, 3);
    assert_eq!(logs("job"), "hi\noops\nhi\noops\n");
    d.start("web").unwrap();
    let pid = state("web").pid.unwrap();
    assert!(pid > 0);
    wait_for("web healthy", || {
        let h = state("web").health?;
        (h.status?.to_string() == "healthy").then_some(())
    });
    d.stop("web", None, Some(1)).unwrap();
    let e = d.remove("web", false, false);
    assert!(e.is_ok(), "{e:?}");
    let e = d.volume_remove("data", false).unwrap_err();
    assert_eq!(code(&e), 409, "vol2 still uses the volume: {e}");

    // A second open migrates nothing again and sees the same.
    drop(d);
    let d = common::open(&config);
    assert_eq!(
        d.list(true, None, false, &Default::default())
            .unwrap()
            .len(),
        4
    );
    for c in ["job", "svc", "hc", "vol2"] {
        d.remove(c, true, true).unwrap();
    }
    d.volume_remove("data", false).unwrap();
    assert!(!mounted(DATA), "a snapshot is still mounted");
}

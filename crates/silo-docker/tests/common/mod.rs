#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Shared setup of the adapter's tests on the real kernel (root): a
//! busybox image imported through silo-storage, containers run by the real
//! `silo-monitor`, the engine behind the Docker adapter.
#![allow(dead_code)] // not every test file uses every helper

use silo_docker::{Docker, Error};
use silo_engine::{Config, Engine, Services};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A workspace binary, built on demand.
pub fn binary(name: &str) -> PathBuf {
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

/// Opens the engine on `config` behind the Docker adapter, as silod does.
pub fn open(config: &Config) -> Docker {
    let engine = Engine::open(
        config.clone(),
        Services {
            legacy: Some(&silo_docker::Legacy),
            ..Default::default()
        },
    )
    .unwrap();
    Docker::new(engine)
}

/// The HTTP status the Docker API gives an error (as silo-api maps it).
pub fn code(e: &Error) -> u16 {
    use silo_engine::Error as E;
    match e {
        Error::NotModified(_) => 304,
        Error::NotImplemented(_) => 501,
        Error::NotFound(_) | Error::Engine(E::NotFound { .. }) => 404,
        Error::Engine(E::Conflict(_)) => 409,
        Error::Engine(E::InvalidArgument { .. }) => 400,
        Error::Engine(_) => 500,
    }
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub config: Config,
}

impl Drop for Env {
    /// Even when an assertion failed: remove every container so no mount,
    /// cgroup or monitor outlives the test.
    fn drop(&mut self) {
        if let Ok(engine) = Engine::open(self.config.clone(), Services::default()) {
            for c in engine.containers() {
                let _ = engine.remove(&c.id, true, true);
            }
        }
    }
}

/// A fresh data root with busybox imported.
pub fn setup() -> (Env, Docker) {
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
        init_binary: Some(PathBuf::from("/usr/bin/tini-static")).filter(|p| p.exists()),
        registry: Default::default(),
        sandbox_disk: None,
    };
    let docker = open(&config);
    import(&docker, &rootfs, "busybox", &[]);
    (Env { tmp, config }, docker)
}

/// Imports `rootfs` as `name:latest` with Dockerfile `changes`.
pub fn import(docker: &Docker, rootfs: &Path, name: &str, changes: &[String]) -> String {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tar.stdout.take().unwrap();
    let id = docker
        .import_image(&mut out, Some(name), Some("latest"), changes, None)
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(id.starts_with("sha256:"));
    id
}

pub fn mounted(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(needle)
}

pub fn cgroup_exists(id: &str) -> bool {
    ["pids", "memory", "cpu", "freezer", "unified"]
        .iter()
        .any(|c| Path::new(&format!("/sys/fs/cgroup/{c}/silo/{id}")).exists())
}

/// Polls `f` until it gives a value; the deadline is generous because the
/// host may be busy, and nothing asserts on how long it took.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn engine_of(d: &Docker) -> &Arc<Engine> {
    d.engine()
}

//! Bad input to the runtime: each case must fail with a non-zero exit, an error
//! naming what was wrong, and leave nothing behind (cgroup, state, mount, process).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::json;
use std::fs;

#[test]
fn missing_config_json() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    let c = rt.container(&mut b);
    fs::remove_file(b.path().join("config.json")).expect("remove config.json");
    let o = c.create();
    assert_fails_with(&o, "create without config.json", &["config.json"]);
    assert_nothing_left(&c, &b);
}

#[test]
fn malformed_config_json() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    let c = rt.container(&mut b);
    fs::write(
        b.path().join("config.json"),
        "{ \"ociVersion\": \"1.0.2\", oops }",
    )
    .expect("write");
    let o = c.create();
    assert!(!o.status.success(), "create with malformed JSON succeeded");
    let err = stderr(&o);
    assert!(!err.trim().is_empty(), "no error message");
    if !is_runc() {
        // runc does not name the file here; ours must.
        assert!(
            err.contains("config.json"),
            "error does not name config.json: {err}"
        );
    }
    assert_nothing_left(&c, &b);
}

#[test]
fn unknown_namespace_type() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces array")
        .push(json!({"type": "bogus"}));
    let c = rt.container(&mut b);
    let o = c.create();
    assert_fails_with(&o, "create with namespace 'bogus'", &["bogus"]);
    assert_nothing_left(&c, &b);
}

#[test]
fn nonexistent_rootfs() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    let missing = b.path().join("no-such-rootfs");
    b.config_mut()["root"]["path"] = json!(missing.to_string_lossy());
    let c = rt.container(&mut b);
    let o = c.create();
    assert_fails_with(
        &o,
        "create with a missing rootfs",
        &[&missing.to_string_lossy()],
    );
    assert_nothing_left(&c, &b);
}

#[test]
fn duplicate_container_id() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "100"]);
    let c = rt.container(&mut b);
    assert_ok(&c.create());
    let pid = c.pid();
    // A second create with the same id, from a second bundle.
    let mut b2 = Bundle::new(&["true"]);
    b2.config_mut()["linux"]["cgroupsPath"] = json!(c.cgroups_path());
    b2.write_config();
    let mut cmd = rt.cmd();
    cmd.arg("create").arg("--bundle").arg(b2.path()).arg(&c.id);
    let o = output_to_files(cmd, &b2.stdout_log(), &b2.stderr_log(), CMD_TIMEOUT);
    assert!(
        !o.status.success(),
        "second create with id {} succeeded",
        c.id
    );
    let err = stderr(&o);
    if is_runc() {
        assert!(err.contains("already exists"), "unexpected error: {err}");
    } else {
        assert!(
            err.contains(&c.id),
            "error does not name the id {}: {err}",
            c.id
        );
    }
    // The first container is untouched.
    assert_eq!(c.status(), "created");
    assert_eq!(c.pid(), pid);
    assert!(pid_alive(pid));
    assert!(mounts_under(b2.path()).is_empty());
    assert!(processes_in(b2.path()).is_empty());
    assert_ok(&c.delete_force());
    assert_nothing_left(&c, &b);
}

#[test]
fn bad_signal_name() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "100"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let o = c.kill("SIGBOGUS");
    assert_fails_with(&o, "kill SIGBOGUS", &["BOGUS"]);
    assert_eq!(
        c.status(),
        "running",
        "a bad signal must not affect the container"
    );
    let o = c.kill("99");
    assert!(!o.status.success(), "kill with signal 99 succeeded");
    assert_ok(&c.delete_force());
    assert_nothing_left(&c, &b);
}

#[test]
fn unknown_container_id() {
    let rt = Runtime::new();
    let id = unique_id("missing");
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
    ] {
        let o = rt.exec_args(&args);
        assert!(
            !o.status.success(),
            "{args:?} on a missing container succeeded"
        );
        let err = stderr(&o);
        if !is_runc() {
            assert!(
                err.contains(&id),
                "{args:?}: error does not name {id}: {err}"
            );
        } else {
            assert!(err.contains("not exist"), "{args:?}: {err}");
        }
    }
}

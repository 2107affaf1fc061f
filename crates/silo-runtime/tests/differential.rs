//! Differential tests: the same bundle run under runc and under the runtime under
//! test must look the same from inside (silo-check output), apart from fields that
//! legitimately differ between two runs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Fields allowed to differ between two runtimes (none of silo-check's fields carry
/// namespace inode numbers; pids differ only for exec'd processes).
///
/// Deliberate differences, documented in docs/ARCHITECTURE.md: silo honours the
/// `ro` option of a `cgroup` mount on the tmpfs that holds the hierarchies (runc
/// leaves that tmpfs writable), and on a hybrid host it also shows the cgroup2
/// hierarchy at /sys/fs/cgroup/unified, as the host does.
const IGNORED: &[&str] = &[
    "pid",
    "mount./sys/fs/cgroup",
    "mount./sys/fs/cgroup/unified",
];

fn report(rt: &Runtime, mutate: &dyn Fn(&mut Value)) -> BTreeMap<String, String> {
    let mut b = Bundle::new(&["silo-check"]);
    mutate(b.config_mut());
    let c = rt.container(&mut b);
    let o = c.run();
    assert_ok(&o);
    let mut m = parse_check(&stdout(&o));
    for k in IGNORED {
        m.remove(*k);
    }
    m
}

fn exec_report(rt: &Runtime, mutate: &dyn Fn(&mut Value)) -> BTreeMap<String, String> {
    let mut b = Bundle::new(&["sleep", "1000"]);
    mutate(b.config_mut());
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let o = c.exec(&["--user", "1000:1000", "--cwd", "/tmp"], &["silo-check"]);
    assert_ok(&o);
    let mut m = parse_check(&stdout(&o));
    for k in IGNORED {
        m.remove(*k);
    }
    assert_ok(&c.delete_force());
    m
}

fn compare(name: &str, mutate: &dyn Fn(&mut Value), exec: bool) {
    if is_runc() {
        eprintln!("differential/{name}: skipped, SILO_TEST_RUNTIME is runc itself");
        return;
    }
    let runc = Runtime::with_binary(runc_path());
    let ours = Runtime::new();
    let (a, b) = if exec {
        (exec_report(&runc, mutate), exec_report(&ours, mutate))
    } else {
        (report(&runc, mutate), report(&ours, mutate))
    };
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()) {
        if a.get(k) != b.get(k) && !diffs.iter().any(|(d, _, _)| d == k) {
            diffs.push((k.clone(), a.get(k).cloned(), b.get(k).cloned()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}: runc vs {} differ (key, runc, ours):\n{diffs:#?}",
        ours.bin().display()
    );
}

#[test]
fn default_bundle() {
    compare("default", &|_| {}, false);
}

#[test]
fn docker_like_bundle() {
    compare(
        "docker-like",
        &|c| {
            let caps = json!(DOCKER_CAPS);
            c["process"]["capabilities"] =
                json!({"bounding": caps, "effective": caps, "permitted": caps});
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
            c["process"]["oomScoreAdj"] = json!(100);
            c["process"]["rlimits"] =
                json!([{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192}]);
            c["hostname"] = json!("diff");
            c["root"]["readonly"] = json!(true);
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            c["linux"]["resources"]["memory"] = json!({"limit": 134217728});
            c["linux"]["resources"]["pids"] = json!({"limit": 100});
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        },
        false,
    );
}

#[test]
fn no_new_privileges_off_and_cgroup_ns() {
    compare(
        "nnp-off",
        &|c| {
            c["process"]["noNewPrivileges"] = json!(false);
            c["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .push(json!({"type": "cgroup"}));
        },
        false,
    );
}

#[test]
fn exec_process() {
    compare("exec", &|_| {}, true);
}

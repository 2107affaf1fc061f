//! What a process sees from inside the container, reported by silo-check:
//! namespaces, identity, capabilities, seccomp, mounts, masked and read-only paths,
//! limits, cgroups, sysctls, user namespaces, oomScoreAdj, hooks, fds, and two
//! escape classes (/proc/1/exe of a created container; symlinked mount targets).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Runs silo-check (optionally followed by more shell) in the foreground and parses it.
fn check(b: &mut Bundle, rt: &Runtime) -> BTreeMap<String, String> {
    let c = rt.container(b);
    let o = c.run();
    assert_ok(&o);
    parse_check(&stdout(&o))
}

fn check_with(mutate: impl FnOnce(&mut Value)) -> BTreeMap<String, String> {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["silo-check"]);
    mutate(b.config_mut());
    check(&mut b, &rt)
}

#[track_caller]
fn expect(m: &BTreeMap<String, String>, key: &str, want: &str) {
    assert_eq!(
        m.get(key).map(String::as_str),
        Some(want),
        "{key} (full report: {m:#?})"
    );
}

#[test]
fn default_config_view() {
    let m = check_with(|_| {});
    for ns in ["ipc", "mnt", "net", "pid", "uts"] {
        expect(&m, &format!("ns.{ns}"), "yes");
    }
    expect(&m, "pid", "1");
    expect(&m, "uid", "0");
    expect(&m, "gid", "0");
    expect(&m, "groups", "0");
    // runc spec's default: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    expect(&m, "CapEff", "0000000020000420");
    expect(&m, "CapPrm", "0000000020000420");
    expect(&m, "CapBnd", "0000000020000420");
    expect(&m, "CapInh", "0000000000000000");
    expect(&m, "NoNewPrivs", "1");
    expect(&m, "Seccomp", "0");
    expect(&m, "hostname", "runc");
    expect(&m, "uid_map", "0 0 4294967295");
    expect(&m, "nofile.soft", "1024");
    expect(&m, "nofile.hard", "1024");
    expect(&m, "mount./proc", "proc rw");
    expect(&m, "mount./dev", "tmpfs rw");
    expect(&m, "mount./dev/pts", "devpts rw");
    expect(&m, "mount./dev/shm", "tmpfs rw");
    expect(&m, "mount./dev/mqueue", "mqueue rw");
    expect(&m, "mount./sys", "sysfs ro");
    assert!(
        m.get("mount./").is_some_and(|v| v.ends_with(" rw")),
        "{m:#?}"
    );
    // Masked and read-only paths from the default config (those this kernel has).
    for p in ["/proc/keys", "/proc/timer_list", "/sys/firmware"] {
        let host_has = std::path::Path::new(p).exists();
        expect(
            &m,
            &format!("masked.{p}"),
            if host_has { "yes" } else { "absent" },
        );
    }
    for p in ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"] {
        expect(&m, &format!("readonly.{p}"), "yes");
    }
    // No fd leaked from the runtime into the container.
    expect(&m, "fds", "0,1,2");
    expect(&m, "cwd", "/");
    expect(&m, "umask", "0022");
    expect(
        &m,
        "path",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
}

#[test]
fn docker_default_capabilities() {
    let m = check_with(|c| {
        let caps = json!(DOCKER_CAPS);
        c["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    expect(&m, "CapEff", "00000000a80425fb");
    expect(&m, "CapPrm", "00000000a80425fb");
    expect(&m, "CapBnd", "00000000a80425fb");
    expect(&m, "CapAmb", "0000000000000000");
}

#[test]
fn user_group_and_additional_gids() {
    let m = check_with(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]});
        c["process"]["cwd"] = json!("/tmp");
    });
    expect(&m, "uid", "1000");
    expect(&m, "gid", "1000");
    expect(&m, "groups", "1000,10,20");
    expect(&m, "cwd", "/tmp");
}

#[test]
fn seccomp_profile_is_enforced() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "silo-check; if mkdir /tmp/blocked 2>/dev/null; then echo mkdir=ok; else echo mkdir=denied; fi",
    ]);
    b.config_mut()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    });
    let m = check(&mut b, &rt);
    expect(&m, "Seccomp", "2");
    expect(&m, "NoNewPrivs", "1");
    expect(&m, "mkdir", "denied");
}

#[test]
fn hostname_domainname_rlimits() {
    let m = check_with(|c| {
        c["hostname"] = json!("silo-host");
        c["domainname"] = json!("silo.example");
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]);
    });
    expect(&m, "hostname", "silo-host");
    if is_runc() {
        // runc 1.1 ignores `domainname` (support came in 1.2).
        eprintln!("runc: not checking domainname");
    } else {
        expect(&m, "domainname", "silo.example");
    }
    expect(&m, "nofile.soft", "512");
    expect(&m, "nofile.hard", "768");
}

#[test]
fn cgroup_limits_are_visible_inside() {
    let m = check_with(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = json!({"limit": 64});
        c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    });
    if m.get("cgroup.version").map(String::as_str) == Some("2") {
        expect(&m, "cgroup.memory", "67108864");
        expect(&m, "cgroup.pids", "64");
        expect(&m, "cgroup.cpu", "50000 100000");
    } else {
        expect(&m, "cgroup.memory", "67108864");
        expect(&m, "cgroup.pids", "64");
        expect(&m, "cgroup.cpu", "50000");
    }
}

#[test]
fn sysctl_in_network_namespace() {
    let m = check_with(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    });
    expect(&m, "sysctl.net.ipv4.ip_forward", "1");
    // The host's value is untouched (we only changed the container's net ns).
    let host = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host ip_forward");
    assert!(host == "0\n" || host == "1\n");
}

#[test]
fn readonly_rootfs() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "silo-check; if touch /written 2>/dev/null; then echo write=ok; else echo write=denied; fi",
    ]);
    b.config_mut()["root"]["readonly"] = json!(true);
    let m = check(&mut b, &rt);
    assert!(
        m.get("mount./").is_some_and(|v| v.ends_with(" ro")),
        "{m:#?}"
    );
    expect(&m, "write", "denied");
    assert!(!b.rootfs().join("written").exists());
}

#[test]
fn user_namespace_with_mappings() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sh", "-c", "silo-check; exec sleep 1000"]);
    {
        let cfg = b.config_mut();
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        // A v1 cgroup bind cannot be mounted from an unprivileged user namespace.
        let mounts = cfg["mounts"].as_array_mut().expect("mounts");
        mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    }
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let pid = c.pid();
    // Wait for silo-check to finish printing.
    let mut out = String::new();
    for _ in 0..250 {
        out = c.init_stdout();
        if out.contains("path=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = parse_check(&out);
    expect(&m, "uid", "0");
    expect(&m, "ns.user", "yes");
    expect(&m, "uid_map", "0 100000 65536");
    expect(&m, "gid_map", "0 100000 65536");
    let uid = proc_status_field(pid, "Uid").expect("Uid of the init on the host");
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["100000"; 4],
        "host view of uid 0 inside"
    );
    let gid = proc_status_field(pid, "Gid").expect("Gid");
    assert_eq!(gid.split_whitespace().next(), Some("100000"));
    assert_ok(&c.delete_force());
    c.assert_gone();
}

#[test]
fn oom_score_adj_raise_works_lower_fails_clearly() {
    let m = check_with(|c| {
        c["process"]["oomScoreAdj"] = json!(500);
    });
    expect(&m, "oom_score_adj", "500");

    // Lowering below our own value needs CAP_SYS_RESOURCE, which root lacks here.
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.config_mut()["process"]["oomScoreAdj"] = json!(own - 500);
    let c = rt.container(&mut b);
    let o = c.create();
    assert!(
        !o.status.success(),
        "lowering oomScoreAdj to {} succeeded without CAP_SYS_RESOURCE",
        own - 500
    );
    let err = stderr(&o);
    if is_runc() {
        assert!(err.contains("oom_score_adj"), "{err}");
    } else {
        assert!(
            err.contains("oomScoreAdj"),
            "error does not name oomScoreAdj: {err}"
        );
    }
    assert!(mounts_under(b.path()).is_empty());
    c.assert_gone();
}

#[test]
fn all_hook_kinds_run_with_state_on_stdin() {
    let rt = Runtime::new();
    let marks = tempfile::Builder::new()
        .prefix("silo-hooks-")
        .tempdir()
        .expect("hooks dir");
    let mdir = marks.path().to_str().expect("utf8").to_string();
    let mut b = Bundle::new(&["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
    let hook = |kind: &str| json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {mdir}/{kind}.json")]}]);
    {
        let cfg = b.config_mut();
        // The marker dir is visible at the same path inside, for hooks that run
        // in the container's mount namespace.
        cfg["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": mdir, "type": "bind", "source": mdir, "options": ["rbind", "rw"]
        }));
        cfg["hooks"] = json!({
            "prestart": hook("prestart"),
            "createRuntime": hook("createRuntime"),
            "createContainer": hook("createContainer"),
            "startContainer": hook("startContainer"),
            "poststart": hook("poststart"),
            "poststop": hook("poststop"),
        });
    }
    let c = rt.container(&mut b);
    let read = |kind: &str| -> Option<Value> {
        let text = fs::read_to_string(marks.path().join(format!("{kind}.json"))).ok()?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{kind} got bad JSON {e}: {text:?}")),
        )
    };
    assert_ok(&c.create());
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let st = read(kind).unwrap_or_else(|| panic!("{kind} hook did not run on create"));
        assert_eq!(st["id"], json!(c.id), "{kind} state");
        assert!(
            st["pid"].as_i64().unwrap_or(0) > 0,
            "{kind} state lacks pid: {st}"
        );
        assert!(st["bundle"].is_string(), "{kind} state lacks bundle: {st}");
    }
    assert!(
        read("startContainer").is_none(),
        "startContainer ran before start"
    );
    if !is_runc() {
        // runc 1.1 runs poststart hooks during `create`; the spec says after start.
        assert!(read("poststart").is_none(), "poststart ran before start");
    }

    assert_ok(&c.start());
    c.wait_status("running", WAIT);
    let st = read("startContainer").expect("startContainer hook did not run");
    assert_eq!(st["id"], json!(c.id));
    // poststart runs after start returns at the latest.
    let st = read("poststart").expect("poststart hook did not run");
    assert_eq!(st["id"], json!(c.id));

    assert_ok(&c.kill("TERM"));
    c.wait_status("stopped", WAIT);
    assert!(read("poststop").is_none(), "poststop ran before delete");
    assert_ok(&c.delete());
    let st = read("poststop").expect("poststop hook did not run on delete");
    assert_eq!(st["id"], json!(c.id));
    c.assert_gone();
    assert!(mounts_under(b.path()).is_empty());
}

#[test]
fn exec_sees_no_leaked_fds() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    let o = c.exec(&[], &["silo-check"]);
    assert_ok(&o);
    let m = parse_check(&stdout(&o));
    expect(&m, "fds", "0,1,2");
    assert_ne!(m.get("pid").map(String::as_str), Some("1"));
    expect(&m, "NoNewPrivs", "1");
    expect(&m, "CapEff", "0000000020000420");
    assert_ok(&c.delete_force());
}

#[test]
fn proc_1_exe_of_created_container_is_protected() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let c = rt.container(&mut b);
    assert_ok(&c.create());
    assert_eq!(c.status(), "created");
    // Overwriting the runtime binary through /proc/1/exe must never work.
    let o = c.exec(&[], &["sh", "-c", "echo pwned >> /proc/1/exe"]);
    assert!(
        !o.status.success(),
        "wrote to /proc/1/exe of a created container"
    );
    if !is_runc() {
        // runc hands out a sealed memfd copy there, which is harmless to read; silo
        // does not re-exec, so the init must not be readable through /proc at all.
        let o = c.exec(&[], &["sh", "-c", "cat /proc/1/exe >/dev/null"]);
        assert!(
            !o.status.success(),
            "read /proc/1/exe of a created container"
        );
    }
    let runtime = fs::read(rt.bin()).expect("read runtime binary");
    assert!(
        !runtime.ends_with(b"pwned\n"),
        "runtime binary was modified"
    );
    assert_ok(&c.delete_force());
    c.assert_gone();
}

#[test]
fn symlinked_mount_destination_stays_in_rootfs() {
    let rt = Runtime::new();
    let host_target = tempfile::Builder::new()
        .prefix("silo-host-target-")
        .tempdir()
        .expect("host target");
    let mut b = Bundle::new(&["sh", "-c", "echo escaped > /evil/marker; exec sleep 1000"]);
    std::os::unix::fs::symlink(host_target.path(), b.rootfs().join("evil")).expect("symlink");
    b.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(
            json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "nodev", "size=1m"]}),
        );
    let c = rt.container(&mut b);
    let o = c.run_detached();
    if o.status.success() {
        c.wait_status("running", WAIT);
        std::thread::sleep(Duration::from_millis(200));
        let host_mounts = mounts_under(host_target.path());
        assert!(
            host_mounts.is_empty(),
            "mounted on the host: {host_mounts:?}"
        );
        assert!(
            !host_target.path().join("marker").exists(),
            "container wrote through the symlink onto the host"
        );
        assert_ok(&c.delete_force());
    } else {
        // Refusing the symlinked destination is also acceptable.
        assert!(mounts_under(host_target.path()).is_empty());
    }
    assert!(fs::read_dir(host_target.path())
        .expect("read")
        .next()
        .is_none());
    c.assert_gone();
}

#[test]
fn failing_post_hooks_do_not_stop_the_others_and_poststart_sees_the_program() {
    let rt = Runtime::new();
    let marks = tempfile::Builder::new()
        .prefix("silo-hooks-")
        .tempdir()
        .expect("hooks dir");
    let mdir = marks.path().to_str().expect("utf8").to_string();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let sh = |script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    // The pid from the state on stdin, then what that process runs.
    let cmdline = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {mdir}/poststart"
    );
    {
        let cfg = b.config_mut();
        cfg["hooks"] = json!({
            "prestart": [sh(format!("cat > {mdir}/prestart.json"))],
            "poststart": [sh("exit 3".into()), sh(cmdline)],
            "poststop": [sh("exit 4".into()), sh(format!("touch {mdir}/poststop"))],
        });
        // A FIFO among the devices: made, and no device cgroup rule for it.
        cfg["linux"]["devices"] = json!([{"path": "/dev/myfifo", "type": "p", "fileMode": 420}]);
    }
    let c = rt.container(&mut b);
    assert_ok(&c.create());
    assert_ok(&c.start());
    c.wait_status("running", WAIT);
    let ran = fs::read_to_string(marks.path().join("poststart")).expect("second poststart hook");
    assert_eq!(
        ran.trim(),
        "sleep 1000",
        "poststart ran before the program was executed"
    );
    let o = c.exec(&[], &["test", "-p", "/dev/myfifo"]);
    assert_ok(&o);
    if !is_runc() {
        // The spec's state for the create-time hooks (runc says "creating").
        let st: Value =
            serde_json::from_str(&fs::read_to_string(marks.path().join("prestart.json")).unwrap())
                .unwrap();
        assert_eq!(st["status"], "created", "{st}");
    }
    assert_ok(&c.delete_force());
    assert!(
        marks.path().join("poststop").exists(),
        "second poststop hook did not run"
    );
    c.assert_gone();
}

#[test]
fn rootfs_propagation_is_applied_to_the_new_root() {
    let rt = Runtime::new();
    for (prop, want) in [
        ("unbindable", Some("unbindable")),
        ("shared", Some("shared:")),
        ("private", None),
    ] {
        let mut b = Bundle::new(&["sleep", "1000"]);
        b.config_mut()["linux"]["rootfsPropagation"] = json!(prop);
        let c = rt.container(&mut b);
        assert_ok(&c.run_detached());
        let o = c.exec(&[], &["cat", "/proc/self/mountinfo"]);
        assert_ok(&o);
        let out = stdout(&o);
        let root = out
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no \"/\" in mountinfo:\n{out}"));
        // The optional fields sit between the mount options and " - ".
        let optional = root.split(" - ").next().unwrap_or("");
        match want {
            Some(tag) => assert!(optional.contains(tag), "{prop}: {root}"),
            None => assert!(
                !optional.contains("shared:")
                    && !optional.contains("master:")
                    && !optional.contains("unbindable"),
                "{prop}: {root}"
            ),
        }
        assert_ok(&c.delete_force());
        c.assert_gone();
    }
}

#[test]
fn a_bundle_without_a_mount_namespace_runs_and_leaves_no_mount() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    let namespaces = b.config_mut()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap();
    namespaces.retain(|n| n["type"] != "mount");
    let rootfs = b.rootfs().canonicalize().unwrap();
    let mounts_under = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|mp| std::path::Path::new(mp).starts_with(dir))
            .map(str::to_string)
            .collect()
    };
    std::fs::write(rootfs.join("only-in-this-rootfs"), "yes\n").unwrap();
    let host_root = || -> String {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .unwrap_or("")
            .to_string()
    };
    let before = host_root();
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    // The host's root keeps its propagation.
    assert_eq!(host_root(), before);
    // proc, sys and dev are mounted inside the rootfs, in our namespace.
    assert!(
        !mounts_under(&rootfs).is_empty(),
        "no mounts under the rootfs"
    );
    // The container sees its own root and /proc.
    let o = c.exec(&[], &["ls", "/proc/self/"]);
    assert_ok(&o);
    let o = c.exec(&[], &["cat", "/only-in-this-rootfs"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "yes");
    assert_ok(&c.delete_force());
    c.assert_gone();
    assert!(
        mounts_under(&rootfs).is_empty(),
        "left mounted: {:?}",
        mounts_under(&rootfs)
    );
}

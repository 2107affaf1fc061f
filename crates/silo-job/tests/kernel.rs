//! Real-kernel tests on this (hybrid) host: every group is named silo-test-<pid>-<n> and destroyed.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use silo_job::{CgroupFs, Job, Layout};
use silo_oci::{Cpu, DeviceCgroup, Memory, Pids, Resources};

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "silo-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Destroys the group even if the test panics.
struct Guard(Job);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

fn host() -> CgroupFs {
    CgroupFs::detect().expect("detect cgroup mounts")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Runs `script` under sh after the shell has joined every hierarchy of `job`.
fn spawn_in(job: &Job, script: &str) -> Child {
    let joins: Vec<String> = job
        .procs_files()
        .iter()
        .map(|f| format!("echo $$ > '{}' || exit 99;", f.display()))
        .collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!("{} {script}", joins.join(" ")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn host_is_hybrid() {
    let fs = host();
    assert_eq!(fs.layout(), Layout::Hybrid);
    assert_eq!(
        fs.controllers()["memory"],
        Path::new("/sys/fs/cgroup/memory")
    );
}

#[test]
fn create_apply_read_back_destroy() {
    let fs = host();
    let parent = unique("parent");
    let path = format!("/{parent}/leaf");
    let job = Job::create(&fs, &path).unwrap();
    let g = Guard(job.clone());
    let r = Resources {
        memory: Some(Memory {
            limit: Some(64 << 20),
            swap: Some(96 << 20),
            reservation: Some(32 << 20),
            ..Default::default()
        }),
        cpu: Some(Cpu {
            shares: Some(512),
            quota: Some(50_000),
            period: Some(100_000),
            ..Default::default()
        }),
        pids: Some(Pids { limit: 10 }),
        ..Default::default()
    };
    let warnings = job.apply(&r).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let m = job.controller_dir("memory").unwrap();
    assert_eq!(
        read(&m.join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&m.join("memory.memsw.limit_in_bytes")),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        read(&m.join("memory.soft_limit_in_bytes")),
        (32u64 << 20).to_string()
    );
    // Shrinking both: the limit has to go down before memsw.
    let shrink = Resources {
        memory: Some(Memory {
            limit: Some(16 << 20),
            swap: Some(16 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    job.apply(&shrink).unwrap();
    assert_eq!(
        read(&m.join("memory.memsw.limit_in_bytes")),
        (16u64 << 20).to_string()
    );
    // Growing both: memsw has to go up first.
    let grow = Resources {
        memory: Some(Memory {
            limit: Some(128 << 20),
            swap: Some(256 << 20),
            ..Default::default()
        }),
        ..Default::default()
    };
    job.apply(&grow).unwrap();
    assert_eq!(
        read(&m.join("memory.limit_in_bytes")),
        (128u64 << 20).to_string()
    );
    let c = job.controller_dir("cpu").unwrap();
    assert_eq!(read(&c.join("cpu.shares")), "512");
    assert_eq!(read(&c.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&c.join("cpu.cfs_period_us")), "100000");
    let p = job.controller_dir("pids").unwrap();
    assert_eq!(read(&p.join("pids.max")), "10");
    // cpuset was seeded from the parent at every level, so tasks can join.
    let cs = job.controller_dir("cpuset").unwrap();
    assert!(!read(&cs.join("cpuset.cpus")).is_empty());
    assert!(!read(&cs.join("cpuset.mems")).is_empty());
    // A kernel-rejected value names the field.
    let bad = Resources {
        cpu: Some(Cpu {
            quota: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = job.apply(&bad).unwrap_err().to_string();
    assert!(e.contains("linux.resources.cpu.quota"), "{e}");

    // Open finds the same group.
    let again = Job::open(&fs, &path).unwrap();
    assert_eq!(again.procs_files(), job.procs_files());

    let dirs = job.dirs();
    assert!(dirs.len() >= 9, "{dirs:?}");
    assert!(dirs.iter().any(|d| d.starts_with("/sys/fs/cgroup/unified")));
    job.destroy().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
        // Only the leaf goes; the parent stays.
        assert!(d.parent().unwrap().is_dir());
    }
    job.destroy().unwrap(); // idempotent
    drop(g);
    for root in fs.controllers().values() {
        let _ = std::fs::remove_dir(root.join(&parent));
    }
    let _ = std::fs::remove_dir(fs.unified().unwrap().join(&parent));
    assert!(!Path::new("/sys/fs/cgroup/memory").join(&parent).exists());
}

#[test]
fn membership_freeze_thaw_and_kill_on_destroy() {
    let fs = host();
    let job = Job::create(&fs, &unique("freeze")).unwrap();
    let _g = Guard(job.clone());
    let mut child = Command::new("sleep").arg("100").spawn().unwrap();
    let pid = child.id() as i32;
    job.add_pid(pid).unwrap();
    assert_eq!(job.pids().unwrap(), vec![pid]);
    for f in job.procs_files() {
        assert!(
            read(&f).lines().any(|l| l == pid.to_string()),
            "{}",
            f.display()
        );
    }
    assert!(!job.is_frozen().unwrap());
    job.freeze().unwrap();
    assert!(job.is_frozen().unwrap());
    let state = job.controller_dir("freezer").unwrap().join("freezer.state");
    assert_eq!(read(&state), "FROZEN");
    job.thaw().unwrap();
    assert!(!job.is_frozen().unwrap());
    assert_eq!(read(&state), "THAWED");

    // Destroy while frozen: it must thaw so SIGKILL lands.
    job.freeze().unwrap();
    let dirs = job.dirs();
    job.destroy().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn cpu_usage_is_accounted() {
    let fs = host();
    let job = Job::create(&fs, &unique("cpu")).unwrap();
    let _g = Guard(job.clone());
    let mut child = spawn_in(
        &job,
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 0",
    );
    assert!(child.wait().unwrap().success());
    let s = job.stats().unwrap();
    assert!(s.cpu.usage_ns > 10_000_000, "{s:?}");
    assert!(s.cpu.user_ns > 0, "{s:?}");
    assert!(s.memory.peak > 0, "{s:?}");
    assert_eq!(s.pids.current, 0);
    job.destroy().unwrap();
}

#[test]
fn pids_limit_hits_are_counted() {
    let fs = host();
    let job = Job::create(&fs, &unique("pids")).unwrap();
    let _g = Guard(job.clone());
    job.apply(&Resources {
        pids: Some(Pids { limit: 1 }),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(job.stats().unwrap().pids.limit, Some(1));
    let mut child = spawn_in(&job, "sleep 0 & wait; exit 0");
    let st = child.wait().unwrap();
    assert_ne!(st.code(), Some(99), "joining the group failed");
    let s = job.stats().unwrap();
    assert!(s.pids.limit_hits >= 1, "{s:?}");
    job.destroy().unwrap();
}

#[test]
fn oom_kill_is_counted() {
    let fs = host();
    let job = Job::create(&fs, &unique("oom")).unwrap();
    let _g = Guard(job.clone());
    job.apply(&Resources {
        memory: Some(Memory {
            limit: Some(8 << 20),
            swap: Some(8 << 20),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    // dd fills a 64 MiB buffer: far over the 8 MiB limit with no swap to fall back on.
    let mut child = spawn_in(&job, "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 0");
    let st = child.wait().unwrap();
    assert_ne!(st.code(), Some(99), "joining the group failed");
    let s = job.stats().unwrap();
    assert!(s.memory.oom_kills >= 1, "{s:?}");
    assert_eq!(s.memory.limit, Some(8 << 20));
    job.destroy().unwrap();
}

#[test]
fn v1_devices_rules_are_enforced() {
    let fs = host();
    let job = Job::create(&fs, &unique("dev")).unwrap();
    let _g = Guard(job.clone());
    let rules = [
        DeviceCgroup {
            allow: false,
            access: Some("rwm".into()),
            ..Default::default()
        },
        DeviceCgroup {
            allow: true,
            typ: Some("c".into()),
            major: Some(1),
            minor: Some(3),
            access: Some("rwm".into()),
        },
    ];
    job.apply_devices(&rules).unwrap();
    let list = job.controller_dir("devices").unwrap().join("devices.list");
    assert_eq!(read(&list), "c 1:3 rwm");
    // /dev/null (1:3) opens, /dev/zero (1:5) does not.
    let mut child = spawn_in(
        &job,
        "echo hi > /dev/null || exit 3; if head -c1 /dev/zero >/dev/null; then exit 4; fi; exit 0",
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    job.destroy().unwrap();
}

#[test]
fn pure_v2_on_the_unified_mount() {
    let root = Path::new("/sys/fs/cgroup/unified");
    let restore = RestoreSubtree(
        root.join("cgroup.subtree_control"),
        read(&root.join("cgroup.subtree_control")),
    );
    let fs = CgroupFs::v2(root.to_path_buf());
    let job = Job::create(&fs, &unique("v2")).unwrap();
    let g = Guard(job.clone());
    assert_eq!(job.procs_files().len(), 1);

    let mut child = Command::new("sleep").arg("100").spawn().unwrap();
    let pid = child.id() as i32;
    job.add_pid(pid).unwrap();
    assert_eq!(job.pids().unwrap(), vec![pid]);
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        own.lines().any(|l| l == format!("0::/{}", job.path())),
        "{own}"
    );

    job.freeze().unwrap();
    assert!(job.is_frozen().unwrap());
    job.thaw().unwrap();
    assert!(!job.is_frozen().unwrap());

    // Device filtering through a BPF program attached to the group.
    let rules = [
        DeviceCgroup {
            allow: false,
            ..Default::default()
        },
        DeviceCgroup {
            allow: true,
            typ: Some("c".into()),
            major: Some(1),
            minor: Some(3),
            access: Some("rw".into()),
        },
    ];
    job.apply_devices(&rules).unwrap();
    let mut sh = spawn_in(
        &job,
        "echo hi > /dev/null || exit 3; if head -c1 /dev/zero >/dev/null; then exit 4; fi; exit 0",
    );
    assert_eq!(sh.wait().unwrap().code(), Some(0));
    // Re-applying replaces the program: /dev/zero (1:5) becomes readable.
    let mut more = rules.to_vec();
    more.push(DeviceCgroup {
        allow: true,
        typ: Some("c".into()),
        major: Some(1),
        minor: Some(5),
        access: Some("r".into()),
    });
    job.apply_devices(&more).unwrap();
    let mut sh = spawn_in(
        &job,
        "head -c1 /dev/zero >/dev/null || exit 5; if head -c1 /dev/zero > /dev/zero; then exit 6; fi; exit 0",
    );
    assert_eq!(sh.wait().unwrap().code(), Some(0));

    let dir = job.unified_dir().unwrap().to_path_buf();
    job.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(!dir.exists());
    assert!(wait_for(|| !dir.exists()));
    drop(g);
    let before = restore.1.clone();
    drop(restore);
    assert_eq!(read(&root.join("cgroup.subtree_control")), before);
}

/// Creating a group on a v2 root enables its controllers there; undo that afterwards, even on panic.
struct RestoreSubtree(std::path::PathBuf, String);
impl Drop for RestoreSubtree {
    fn drop(&mut self) {
        let after = std::fs::read_to_string(&self.0).unwrap_or_default();
        for c in after.split_whitespace() {
            if !self.1.split_whitespace().any(|b| b == c) {
                let _ = std::fs::write(&self.0, format!("-{c}"));
            }
        }
    }
}

#[test]
fn destroy_reaches_into_child_groups() {
    let fs = host();
    let path = unique("nested");
    let job = Job::create(&fs, &path).unwrap();
    let _g = Guard(job.clone());
    let sub = Job::create(&fs, &format!("{path}/sub")).unwrap();
    let mut child = Command::new("sleep").arg("100").spawn().unwrap();
    sub.add_pid(child.id() as i32).unwrap();
    // Direct members only: the sleeper lives in the sub-group.
    assert!(job.pids().unwrap().is_empty());
    assert_eq!(sub.pids().unwrap(), vec![child.id() as i32]);
    let dirs = job.dirs();
    job.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

//! Fixture tests for the job layer: v1 and v2 trees laid out in temp dirs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use silo_oci::{
    BlockIo, Cpu, HugepageLimit, Memory, Pids, Resources, ThrottleDevice, WeightDevice,
};

use super::*;

fn touch(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for f in files {
        fs::write(dir.join(f), "").unwrap();
    }
}

fn read(p: PathBuf) -> String {
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const V2_FILES: &[&str] = &[
    "cgroup.procs",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "memory.high",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
];

fn full_resources() -> Resources {
    Resources {
        memory: Some(Memory {
            limit: Some(100 << 20),
            reservation: Some(50 << 20),
            swap: Some(300 << 20),
            swappiness: Some(10),
            disable_oom_killer: Some(true),
            ..Default::default()
        }),
        cpu: Some(Cpu {
            shares: Some(1024),
            quota: Some(50_000),
            period: Some(200_000),
            burst: Some(1000),
            cpus: Some("0-1".into()),
            mems: Some("0".into()),
            idle: Some(1),
            ..Default::default()
        }),
        pids: Some(Pids { limit: 64 }),
        block_io: Some(BlockIo {
            weight: Some(500),
            throttle_read_bps_device: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 1000,
            }],
            throttle_write_bps_device: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 2000,
            }],
            throttle_read_iops_device: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 30,
            }],
            throttle_write_iops_device: vec![ThrottleDevice {
                major: 8,
                minor: 16,
                rate: 40,
            }],
            ..Default::default()
        }),
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 20,
        }],
        ..Default::default()
    }
}

#[test]
fn path_validation() {
    for bad in [
        "", "/", "a/../b", "..", "a//b", "./a", "a/", "a\0b", "/a/./b",
    ] {
        assert!(validate_path(bad).is_err(), "{bad:?} should be rejected");
    }
    assert_eq!(validate_path("/docker/abc").unwrap(), vec!["docker", "abc"]);
    assert_eq!(validate_path("abc").unwrap(), vec!["abc"]);
    let d = tempfile::tempdir().unwrap();
    let fsys = CgroupFs::v2(d.path().to_path_buf());
    let e = Job::create(&fsys, "a/../../etc").unwrap_err();
    assert!(e.to_string().contains("\"..\""), "{e}");
    assert!(matches!(
        Job::open(&fsys, "missing"),
        Err(OpenError::Missing { .. })
    ));
    // Nothing was created by the rejected path.
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn v2_create_enables_controllers_and_apply_writes_every_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
    fs::write(root.join("cgroup.subtree_control"), "cpu").unwrap();
    let fsys = CgroupFs::v2(root.to_path_buf());
    let job = Job::create(&fsys, "/docker/abc").unwrap();
    assert_eq!(job.path(), "docker/abc");
    // cpu was already enabled; memory then pids were written one at a time (pids last).
    assert_eq!(read(root.join("cgroup.subtree_control")), "+pids");
    let g = root.join("docker/abc");
    assert!(g.is_dir());
    touch(&g, V2_FILES);

    let warnings = job.apply(&full_resources()).unwrap();
    assert_eq!(read(g.join("memory.max")), (100u64 << 20).to_string());
    assert_eq!(read(g.join("memory.low")), (50u64 << 20).to_string());
    assert_eq!(read(g.join("memory.swap.max")), (200u64 << 20).to_string());
    assert_eq!(read(g.join("cpu.weight")), "39");
    assert_eq!(read(g.join("cpu.max")), "50000 200000");
    assert_eq!(read(g.join("cpu.max.burst")), "1000");
    assert_eq!(read(g.join("cpu.idle")), "1");
    assert_eq!(read(g.join("cpuset.cpus")), "0-1");
    assert_eq!(read(g.join("cpuset.mems")), "0");
    assert_eq!(read(g.join("pids.max")), "64");
    assert_eq!(read(g.join("io.weight")), "default 4950");
    // One line per device; 8:16 came last.
    assert_eq!(read(g.join("io.max")), "8:16 wiops=40");
    assert_eq!(read(g.join("hugetlb.2MB.max")), (4u64 << 20).to_string());
    assert!(warnings.iter().any(|w| w.contains("swappiness")));
    assert!(warnings.iter().any(|w| w.contains("disableOOMKiller")));

    // A single device gathers all its throttles on one io.max line.
    let r = Resources {
        block_io: Some(BlockIo {
            throttle_read_bps_device: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 1000,
            }],
            throttle_write_iops_device: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 7,
            }],
            ..Default::default()
        }),
        pids: Some(Pids { limit: 0 }),
        cpu: Some(Cpu {
            quota: Some(-1),
            ..Default::default()
        }),
        memory: Some(Memory {
            limit: Some(-1),
            swap: Some(-1),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(job.apply(&r).unwrap().is_empty());
    assert_eq!(read(g.join("io.max")), "8:0 rbps=1000 wiops=7");
    assert_eq!(read(g.join("pids.max")), "max");
    assert_eq!(read(g.join("cpu.max")), "max 100000");
    assert_eq!(read(g.join("memory.max")), "max");
    assert_eq!(read(g.join("memory.swap.max")), "max");
}

#[test]
fn v2_errors_name_the_field() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("g");
    touch(&g, &["cgroup.procs", "memory.max"]);
    let job = Job::open(&CgroupFs::v2(d.path().to_path_buf()), "g").unwrap();
    let err = |r: Resources| job.apply(&r).unwrap_err().to_string();

    let e = err(Resources {
        memory: Some(Memory {
            limit: Some(-5),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.starts_with("linux.resources.memory.limit:"), "{e}");
    let e = err(Resources {
        memory: Some(Memory {
            limit: Some(300),
            swap: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.starts_with("linux.resources.memory.swap:"), "{e}");
    let e = err(Resources {
        hugepage_limits: vec![HugepageLimit {
            page_size: "1GB".into(),
            limit: 1,
        }],
        ..Default::default()
    });
    assert!(
        e.contains("hugepageLimits[0]") && e.contains("hugetlb.1GB.max"),
        "{e}"
    );
    let e = err(Resources {
        hugepage_limits: vec![HugepageLimit {
            page_size: "../x".into(),
            limit: 1,
        }],
        ..Default::default()
    });
    assert!(e.contains("hugepageLimits[0]"), "{e}");
    let e = err(Resources {
        block_io: Some(BlockIo {
            weight: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.starts_with("linux.resources.blockIO.weight:"), "{e}");
    let e = err(Resources {
        cpu: Some(Cpu {
            shares: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.starts_with("linux.resources.cpu.shares:"), "{e}");
    let e = err(Resources {
        cpu: Some(Cpu {
            realtime_runtime: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.contains("realtimeRuntime"), "{e}");
}

#[test]
fn unified_keys_are_validated() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("g");
    touch(&g, &["cgroup.procs", "memory.high"]);
    fs::write(d.path().join("outside"), "keep").unwrap();
    let job = Job::open(&CgroupFs::v2(d.path().to_path_buf()), "g").unwrap();
    let with = |k: &str, v: &str| Resources {
        unified: BTreeMap::from([(k.to_string(), v.to_string())]),
        ..Default::default()
    };
    job.apply(&with("memory.high", "12345")).unwrap();
    assert_eq!(read(g.join("memory.high")), "12345");
    for bad in ["../outside", ".hidden", "a/b", ""] {
        let e = job.apply(&with(bad, "1")).unwrap_err();
        assert!(matches!(e, ApplyError::Invalid { .. }), "{bad:?}: {e}");
        assert!(e.to_string().contains("linux.resources.unified"), "{e}");
    }
    let e = job.apply(&with("memory.nonexistent", "1")).unwrap_err();
    assert!(
        e.to_string().contains("memory.nonexistent") && e.to_string().contains("does not exist"),
        "{e}"
    );
    assert!(!g.join("memory.nonexistent").exists());
    assert_eq!(read(d.path().join("outside")), "keep");
}

/// A v1 fixture: one dir per controller under `root`, cpu and cpuacct sharing one.
fn v1_fs(root: &Path, with_unified: bool) -> CgroupFs {
    let mut c = BTreeMap::new();
    for name in [
        "cpuset", "memory", "pids", "blkio", "freezer", "devices", "hugetlb",
    ] {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        c.insert(name.to_string(), dir);
    }
    let joint = root.join("cpu,cpuacct");
    fs::create_dir_all(&joint).unwrap();
    c.insert("cpu".into(), joint.clone());
    c.insert("cpuacct".into(), joint);
    fs::write(root.join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    fs::write(root.join("cpuset/cpuset.mems"), "0\n").unwrap();
    let unified = with_unified.then(|| {
        let u = root.join("unified");
        fs::create_dir_all(&u).unwrap();
        u
    });
    CgroupFs::v1(c, unified)
}

#[test]
fn v1_create_copies_cpuset_and_apply_writes_every_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let fsys = v1_fs(root, true);
    assert_eq!(fsys.layout(), Layout::Hybrid);
    // Pretend the kernel made empty cpuset files for the first level.
    fs::create_dir_all(root.join("cpuset/docker")).unwrap();
    fs::write(root.join("cpuset/docker/cpuset.cpus"), "\n").unwrap();
    fs::write(root.join("cpuset/docker/cpuset.mems"), "").unwrap();
    let job = Job::create(&fsys, "docker/c1").unwrap();
    assert_eq!(read(root.join("cpuset/docker/cpuset.cpus")), "0-3");
    assert_eq!(read(root.join("cpuset/docker/cpuset.mems")), "0");
    // Every hierarchy has the group, the shared cpu,cpuacct one only once.
    let files = job.procs_files();
    assert_eq!(files.len(), 9, "{files:?}");
    assert!(files.contains(&root.join("cpu,cpuacct/docker/c1/cgroup.procs")));
    assert!(files.contains(&root.join("unified/docker/c1/cgroup.procs")));

    let g = |c: &str| root.join(c).join("docker/c1");
    touch(
        &g("memory"),
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ],
    );
    fs::write(g("memory").join("memory.memsw.limit_in_bytes"), "1000").unwrap();
    touch(
        &g("cpu,cpuacct"),
        &[
            "cpu.shares",
            "cpu.cfs_quota_us",
            "cpu.cfs_period_us",
            "cpu.cfs_burst_us",
            "cpu.idle",
        ],
    );
    touch(&g("cpuset"), &["cpuset.cpus", "cpuset.mems"]);
    touch(&g("pids"), &["pids.max"]);
    touch(
        &g("blkio"),
        &[
            "blkio.bfq.weight",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ],
    );
    touch(&g("hugetlb"), &["hugetlb.2MB.limit_in_bytes"]);
    touch(&g("unified"), &["memory.high"]);

    let mut r = full_resources();
    r.unified.insert("memory.high".into(), "777".into());
    let warnings = job.apply(&r).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let m = g("memory");
    assert_eq!(
        read(m.join("memory.limit_in_bytes")),
        (100u64 << 20).to_string()
    );
    assert_eq!(
        read(m.join("memory.soft_limit_in_bytes")),
        (50u64 << 20).to_string()
    );
    assert_eq!(
        read(m.join("memory.memsw.limit_in_bytes")),
        (300u64 << 20).to_string()
    );
    assert_eq!(read(m.join("memory.swappiness")), "10");
    assert_eq!(read(m.join("memory.oom_control")), "1");
    let c = g("cpu,cpuacct");
    assert_eq!(read(c.join("cpu.shares")), "1024");
    assert_eq!(read(c.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(c.join("cpu.cfs_period_us")), "200000");
    assert_eq!(read(c.join("cpu.cfs_burst_us")), "1000");
    assert_eq!(read(c.join("cpu.idle")), "1");
    assert_eq!(read(g("cpuset").join("cpuset.cpus")), "0-1");
    assert_eq!(read(g("cpuset").join("cpuset.mems")), "0");
    assert_eq!(read(g("pids").join("pids.max")), "64");
    let b = g("blkio");
    // blkio.weight is missing, so the BFQ file took the raw weight.
    assert_eq!(read(b.join("blkio.bfq.weight")), "500");
    assert_eq!(read(b.join("blkio.throttle.read_bps_device")), "8:0 1000");
    assert_eq!(read(b.join("blkio.throttle.write_bps_device")), "8:0 2000");
    assert_eq!(read(b.join("blkio.throttle.read_iops_device")), "8:0 30");
    assert_eq!(read(b.join("blkio.throttle.write_iops_device")), "8:16 40");
    assert_eq!(
        read(g("hugetlb").join("hugetlb.2MB.limit_in_bytes")),
        (4u64 << 20).to_string()
    );
    assert_eq!(read(g("unified").join("memory.high")), "777");

    // Unlimited values and the pids "max" form.
    let r = Resources {
        memory: Some(Memory {
            limit: Some(-1),
            swap: Some(-1),
            ..Default::default()
        }),
        pids: Some(Pids { limit: -1 }),
        ..Default::default()
    };
    job.apply(&r).unwrap();
    assert_eq!(read(m.join("memory.limit_in_bytes")), "-1");
    assert_eq!(read(m.join("memory.memsw.limit_in_bytes")), "-1");
    assert_eq!(read(g("pids").join("pids.max")), "max");
}

#[test]
fn v1_missing_files_and_controllers_are_errors_naming_the_field() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut c = BTreeMap::new();
    for name in ["cpu", "blkio"] {
        fs::create_dir_all(root.join(name)).unwrap();
        c.insert(name.to_string(), root.join(name));
    }
    let fsys = CgroupFs::v1(c, None);
    assert_eq!(fsys.layout(), Layout::V1);
    let job = Job::create(&fsys, "x").unwrap();
    let err = |r: Resources| job.apply(&r).unwrap_err().to_string();
    let e = err(Resources {
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 1,
        }],
        ..Default::default()
    });
    assert!(
        e.contains("hugepageLimits[0]") && e.contains("hugetlb"),
        "{e}"
    );
    let e = err(Resources {
        block_io: Some(BlockIo {
            weight: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        e.contains("blockIO.weight") && e.contains("blkio.weight"),
        "{e}"
    );
    let e = err(Resources {
        cpu: Some(Cpu {
            idle: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        e.contains("linux.resources.cpu.idle") && e.contains("cpu.idle"),
        "{e}"
    );
    let e = err(Resources {
        memory: Some(Memory {
            limit: Some(1 << 20),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.contains("memory") && e.contains("not mounted"), "{e}");
    let e = err(Resources {
        unified: BTreeMap::from([("memory.high".into(), "1".into())]),
        ..Default::default()
    });
    assert!(e.contains("linux.resources.unified"), "{e}");
    let e = err(Resources {
        block_io: Some(BlockIo {
            weight_device: vec![WeightDevice {
                major: 8,
                minor: 0,
                weight: Some(2000),
                leaf_weight: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(e.contains("weightDevice[0].weight"), "{e}");
    fs::remove_dir(root.join("cpu/x")).unwrap();
    fs::remove_dir(root.join("blkio/x")).unwrap();
}

#[test]
fn create_rolls_back_when_a_later_hierarchy_fails() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut c = BTreeMap::new();
    for name in ["blkio", "memory", "pids"] {
        fs::create_dir_all(root.join(name)).unwrap();
        c.insert(name.to_string(), root.join(name));
    }
    // A pre-existing parent in memory must survive; pids has a file in the way.
    fs::create_dir_all(root.join("memory/keep")).unwrap();
    fs::write(root.join("pids/keep"), "not a dir").unwrap();
    let unified = root.join("unified");
    fs::create_dir_all(&unified).unwrap();
    let fsys = CgroupFs::v1(c, Some(unified.clone()));
    let e = Job::create(&fsys, "keep/c1").unwrap_err();
    assert!(
        matches!(&e, CreateError::Mkdir { path, .. } if path == &root.join("pids/keep")),
        "{e}"
    );
    assert!(!root.join("blkio/keep").exists(), "blkio dirs left behind");
    assert!(
        root.join("memory/keep").is_dir(),
        "pre-existing dir removed"
    );
    assert!(
        !root.join("memory/keep/c1").exists(),
        "memory leaf left behind"
    );
    assert!(!unified.join("keep").exists(), "unified never created");
    assert_eq!(read(root.join("pids/keep")), "not a dir");
}

#[test]
fn optional_named_hierarchy_failure_is_skipped() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut c = BTreeMap::new();
    for name in ["memory", "name=systemd"] {
        fs::create_dir_all(root.join(name)).unwrap();
        c.insert(name.to_string(), root.join(name));
    }
    fs::write(root.join("name=systemd/g"), "").unwrap();
    let job = Job::create(&CgroupFs::v1(c, None), "g").unwrap();
    assert_eq!(job.procs_files(), vec![root.join("memory/g/cgroup.procs")]);
    assert_eq!(job.controller_dir("name=systemd"), None);
}

#[test]
fn v1_stats_parse_fixture_files() {
    let d = tempfile::tempdir().unwrap();
    let fsys = v1_fs(d.path(), false);
    let job = Job::create(&fsys, "s").unwrap();
    let g = |c: &str| d.path().join(c).join("s");
    let w = |c: &str, f: &str, v: &str| fs::write(g(c).join(f), v).unwrap();
    w("cpu,cpuacct", "cpuacct.usage", "123456789\n");
    w("cpu,cpuacct", "cpuacct.stat", "user 5\nsystem 7\n");
    w(
        "cpu,cpuacct",
        "cpu.stat",
        "nr_periods 10\nnr_throttled 3\nthrottled_time 99\n",
    );
    w("memory", "memory.usage_in_bytes", "4096\n");
    w("memory", "memory.max_usage_in_bytes", "8192\n");
    w("memory", "memory.limit_in_bytes", "9223372036854771712\n");
    w(
        "memory",
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    w("pids", "pids.current", "3\n");
    w("pids", "pids.max", "max\n");
    w("pids", "pids.events", "max 4\n");
    w(
        "blkio",
        "blkio.throttle.io_service_bytes",
        "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\n8:16 Read 1\nTotal 301\n",
    );
    w(
        "blkio",
        "blkio.throttle.io_serviced_recursive",
        "8:0 Read 5\n8:0 Write 6\n8:0 Total 11\nTotal 11\n",
    );
    let s = job.stats().unwrap();
    assert_eq!(
        s.cpu,
        CpuStats {
            usage_ns: 123456789,
            user_ns: 50_000_000,
            system_ns: 70_000_000,
            throttled_periods: 3
        }
    );
    assert_eq!(
        s.memory,
        MemoryStats {
            current: 4096,
            peak: 8192,
            limit: None,
            oom_kills: 2,
            oom_events: 2
        }
    );
    assert_eq!(
        s.pids,
        PidsStats {
            current: 3,
            limit: None,
            limit_hits: 4
        }
    );
    assert_eq!(
        s.blkio,
        BlkioStats {
            read_bytes: 101,
            write_bytes: 200,
            read_ops: 5,
            write_ops: 6
        }
    );
    // usage_user/usage_sys win over cpuacct.stat when present; a real limit is reported.
    w("cpu,cpuacct", "cpuacct.usage_user", "11\n");
    w("cpu,cpuacct", "cpuacct.usage_sys", "22\n");
    w("memory", "memory.limit_in_bytes", "8388608\n");
    w("pids", "pids.max", "10\n");
    let s = job.stats().unwrap();
    assert_eq!((s.cpu.user_ns, s.cpu.system_ns), (11, 22));
    assert_eq!(s.memory.limit, Some(8 << 20));
    assert_eq!(s.pids.limit, Some(10));
    // Garbage is an error naming the file.
    w("pids", "pids.current", "lots\n");
    let e = job.stats().unwrap_err().to_string();
    assert!(e.contains("pids.current") && e.contains("lots"), "{e}");
}

#[test]
fn v2_stats_parse_fixture_files() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("s");
    fs::create_dir_all(&g).unwrap();
    let w = |f: &str, v: &str| fs::write(g.join(f), v).unwrap();
    w(
        "cpu.stat",
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\n",
    );
    w("memory.current", "1024\n");
    w("memory.peak", "2048\n");
    w("memory.max", "max\n");
    w(
        "memory.events",
        "low 0\nhigh 0\nmax 9\noom 3\noom_kill 1\noom_group_kill 0\n",
    );
    w("pids.current", "2\n");
    w("pids.max", "5\n");
    w("pids.events", "max 7\n");
    w(
        "io.stat",
        "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=5 rios=1 wios=1\n",
    );
    let job = Job::open(&CgroupFs::v2(d.path().to_path_buf()), "/s").unwrap();
    let s = job.stats().unwrap();
    assert_eq!(
        s,
        Stats {
            cpu: CpuStats {
                usage_ns: 1_500_000,
                user_ns: 1_000_000,
                system_ns: 500_000,
                throttled_periods: 2
            },
            memory: MemoryStats {
                current: 1024,
                peak: 2048,
                limit: None,
                oom_kills: 1,
                oom_events: 3
            },
            pids: PidsStats {
                current: 2,
                limit: Some(5),
                limit_hits: 7
            },
            blkio: BlkioStats {
                read_bytes: 15,
                write_bytes: 25,
                read_ops: 2,
                write_ops: 3
            },
        }
    );
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), s);
}

#[test]
fn v2_freeze_uses_cgroup_freeze_and_events() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("f");
    touch(&g, &["cgroup.freeze"]);
    fs::write(g.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    let job = Job::open(&CgroupFs::v2(d.path().to_path_buf()), "f").unwrap();
    job.freeze().unwrap();
    assert_eq!(read(g.join("cgroup.freeze")), "1");
    assert!(job.is_frozen().unwrap());
    // The fixture never reports "frozen 0", so thaw must time out and say which file.
    let e = job.thaw().unwrap_err();
    assert!(e.to_string().contains("cgroup.events"), "{e}");
    assert_eq!(read(g.join("cgroup.freeze")), "0");
}

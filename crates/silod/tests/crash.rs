//! Crash consistency of silod: SIGKILL while 20 `docker run -d` are in
//! flight, restart on the same data root and exec root, and check that every
//! container is whole or gone (listed and inspectable, or without a trace:
//! no cgroup, overlay mount, monitor, store row or directory); finally
//! `docker rm -f` of everything must leave nothing at all.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::Value;
use silo_testsupport::{stderr, stdout, Cli, Daemon};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

/// `docker run -d` commands in flight when silod is killed.
const RUNS: usize = 20;

/// Per round: how many new containers must be listed, and how many of them
/// running, before the kill, and how long to wait after that (plus up to
/// 99 ms of jitter). Early kills catch creates half-way, later ones starts.
const ROUNDS: [(usize, usize, u64); 4] = [(1, 0, 50), (3, 0, 200), (1, 1, 0), (6, 3, 300)];

type Ids = BTreeSet<String>;

/// Names of the directories in `dir` (not the hidden ones).
fn dir_names(dir: &Path) -> Ids {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// `docker ps -a` ids.
fn listed(d: &Daemon) -> Ids {
    d.ok(&["ps", "-a", "-q", "--no-trunc"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Container ids from `GET /containers/json`: all of them, or the running
/// ones.
fn api_ids(d: &Daemon, all: bool) -> Ids {
    let (head, body) = d.http("GET", &format!("/containers/json?all={all}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head} {body}");
    let list: Value = serde_json::from_str(&body).expect("container list JSON");
    list.as_array()
        .expect("container list is an array")
        .iter()
        .map(|c| c["Id"].as_str().expect("Id").to_string())
        .collect()
}

/// Live detached silo-monitor processes (session leaders: the `--detach`
/// parent that waits for the start's answer is not the monitor) whose
/// command line names `exec_root`, by container id (`--id`), with their pids.
fn monitors(exec_root: &Path) -> BTreeMap<String, Vec<i32>> {
    let root = exec_root.to_string_lossy().into_owned();
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_monitor = args
            .first()
            .is_some_and(|a| Path::new(a).file_name() == Some("silo-monitor".as_ref()));
        if !is_monitor || !args.iter().any(|a| a.contains(&root)) || session(pid) != Some(pid) {
            continue;
        }
        let id = args
            .iter()
            .position(|a| a == "--id")
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default();
        found.entry(id).or_default().push(pid);
    }
    found
}

/// The session id of a live process (None for a zombie or a gone one).
fn session(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session ...
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(3)?.parse().ok()
}

/// Mount points in this mount namespace below `dir`, except the test
/// harness's own pin of silod's network namespace (`<dir>/netns`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let harness = format!("{}/netns", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix) && *p != harness)
        .map(str::to_string)
        .collect()
}

/// The cgroup directories of container `id` (silod's cgroupsPath is
/// `/silo/<id>` in every hierarchy).
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_path_buf()];
    if !base.join("cgroup.controllers").exists() {
        roots = std::fs::read_dir(base)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
    }
    roots
        .into_iter()
        .map(|r| r.join("silo").join(id))
        .filter(|p| p.is_dir())
        .collect()
}

/// Ids in the store's `containers` table, read with the sqlite3 CLI; None
/// when it is not installed.
fn store_rows(db: &Path) -> Option<Ids> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("SELECT id FROM containers")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    assert!(out.status.success(), "sqlite3: {}", stderr(&out));
    Some(stdout(&out).lines().map(str::to_string).collect())
}

/// Every container id this daemon's data root and exec root hold right now
/// (a superset of the ones that could own a cgroup: the container directory
/// exists before the monitor is started).
fn ids_on_disk(d: &Daemon) -> Ids {
    let mut ids = dir_names(&d.data_root().join("containers"));
    ids.extend(dir_names(&d.data_root().join("storage/snapshots")));
    ids.extend(dir_names(&d.exec_root().join("runtime")));
    ids.extend(monitors(&d.exec_root()).into_keys());
    ids
}

/// Whole or gone: checks everything silod keeps for a container against
/// `docker ps -a`. `seen` is every id that may ever have existed, `started`
/// the ones `docker run -d` reported.
fn check_consistent(d: &Daemon, seen: &Ids, started: &Ids) -> Ids {
    let listed = listed(d);
    assert_eq!(
        api_ids(d, true),
        listed,
        "the API and docker ps -a disagree"
    );
    let missing: Vec<_> = started.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "containers docker run -d reported as started are gone: {missing:?}"
    );

    let mut running = Ids::new();
    if !listed.is_empty() {
        let mut args = vec!["inspect", "--type", "container"];
        args.extend(listed.iter().map(String::as_str));
        let all: Value = serde_json::from_str(&d.ok(&args)).expect("inspect JSON");
        for c in all.as_array().expect("inspect gives an array") {
            let id = c["Id"].as_str().expect("Id");
            let state = &c["State"];
            match state["Status"].as_str() {
                Some("running") => {
                    assert_eq!(state["Running"], true, "{id}: {state}");
                    let pid = state["Pid"].as_i64().expect("Pid");
                    assert!(
                        pid > 0 && Path::new(&format!("/proc/{pid}")).exists(),
                        "{id} is running with a dead init: {state}"
                    );
                    running.insert(id.to_string());
                }
                Some("created") => {
                    assert_eq!(state["Running"], false, "{id}: {state}");
                }
                _ => panic!("{id} is neither running nor created: {state}"),
            }
        }
    }

    let mons = monitors(&d.exec_root());
    for (id, pids) in &mons {
        assert!(
            running.contains(id),
            "monitor {pids:?} for {id}, which is not a running container (listed: {})",
            listed.contains(id)
        );
        assert_eq!(pids.len(), 1, "{id} has several monitors: {pids:?}");
    }
    for id in &running {
        assert!(mons.contains_key(id), "running {id} has no monitor");
        assert!(!cgroups_of(id).is_empty(), "running {id} has no cgroup");
    }

    for (what, dir) in [
        ("container directories", d.data_root().join("containers")),
        ("snapshots", d.data_root().join("storage/snapshots")),
    ] {
        assert_eq!(dir_names(&dir), listed, "{what} in {}", dir.display());
    }
    // State links are made on first use (start, attach, logs...), so a
    // created container may have none yet; a running one must have one.
    let links = dir_names(&d.exec_root().join("s"));
    assert!(
        links.is_subset(&listed) && running.is_subset(&links),
        "state links {links:?} vs listed {listed:?} and running {running:?}"
    );
    let runtime = dir_names(&d.exec_root().join("runtime"));
    assert!(
        runtime.is_subset(&listed) && running.is_subset(&runtime),
        "runtime state {runtime:?} vs running {running:?}"
    );
    if let Some(rows) = store_rows(&d.data_root().join("silo.db")) {
        assert_eq!(rows, listed, "rows in silo.db");
    }

    // Mounts: snapshots of listed containers, and the pinned network
    // namespaces of running ones (released when a container stops).
    let snapshots = d.data_root().join("storage/snapshots");
    let netns = d.exec_root().join("netns");
    for m in mounts_under(d.dir()) {
        let owner = |root: &Path| {
            Path::new(&m)
                .strip_prefix(root)
                .ok()
                .and_then(|rest| rest.iter().next())
                .map(|s| s.to_string_lossy().into_owned())
        };
        if let Some(id) = owner(&netns) {
            assert!(
                running.contains(&id),
                "pinned netns {m} of a container that does not run"
            );
            continue;
        }
        assert!(
            owner(&snapshots).is_some_and(|id| listed.contains(&id)),
            "mount {m} belongs to no listed container"
        );
    }
    for id in &running {
        assert!(
            mounts_under(&netns)
                .iter()
                .any(|m| m.ends_with(id.as_str())),
            "running {id} has no pinned network namespace"
        );
    }

    for id in seen.difference(&listed) {
        let left = cgroups_of(id);
        assert!(left.is_empty(), "cgroups of vanished {id}: {left:?}");
    }
    listed
}

/// A few ms of jitter so rounds do not always hit the same instant.
fn jitter_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| u64::from(t.subsec_nanos()) % 100)
        .unwrap_or(0)
}

/// The id `docker run -d` printed, if it succeeded.
fn run_id(out: &Output) -> Option<String> {
    let id = stdout(out).trim().to_string();
    (out.status.success() && id.len() == 64).then_some(id)
}

#[test]
fn kill_9_during_parallel_runs_leaves_whole_containers_or_nothing() {
    let mut d = Daemon::start(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let mut seen = Ids::new();
    let mut started = Ids::new();
    for (round, (accepted, up, delay)) in ROUNDS.into_iter().enumerate() {
        let before = listed(&d);
        let runs: Vec<_> = (0..RUNS)
            .map(|_| {
                let mut cmd = d.command();
                cmd.args(["run", "-d", "--network", "none", "busybox", "sleep", "1000"])
                    .stdin(Stdio::null());
                std::thread::spawn(move || cmd.output().expect("run docker"))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while api_ids(&d, true).difference(&before).count() < accepted
            || api_ids(&d, false).difference(&before).count() < up
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: not {accepted} containers, {up} running after 30 s; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let wait = delay + jitter_ms();
        std::thread::sleep(Duration::from_millis(wait));
        d.kill9();
        let outs: Vec<Output> = runs
            .into_iter()
            .map(|t| t.join().expect("docker thread"))
            .collect();
        let ok: Ids = outs.iter().filter_map(run_id).collect();
        seen.extend(ids_on_disk(&d));
        seen.extend(ok.iter().cloned());
        started.extend(ok.iter().cloned());

        d.spawn();
        let listed = check_consistent(&d, &seen, &started);
        eprintln!(
            "round {round}: killed {wait} ms after {accepted} listed, {up} running; {} runs reported success; {} containers listed ({} running), {} ids seen",
            ok.len(),
            listed.len(),
            monitors(&d.exec_root()).len(),
            seen.len()
        );
    }

    let ids: Vec<String> = listed(&d).into_iter().collect();
    assert!(!ids.is_empty(), "no container survived any round");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    d.ok(&args);
    let left = check_consistent(&d, &seen, &Ids::new());
    assert!(left.is_empty(), "docker rm -f left {left:?}");
    let mons = monitors(&d.exec_root());
    assert!(mons.is_empty(), "monitors left: {mons:?}");
    let mounts = mounts_under(d.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for id in &seen {
        let cg = cgroups_of(id);
        assert!(cg.is_empty(), "cgroups left for {id}: {cg:?}");
    }
}

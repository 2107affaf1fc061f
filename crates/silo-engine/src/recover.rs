//! Daemon restart: re-adopting containers whose monitors kept running,
//! recording exits that happened while silod was down, finishing what a
//! crash interrupted (creates, removals), and running the inverses of what
//! dead containers still hold (pinned namespaces, runtime records,
//! snapshots and directories without a container).

use crate::error::Step;
use crate::model::{Container, Run, Status};
use crate::{teardown, Engine};
use silo_monitor::protocol::{read_exit, read_monitor, ExitInfo};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to do with one recorded container at startup.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Keep,
    /// A crash during create: remove every trace.
    Discard,
    /// A removal was interrupted: finish it.
    FinishRemoval,
    /// The init exited while we were away: record this.
    Exited(ExitInfo),
    /// The monitor is alive: the container runs (this run).
    Adopt(Run),
    /// Recorded running but the monitor is gone without an exit record.
    Lost,
}

/// Whether `pid` is a live silo-monitor (checked through
/// `<proc>/<pid>/cmdline` so a recycled pid is not mistaken for it), and
/// with `id`, the monitor of that container (`--id <id>`).
pub(crate) fn monitor_alive(proc_root: &Path, pid: i32, id: Option<&str>) -> bool {
    if pid <= 0 {
        return false;
    }
    let stat = std::fs::read_to_string(proc_root.join(format!("{pid}/stat"))).unwrap_or_default();
    if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
        if rest.trim_start().starts_with('Z') {
            return false;
        }
    }
    let Ok(cmdline) = std::fs::read(proc_root.join(format!("{pid}/cmdline"))) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_monitor = args
        .first()
        .is_some_and(|a| String::from_utf8_lossy(a).contains("silo-monitor"));
    is_monitor
        && id.is_none_or(|id| {
            args.windows(2)
                .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
        })
}

/// Decides from the record and the monitor's files in `dir`. Files are
/// read only when the answer depends on them: startup judges every
/// container on record.
pub(crate) fn judge(c: &Container, dir: &Path, proc_root: &Path) -> Verdict {
    match &c.state.status {
        Status::Creating => return Verdict::Discard,
        Status::Removing => return Verdict::FinishRemoval,
        Status::Running(run) | Status::Paused(run) => {
            if let Some(e) = read_exit(dir) {
                return Verdict::Exited(e);
            }
            let pid = if run.monitor_pid > 0 {
                run.monitor_pid
            } else {
                read_monitor(dir).map_or(0, |m| m.monitor_pid)
            };
            return if monitor_alive(proc_root, pid, Some(&c.id)) {
                Verdict::Adopt(Run {
                    monitor_pid: pid,
                    ..run.clone()
                })
            } else {
                Verdict::Lost
            };
        }
        _ => {}
    }
    // Not recorded running: did a start finish after the daemon died
    // (monitor.json newer than our record, no exit yet)?
    if let Some(m) = read_monitor(dir) {
        if monitor_alive(proc_root, m.monitor_pid, Some(&c.id)) && read_exit(dir).is_none() {
            return Verdict::Adopt(Run {
                pid: m.init_pid,
                monitor_pid: m.monitor_pid,
                started_at: if m.started_at.is_empty() {
                    silo_units::now_rfc3339()
                } else {
                    m.started_at
                },
            });
        }
    }
    Verdict::Keep
}

impl Engine {
    /// Runs once from `Engine::open`.
    pub(crate) fn recover(&self) {
        let proc_root = Path::new("/proc");
        self.wait_for_starts_in_flight(proc_root);
        // Judged in place: cloning a thousand records cost more than the
        // judging, and most containers need nothing done.
        let todo: Vec<(Container, Verdict)> = {
            let map = self.lock();
            map.values()
                .filter_map(|c| match judge(c, &self.container_dir(&c.id), proc_root) {
                    Verdict::Keep => None,
                    v => Some((c.clone(), v)),
                })
                .collect()
        };
        for (c, verdict) in todo {
            let id = &c.id;
            match verdict {
                Verdict::Keep => {}
                Verdict::Discard => {
                    tracing::info!("removing half-created container {id}");
                    let steps = [
                        Step::Runtime,
                        Step::Network,
                        Step::Snapshot,
                        Step::Files,
                        Step::Record,
                    ];
                    if let Err(e) = teardown::run(self, &c, &steps, false) {
                        tracing::warn!("{e}");
                    }
                }
                Verdict::FinishRemoval => {
                    if let Err(e) = self.finish_removal(&c, false) {
                        tracing::warn!("finishing the removal of {id}: {e}");
                    }
                }
                Verdict::Exited(exit) => {
                    let started = c.state.status.run().map(|r| r.started_at.clone());
                    self.on_exit(id, &started.unwrap_or_default(), exit, None);
                }
                Verdict::Adopt(run) => {
                    let res = self.modify(id, |c| {
                        if c.state.status.is_running() {
                            c.state.readopted(run.clone())
                        } else {
                            c.state.started(run.clone())
                        }
                    });
                    if res.is_ok() {
                        // Its monitor writes through this link.
                        let _ = self.ensure_state_link(id);
                        tracing::info!("re-adopted running container {id}");
                        self.watch(id, &run.started_at);
                        self.health_watch(id);
                    }
                }
                Verdict::Lost => {
                    tracing::warn!("container {id}: monitor lost while silod was down");
                    let started = c.state.status.run().map(|r| r.started_at.clone());
                    self.on_monitor_lost(id, &started.unwrap_or_default());
                }
            }
        }
        self.recover_pods();
        self.remove_orphans();
        self.reconcile_network();
        self.restart_on_boot();
    }

    /// The network service's records and kernel objects against the
    /// containers that still run (and pods, which own endpoints too).
    fn reconcile_network(&self) {
        let Some(hns) = &self.hns else { return };
        let running: std::collections::HashSet<String> = self
            .lock()
            .values()
            .filter(|c| c.state.status.run().is_some())
            .map(|c| c.id.clone())
            .chain(self.pods_lock().keys().cloned())
            .collect();
        for e in hns.reconcile(&|owner| running.contains(owner)) {
            tracing::warn!("network reconcile: {e}");
        }
    }

    /// A silod killed during a start leaves the monitor it ran still
    /// starting the container, and monitor.json only appears once the
    /// container runs. Waits until each such monitor (of a container not
    /// recorded running) has written it or exited, so [`judge`] adopts the
    /// container instead of keeping it "created" beside an untracked
    /// monitor. Bounded: a monitor gives up waiting for attach clients
    /// after 10 s.
    fn wait_for_starts_in_flight(&self, proc_root: &Path) {
        let runtime_root = self.config.exec_root.join("runtime");
        let pending: Vec<(std::path::PathBuf, Vec<i32>)> = {
            let map = self.lock();
            starting_monitors(proc_root, &runtime_root)
                .into_iter()
                .filter(|(id, _)| map.get(id).is_some_and(|c| !c.state.status.is_running()))
                .map(|(id, pids)| (self.container_dir(&id), pids))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        for (dir, pids) in pending {
            tracing::info!("waiting for the start in flight in {}", dir.display());
            while read_monitor(&dir).is_none()
                && pids.iter().any(|p| monitor_alive(proc_root, *p, None))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// What no container accounts for: snapshots, directories, links and
    /// runtime records without a row; pinned network namespaces of
    /// containers that do not run (the inverse of their network stage).
    fn remove_orphans(&self) {
        let known: HashSet<String> = self.lock().keys().cloned().collect();
        let snapshots = self.config.data_root.join("storage").join("snapshots");
        for id in dir_names(&snapshots) {
            if !known.contains(&id) && !id.starts_with('.') {
                tracing::info!("removing orphan snapshot {id}");
                if let Err(e) = self.storage.remove_snapshot(&id) {
                    tracing::warn!("orphan snapshot {id}: {e}");
                }
            }
        }
        for id in dir_names(&self.config.data_root.join("containers")) {
            if !known.contains(&id) {
                let _ = std::fs::remove_dir_all(self.container_dir(&id));
            }
        }
        for id in entry_names(&self.config.exec_root.join("s")) {
            if !known.contains(&id) {
                let _ = std::fs::remove_file(self.state_dir(&id));
            }
        }
        for id in dir_names(&self.config.exec_root.join("runtime")) {
            if !known.contains(&id) && !id.starts_with('.') {
                self.delete_runtime(&id);
            }
        }
        for id in entry_names(&self.config.exec_root.join("netns")) {
            let holder = self.lock().get(&id).cloned();
            match holder {
                Some(c) if c.state.status.is_running() => {}
                Some(c) => self.release_leftovers(&c),
                None => {
                    tracing::info!("releasing the orphan network namespace of {id}");
                    let _ = self.network.detach(&id);
                    if let Err(e) = silo_isolation::pin::unpin(&self.netns_path(&id)) {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
    }

    /// Containers with restart policy always (or unless-stopped and not
    /// stopped by hand) that do not run are started again, and restarts
    /// pending when silod died are scheduled again.
    fn restart_on_boot(&self) {
        use crate::model::RestartPolicy;
        let pending: Vec<(String, u32)> = self
            .lock()
            .values()
            .filter(|c| matches!(c.state.status, Status::Restarting(_)))
            .map(|c| (c.id.clone(), c.restart_count))
            .collect();
        for (id, count) in pending {
            let keep = self
                .get(&id)
                .is_ok_and(|c| crate::lifecycle::should_restart(&c));
            if keep {
                self.schedule_restart(&id, count);
            } else {
                let _ = self.modify(&id, |c| c.state.restart_cancelled());
            }
        }
        let todo: Vec<String> = self
            .lock()
            .values()
            .filter(|c| matches!(c.state.status, Status::Exited(_)))
            .filter(|c| match c.config.restart {
                RestartPolicy::Always => true,
                RestartPolicy::UnlessStopped => !c.manual_stop,
                _ => false,
            })
            .map(|c| c.id.clone())
            .collect();
        for id in todo {
            let _ = self.modify(&id, |c| {
                c.manual_stop = false;
                Ok(())
            });
            if let Err(e) = self.start(&id) {
                tracing::warn!("restarting {id} at daemon start: {e}");
            }
        }
    }
}

/// Live silo-monitor processes started with `--runtime-root runtime_root`,
/// by their `--id`.
fn starting_monitors(
    proc_root: &Path,
    runtime_root: &Path,
) -> std::collections::HashMap<String, Vec<i32>> {
    let mut found: std::collections::HashMap<String, Vec<i32>> = Default::default();
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| *a == flag.as_bytes())
                .and_then(|i| args.get(i + 1))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if value("--runtime-root").as_deref().map(Path::new) != Some(runtime_root) {
            continue;
        }
        if let Some(id) = value("--id") {
            if monitor_alive(proc_root, pid, None) {
                found.entry(id).or_default().push(pid);
            }
        }
    }
    found
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn entry_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Exit;

    fn running(monitor_pid: i32) -> Container {
        let mut c = Container::for_test("c1", "c1");
        c.state.status = Status::Running(Run {
            pid: 1234,
            monitor_pid,
            started_at: "2026-01-01T00:00:00Z".into(),
        });
        c
    }

    fn with(status: Status) -> Container {
        let mut c = Container::for_test("c1", "c1");
        c.state.status = status;
        c
    }

    fn fake_proc(pid: i32, cmdline: &str) -> tempfile::TempDir {
        let p = tempfile::tempdir().unwrap();
        std::fs::create_dir(p.path().join(pid.to_string())).unwrap();
        std::fs::write(
            p.path().join(format!("{pid}/stat")),
            format!("{pid} (x) S 1"),
        )
        .unwrap();
        std::fs::write(p.path().join(format!("{pid}/cmdline")), cmdline).unwrap();
        p
    }

    #[test]
    fn exit_json_means_exited_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("exit.json"),
            r#"{"exit_code":42,"oom_killed":true,"finished_at":"2026-01-01T00:00:05Z"}"#,
        )
        .unwrap();
        let proc_root = fake_proc(77, "silo-monitor\0");
        match judge(&running(77), dir.path(), proc_root.path()) {
            Verdict::Exited(e) => assert_eq!((e.exit_code, e.oom_killed), (42, true)),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn live_monitor_is_adopted_dead_one_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = fake_proc(77, "/usr/local/bin/silo-monitor\0--id\0c1\0");
        let run = |pid, monitor_pid, t: &str| Run {
            pid,
            monitor_pid,
            started_at: t.into(),
        };
        assert_eq!(
            judge(&running(77), dir.path(), proc_root.path()),
            Verdict::Adopt(run(1234, 77, "2026-01-01T00:00:00Z"))
        );
        let other = fake_proc(77, "/usr/bin/vim\0");
        assert_eq!(judge(&running(77), dir.path(), other.path()), Verdict::Lost);
        std::fs::write(
            dir.path().join("monitor.json"),
            r#"{"monitor_pid":77,"init_pid":1234,"started_at":"2026-01-01T00:00:01Z","tty":false}"#,
        )
        .unwrap();
        assert_eq!(
            judge(&running(0), dir.path(), proc_root.path()),
            Verdict::Adopt(run(1234, 77, "2026-01-01T00:00:00Z"))
        );
        // A start that finished after the daemon died.
        assert_eq!(
            judge(&with(Status::Created), dir.path(), proc_root.path()),
            Verdict::Adopt(run(1234, 77, "2026-01-01T00:00:01Z"))
        );
        assert_eq!(
            judge(&with(Status::Created), dir.path(), other.path()),
            Verdict::Keep
        );
    }

    #[test]
    fn half_done_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(judge(&with(Status::Creating), p, p), Verdict::Discard);
        assert_eq!(judge(&with(Status::Removing), p, p), Verdict::FinishRemoval);
        let exited = Status::Exited(Exit {
            code: 0,
            oom_killed: false,
            started_at: String::new(),
            finished_at: String::new(),
        });
        assert_eq!(judge(&with(exited), p, p), Verdict::Keep);
    }

    #[test]
    fn monitor_liveness_uses_cmdline() {
        let proc_root = fake_proc(42, "/usr/bin/silo-monitor\0--id\0x\0");
        let p = proc_root.path();
        assert!(monitor_alive(p, 42, None));
        assert!(monitor_alive(p, 42, Some("x")));
        assert!(
            !monitor_alive(p, 42, Some("y")),
            "another container's monitor"
        );
        std::fs::write(p.join("42/cmdline"), b"/bin/bash\0silo-monitor\0").unwrap();
        assert!(
            !monitor_alive(p, 42, None),
            "a recycled pid is not the monitor"
        );
        assert!(!monitor_alive(p, 43, None));
        std::fs::write(p.join("42/cmdline"), b"silo-monitor\0").unwrap();
        std::fs::write(p.join("42/stat"), "42 (silo-monitor) Z 1 2 3").unwrap();
        assert!(!monitor_alive(p, 42, None), "a zombie is dead");
    }

    #[test]
    fn starting_monitors_are_found_by_runtime_root_and_id() {
        let ours = "/x/exec/runtime";
        let proc_root = fake_proc(
            77,
            &format!("/bin/silo-monitor\0--detach\0--runtime-root\0{ours}\0--id\0c1\0"),
        );
        let found = starting_monitors(proc_root.path(), Path::new(ours));
        assert_eq!(found.get("c1"), Some(&vec![77]));
        assert!(starting_monitors(proc_root.path(), Path::new("/y/exec/runtime")).is_empty());
        std::fs::write(proc_root.path().join("77/stat"), "77 (silo-monitor) Z 1").unwrap();
        assert!(starting_monitors(proc_root.path(), Path::new(ours)).is_empty());
    }
}

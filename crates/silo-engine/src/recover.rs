//! Daemon restart: re-adopting containers whose monitors kept running,
//! recording exits that happened while silod was down, and removing what a
//! crash left half-created (rows in "creating", snapshots and directories
//! without a row, runtime state without a row).

use crate::containers::{monitor_alive, read_exit, read_monitor, ExitRecord};
use crate::model::Container;
use crate::Engine;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to do with one recorded container at startup.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Nothing to do.
    Keep,
    /// A crash during create: remove every trace.
    Discard,
    /// The init exited while we were away: record this.
    Exited(i64, bool, String),
    /// The monitor is alive: keep Running and watch it (started_at, init pid, monitor pid).
    Adopt(String, i32, i32),
    /// Recorded running but the monitor is gone without an exit record.
    Lost,
    /// A removal was interrupted: finish it.
    FinishRemoval,
}

/// Decides from the record and the monitor's files in `dir`.
pub(crate) fn judge(c: &Container, dir: &Path, proc_root: &Path) -> Verdict {
    match c.state.status.as_str() {
        "creating" => return Verdict::Discard,
        "removing" => return Verdict::FinishRemoval,
        _ => {}
    }
    // Files are read only when the answer depends on them: startup judges
    // every container on record.
    if c.state.running {
        if let Some(e) = read_exit(dir) {
            return Verdict::Exited(e.exit_code, e.oom_killed, e.finished_at);
        }
        let pid = if c.state.monitor_pid > 0 {
            c.state.monitor_pid
        } else {
            read_monitor(dir).map(|m| m.monitor_pid).unwrap_or(0)
        };
        if monitor_alive(proc_root, pid, Some(&c.id)) {
            return Verdict::Adopt(c.state.started_at.clone(), c.state.pid, pid);
        }
        return Verdict::Lost;
    }
    // Not recorded running: did a start finish after the daemon died
    // (monitor.json newer than our record, no exit yet)?
    if let Some(m) = read_monitor(dir) {
        if monitor_alive(proc_root, m.monitor_pid, Some(&c.id)) && read_exit(dir).is_none() {
            let started = if m.started_at.is_empty() {
                crate::containers::now_rfc3339()
            } else {
                m.started_at
            };
            return Verdict::Adopt(started, m.init_pid, m.monitor_pid);
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
            let dir = self.container_dir(&c.id);
            match verdict {
                Verdict::Keep => {}
                Verdict::Discard => {
                    tracing::info!("removing half-created container {}", c.id);
                    let _ = self.storage.remove_snapshot(&c.id);
                    let _ = std::fs::remove_dir_all(&dir);
                    self.monitor_lost(&c.id);
                    let _ = self.db.delete(&c.id);
                    self.lock().remove(&c.id);
                }
                Verdict::FinishRemoval => {
                    if let Err(e) = self.destroy(&c, false) {
                        tracing::warn!("finishing the removal of {}: {e}", c.id);
                    }
                }
                Verdict::Exited(code, oom, finished) => {
                    self.on_exit(
                        &c.id,
                        &c.state.started_at,
                        ExitRecord {
                            exit_code: code,
                            oom_killed: oom,
                            finished_at: finished,
                        },
                        None,
                    );
                }
                Verdict::Adopt(started, pid, monitor_pid) => {
                    let res = self.modify(&c.id, |c| {
                        c.state.status = if c.state.paused { "paused" } else { "running" }.into();
                        c.state.running = true;
                        c.state.restarting = false;
                        c.state.started_at = started.clone();
                        if pid > 0 {
                            c.state.pid = pid;
                        }
                        c.state.monitor_pid = monitor_pid;
                    });
                    if res.is_ok() {
                        // Its monitor writes through this link.
                        let _ = self.ensure_state_link(&c.id);
                        tracing::info!("re-adopted running container {}", c.id);
                        self.watch(&c.id, &started);
                        self.health_watch(&c.id);
                    }
                }
                Verdict::Lost => {
                    tracing::warn!("container {}: monitor lost while silod was down", c.id);
                    self.monitor_lost(&c.id);
                    self.on_exit(
                        &c.id,
                        &c.state.started_at,
                        ExitRecord {
                            exit_code: 255,
                            oom_killed: false,
                            finished_at: crate::containers::now_rfc3339(),
                        },
                        Some("monitor lost".into()),
                    );
                }
            }
        }
        self.remove_orphans();
        self.restart_on_boot();
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
                .filter(|(id, _)| map.get(id).is_some_and(|c| !c.state.running))
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

    /// Snapshots, container directories and runtime records without a row.
    fn remove_orphans(&self) {
        let known: HashMap<String, ()> = self.lock().keys().map(|k| (k.clone(), ())).collect();
        let snapshots = self.config.data_root.join("storage").join("snapshots");
        for id in dir_names(&snapshots) {
            if !known.contains_key(&id) && !id.starts_with('.') {
                tracing::info!("removing orphan snapshot {id}");
                if let Err(e) = self.storage.remove_snapshot(&id) {
                    tracing::warn!("orphan snapshot {id}: {e}");
                }
            }
        }
        for id in dir_names(&self.config.data_root.join("containers")) {
            if !known.contains_key(&id) {
                let _ = std::fs::remove_dir_all(self.container_dir(&id));
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.config.exec_root.join("s")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !known.contains_key(&id) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        for id in dir_names(&self.config.exec_root.join("runtime")) {
            if !known.contains_key(&id) && !id.starts_with('.') {
                self.monitor_lost(&id);
            }
        }
    }

    /// Containers with restart policy always (or unless-stopped and not
    /// stopped by hand) that are not running are started again, as dockerd
    /// does when it comes up.
    fn restart_on_boot(&self) {
        use bollard_stubs::models::RestartPolicyNameEnum as R;
        // A restart that was pending when silod died is scheduled again.
        let pending: Vec<(String, i64)> = self
            .lock()
            .values()
            .filter(|c| c.state.restarting && !c.state.running)
            .map(|c| (c.id.clone(), c.restart_count))
            .collect();
        for (id, count) in pending {
            let keep = self
                .get(&id)
                .map(|c| self.should_restart(&c))
                .unwrap_or(false);
            if keep {
                self.schedule_restart(&id, count);
            } else {
                let _ = self.modify(&id, |c| {
                    c.state.restarting = false;
                    c.state.status = "exited".into();
                });
            }
        }
        let todo: Vec<String> = self
            .lock()
            .values()
            .filter(|c| !c.state.running && !c.state.restarting && c.state.status != "created")
            .filter(|c| {
                let rp = c.host_config().restart_policy.unwrap_or_default();
                match rp.name.unwrap_or(R::EMPTY) {
                    R::ALWAYS => true,
                    R::UNLESS_STOPPED => !c.manual_stop,
                    _ => false,
                }
            })
            .map(|c| c.id.clone())
            .collect();
        for id in todo {
            let _ = self.modify(&id, |c| c.manual_stop = false);
            if let Err(e) = self.start(&id) {
                tracing::warn!("restarting {id} at daemon start: {e}");
            }
        }
    }
}

/// Live silo-monitor processes started with `--runtime-root runtime_root`,
/// by their `--id`.
fn starting_monitors(proc_root: &Path, runtime_root: &Path) -> HashMap<String, Vec<i32>> {
    let mut found: HashMap<String, Vec<i32>> = HashMap::new();
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
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn c(status: &str, running: bool, monitor_pid: i32) -> Container {
        Container {
            state: State {
                status: status.into(),
                running,
                pid: 1234,
                monitor_pid,
                started_at: "2026-01-01T00:00:00Z".into(),
                ..Default::default()
            },
            ..Container::for_test("c1", "c1")
        }
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
        assert_eq!(
            judge(&c("running", true, 77), dir.path(), proc_root.path()),
            Verdict::Exited(42, true, "2026-01-01T00:00:05Z".into())
        );
    }

    #[test]
    fn live_monitor_is_adopted_dead_one_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = fake_proc(77, "/usr/local/bin/silo-monitor\0--id\0c1\0");
        assert_eq!(
            judge(&c("running", true, 77), dir.path(), proc_root.path()),
            Verdict::Adopt("2026-01-01T00:00:00Z".into(), 1234, 77)
        );
        // Monitor pid recycled by another program.
        let other = fake_proc(77, "/usr/bin/vim\0");
        assert_eq!(
            judge(&c("running", true, 77), dir.path(), other.path()),
            Verdict::Lost
        );
        // Monitor pid only in monitor.json.
        std::fs::write(
            dir.path().join("monitor.json"),
            r#"{"monitor_pid":77,"init_pid":1234,"started_at":"2026-01-01T00:00:01Z","tty":false}"#,
        )
        .unwrap();
        assert_eq!(
            judge(&c("running", true, 0), dir.path(), proc_root.path()),
            Verdict::Adopt("2026-01-01T00:00:00Z".into(), 1234, 77)
        );
        // A start that finished after the daemon died: created row, live monitor.
        assert_eq!(
            judge(&c("created", false, 0), dir.path(), proc_root.path()),
            Verdict::Adopt("2026-01-01T00:00:01Z".into(), 1234, 77)
        );
        assert_eq!(
            judge(&c("created", false, 0), dir.path(), other.path()),
            Verdict::Keep
        );
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
        // Another silod's monitor (other exec root) is not ours.
        let found = starting_monitors(proc_root.path(), Path::new("/y/exec/runtime"));
        assert!(found.is_empty(), "{found:?}");
        // A zombie is not in flight.
        std::fs::write(proc_root.path().join("77/stat"), "77 (silo-monitor) Z 1").unwrap();
        assert!(starting_monitors(proc_root.path(), Path::new(ours)).is_empty());
    }

    #[test]
    fn half_done_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(judge(&c("creating", false, 0), p, p), Verdict::Discard);
        assert_eq!(
            judge(&c("removing", false, 0), p, p),
            Verdict::FinishRemoval
        );
        assert_eq!(judge(&c("exited", false, 0), p, p), Verdict::Keep);
    }
}

//! Operations on existing containers: stop, kill, restart, pause and
//! unpause, wait, remove, rename and update, and the volume usage they
//! share.

use crate::error::{Error, Result, Step};
use crate::events::{Action, Scope};
use crate::lifecycle::{name_taken, Outcome, UpdateRequest, WaitCondition, WaitResult};
use crate::model::{self, MountKind, Status};
use crate::teardown;
use crate::Engine;
use std::time::{Duration, Instant};

/// How long stop waits after SIGKILL before it gives up.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// Waits until the container is not running (or `deadline` passes).
    fn wait_stopped(&self, id: &str, deadline: Option<Instant>) -> bool {
        let mut map = self.lock();
        loop {
            match map.get(id) {
                Some(c) if c.state.status.is_running() => {}
                _ => return true,
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    d - now
                }
                None => Duration::from_secs(3600),
            };
            map = self
                .changed
                .wait_timeout(map, wait.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends `sig` to the container's init (SIGKILL: to everything in its
    /// job, thawing a paused one so the kill lands).
    fn signal(&self, id: &str, sig: i32) -> Result<()> {
        let host = self.compute_host()?;
        let sys =
            silo_compute::open(&host, id).map_err(|e| Error::internal(format!("kill {id}"), e))?;
        let sent = if sig == libc::SIGKILL {
            sys.kill(sig, true).or_else(|_| sys.kill(sig, false))
        } else {
            sys.kill(sig, false)
        };
        sent.map_err(|e| Error::internal(format!("kill {id}"), e))
    }

    fn not_running(id: &str) -> Error {
        Error::conflict(format!("Container {id} is not running"))
    }

    /// Stops the container: its stop signal (or `signal`), then SIGKILL
    /// after its stop timeout (or `timeout` seconds; negative: never). A
    /// stop by hand holds against restart policies.
    pub fn stop(&self, id: &str, signal: Option<i32>, timeout: Option<i64>) -> Result<Outcome> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.stop_locked(&id, signal, timeout)
    }

    fn stop_locked(&self, id: &str, signal: Option<i32>, timeout: Option<i64>) -> Result<Outcome> {
        let c = self.get(id)?;
        match &c.state.status {
            Status::Restarting(_) => {
                self.modify(id, |c| {
                    c.manual_stop = true;
                    c.state.restart_cancelled()
                })?;
                return Ok(Outcome::Done);
            }
            Status::Running(_) | Status::Paused(_) => {}
            _ => return Ok(Outcome::Unchanged),
        }
        self.modify(id, |c| {
            c.manual_stop = true;
            Ok(())
        })?;
        let sig = signal.or(c.config.stop_signal).unwrap_or(libc::SIGTERM);
        let secs = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if matches!(c.state.status, Status::Paused(_)) && sig != libc::SIGKILL {
            if let Ok(host) = self.compute_host() {
                if let Ok(sys) = silo_compute::open(&host, id) {
                    let _ = sys.resume();
                }
            }
        }
        let _ = self.signal(id, sig);
        self.emit(Scope::Container, Action::Kill { signal: sig }, id);
        let deadline = u64::try_from(secs)
            .ok()
            .map(|s| Instant::now() + Duration::from_secs(s));
        if !self.wait_stopped(id, deadline) {
            let _ = self.signal(id, libc::SIGKILL);
            self.emit(
                Scope::Container,
                Action::Kill {
                    signal: libc::SIGKILL,
                },
                id,
            );
            if !self.wait_stopped(id, Some(Instant::now() + KILL_GRACE)) {
                return Err(Error::internal(
                    format!("stopping {id}"),
                    std::io::Error::other(format!(
                        "the container did not exit {} s after SIGKILL",
                        KILL_GRACE.as_secs()
                    )),
                ));
            }
        }
        self.emit(Scope::Container, Action::Stop, id);
        Ok(Outcome::Done)
    }

    /// Stops (if running) and starts the container; auto-remove does not
    /// fire for the stop.
    pub fn restart(&self, id: &str, signal: Option<i32>, timeout: Option<i64>) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let by_hand = || {
            self.restarting_by_hand
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        by_hand().insert(id.clone());
        let stopped = self.stop_locked(&id, signal, timeout);
        by_hand().remove(&id);
        stopped?;
        self.modify(&id, |c| {
            c.manual_stop = false;
            Ok(())
        })?;
        self.start_locked(&id)?;
        self.emit(Scope::Container, Action::Restart, &id);
        Ok(())
    }

    /// Sends a signal (default SIGKILL); with SIGKILL, returns once the
    /// container is gone.
    pub fn kill(&self, id: &str, signal: Option<i32>) -> Result<()> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        if !c.state.status.is_running() {
            return Err(Self::not_running(&id));
        }
        let sig = signal.unwrap_or(libc::SIGKILL);
        self.signal(&id, sig)?;
        self.emit(Scope::Container, Action::Kill { signal: sig }, &id);
        if sig == libc::SIGKILL {
            self.wait_stopped(&id, Some(Instant::now() + Duration::from_secs(10)));
        }
        Ok(())
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        match self.get(&id)?.state.status {
            Status::Running(_) => {}
            Status::Paused(_) => {
                return Err(Error::conflict(format!("Container {id} is already paused")))
            }
            _ => return Err(Self::not_running(&id)),
        }
        let host = self.compute_host()?;
        silo_compute::open(&host, &id)
            .and_then(|s| s.pause())
            .map_err(|e| Error::internal(format!("pause {id}"), e))?;
        self.modify(&id, |c| {
            c.state.paused()?;
            // The probes of a paused container stop.
            if let Some(h) = c.health.as_mut() {
                crate::health::stopped(h);
            }
            Ok(())
        })?;
        self.emit(Scope::Container, Action::Pause, &id);
        Ok(())
    }

    pub fn unpause(&self, id: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        if !matches!(self.get(&id)?.state.status, Status::Paused(_)) {
            return Err(Error::conflict(format!("Container {id} is not paused")));
        }
        let host = self.compute_host()?;
        silo_compute::open(&host, &id)
            .and_then(|s| s.resume())
            .map_err(|e| Error::internal(format!("unpause {id}"), e))?;
        self.modify(&id, |c| c.state.unpaused())?;
        self.health_watch(&id);
        self.emit(Scope::Container, Action::Unpause, &id);
        Ok(())
    }

    /// Waits for `condition`; a removed container answers with the exit
    /// code it had.
    pub fn wait(&self, id: &str, condition: WaitCondition) -> Result<WaitResult> {
        let id = self.resolve_id(id)?;
        let mut map = self.lock();
        let start_seq = map.get(&id).map_or(0, |c| c.exit_seq);
        loop {
            match map.get(&id) {
                None => {
                    let code = self
                        .removed_exits
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .rev()
                        .find(|(r, _)| *r == id)
                        .map_or(0, |(_, code)| *code);
                    return Ok(WaitResult {
                        exit_code: code,
                        error: None,
                    });
                }
                Some(c) => {
                    let done = match condition {
                        WaitCondition::NotRunning => matches!(
                            c.state.status,
                            Status::Created | Status::Exited(_) | Status::Dead
                        ),
                        WaitCondition::NextExit => c.exit_seq > start_seq,
                        WaitCondition::Removed => false,
                    };
                    if done {
                        return Ok(WaitResult {
                            exit_code: c.state.last_exit().map_or(0, |e| e.code),
                            error: Some(c.state.error.clone()).filter(|e| !e.is_empty()),
                        });
                    }
                }
            }
            map = self
                .changed
                .wait_timeout(map, Duration::from_millis(500))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Removes a container: refused while it runs unless `force` (then it
    /// is killed first); with `volumes` its anonymous volumes go too. A
    /// removal that cannot undo everything marks the container dead and
    /// reports every failure; removing it again finishes the job.
    pub fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let id = self.resolve_id(id)?;
        let lock = self.op_lock(&id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let c = self.get(&id)?;
        match &c.state.status {
            Status::Removing => {
                return Err(Error::conflict(format!(
                    "removal of container {id} is already in progress"
                )))
            }
            s @ (Status::Running(_) | Status::Paused(_) | Status::Restarting(_)) if !force => {
                return Err(Error::conflict(format!(
                    "You cannot remove a {} container {id}. Stop the container before attempting removal or force remove",
                    s.name()
                )));
            }
            Status::Restarting(_) => {
                self.modify(&id, |c| {
                    c.manual_stop = true;
                    c.state.restart_cancelled()
                })?;
            }
            Status::Running(run) | Status::Paused(run) => {
                let started_at = run.started_at.clone();
                self.modify(&id, |c| {
                    c.manual_stop = true;
                    Ok(())
                })?;
                let _ = self.signal(&id, libc::SIGKILL);
                if !self.wait_stopped(&id, Some(Instant::now() + Duration::from_secs(10))) {
                    // The monitor did not report: record the kill by hand
                    // (the removal below cleans up after it).
                    let killed = model::Exit {
                        code: 128 + i64::from(libc::SIGKILL),
                        oom_killed: false,
                        started_at,
                        finished_at: silo_units::now_rfc3339(),
                    };
                    let _ = self.modify(&id, |c| c.state.exited(killed));
                }
            }
            _ => {}
        }
        self.remove_stopped_locked(&id, volumes)
    }

    /// The end of a removal, with the op lock held and the container stopped.
    pub(crate) fn remove_stopped_locked(&self, id: &str, volumes: bool) -> Result<()> {
        let (c, ()) = self.modify(id, |c| c.state.removing())?;
        self.finish_removal(&c, volumes)
    }

    /// Tears down a container in `Removing`: gone when every step worked,
    /// else marked dead with every failure reported.
    pub(crate) fn finish_removal(&self, c: &model::Container, volumes: bool) -> Result<()> {
        let id = &c.id;
        match teardown::run(self, c, &teardown::REMOVE, volumes) {
            Ok(()) => {
                self.emit_with(
                    Scope::Container,
                    Action::Destroy,
                    id,
                    crate::container_attributes(c),
                );
                Ok(())
            }
            Err(e) => {
                let _ = self.modify(id, |c| c.state.dead());
                Err(e.into())
            }
        }
    }

    /// Auto-remove after the exit that finished at `finished`, unless the
    /// container has been started again (or removed) since: the exit
    /// watcher races with start and restart, which hold the op lock.
    pub(crate) fn auto_remove(&self, id: &str, finished: &str) -> Result<()> {
        let lock = self.op_lock(id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(c) = self.get(id) else { return Ok(()) };
        let same_exit = matches!(&c.state.status, Status::Exited(e) if e.finished_at == finished);
        if !same_exit {
            return Ok(());
        }
        self.remove_stopped_locked(id, true)
    }

    /// The containers that mount the named volume.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|c| {
                c.mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.name.as_deref() == Some(name))
            })
            .map(|c| c.id.clone())
            .collect()
    }

    pub fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let id = self.resolve_id(id)?;
        let n = new_name.strip_prefix('/').unwrap_or(new_name);
        if !model::valid_name(n) {
            return Err(Error::invalid(
                "name",
                format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
            ));
        }
        let old = {
            let map = self.lock();
            if let Some(other) = map.values().find(|c| c.name == n) {
                if other.id == id {
                    return Err(Error::invalid(
                        "name",
                        format!(
                            "Renaming a container with the same name as its current name (/{n})"
                        ),
                    ));
                }
                return Err(name_taken(n, &other.id));
            }
            map.get(&id).map(|c| c.name.clone()).unwrap_or_default()
        };
        self.modify(&id, |c| {
            c.name = n.to_string();
            Ok(())
        })?;
        self.emit(Scope::Container, Action::Rename { old_name: old }, &id);
        Ok(())
    }

    /// Changes limits (at once, if the container runs), the restart policy
    /// and front-end data.
    pub fn update(&self, id: &str, req: UpdateRequest) -> Result<()> {
        let id = self.resolve_id(id)?;
        let c = self.get(&id)?;
        if let (Some(res), true) = (&req.resources, c.state.status.is_running()) {
            let host = self.compute_host()?;
            let mut sys = silo_compute::open(&host, &id)
                .map_err(|e| Error::internal(format!("update {id}"), e))?;
            let mut live = res.clone();
            live.devices.clear();
            sys.update(&live).map_err(|e| {
                Error::invalid("resources", format!("Cannot update container {id}: {e}"))
            })?;
        }
        self.modify(&id, |c| {
            if let Some(res) = &req.resources {
                c.config.resources = res.clone();
                if let Some(l) = c.spec.linux.as_mut() {
                    l.resources = Some(res.clone());
                }
            }
            if let Some(r) = req.restart {
                c.config.restart = r;
            }
            for (k, v) in &req.extensions {
                c.extensions.insert(k.clone(), v.clone());
            }
            Ok(())
        })?;
        self.emit(Scope::Container, Action::Update, &id);
        Ok(())
    }

    /// Prunes stopped containers that `keep` does not keep; returns the
    /// removed ids and the bytes their filesystems held.
    pub fn prune_containers(&self, keep: &dyn Fn(&model::Container) -> bool) -> (Vec<String>, u64) {
        let candidates: Vec<model::Container> = self
            .lock()
            .values()
            .filter(|c| {
                matches!(
                    c.state.status,
                    Status::Created | Status::Exited(_) | Status::Dead
                )
            })
            .cloned()
            .collect();
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for c in candidates {
            if keep(&c) {
                continue;
            }
            let size = self.storage.snapshot_size(&c.id);
            if self.remove(&c.id, false, false).is_ok() {
                reclaimed += size;
                deleted.push(c.id.clone());
            }
        }
        self.emit_with(
            Scope::Container,
            Action::Prune { reclaimed },
            "",
            Default::default(),
        );
        (deleted, reclaimed)
    }

    /// Runs the inverses of the steps a stopped container may still hold
    /// after a crash (its network above all).
    pub(crate) fn release_leftovers(&self, c: &model::Container) {
        if let Err(e) = teardown::run(self, c, &[Step::Network], false) {
            tracing::warn!("releasing what {} still held: {e}", c.id);
        }
    }
}

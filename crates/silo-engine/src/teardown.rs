//! Teardown: the inverse of each stage of a container's life, run in
//! order, carrying on past a failure and reporting every one (like
//! silo-job's `destroy`). Every step is idempotent, so recovery can run the
//! inverses of whatever a dead container might still hold, and a removal
//! that failed part-way can simply be run again.

use crate::error::{Step, TeardownError};
use crate::model::Container;
use crate::Engine;

/// Undoes one step for one container. The engine's own implementation
/// acts on the host; unit tests stand in a fake to make steps fail.
pub(crate) trait Undo {
    fn undo(&self, step: Step, c: &Container, volumes: bool) -> Result<(), String>;
}

/// Runs `steps` for `c` in order; every step runs whatever the ones
/// before it did. With `volumes`, anonymous volumes go too (when the step
/// is listed). [`Step::Record`] runs only when every other step succeeded:
/// a container that still holds something stays on record (the caller
/// marks it dead) so that a second try can finish the job.
pub(crate) fn run(
    u: &dyn Undo,
    c: &Container,
    steps: &[Step],
    volumes: bool,
) -> Result<(), TeardownError> {
    let mut failures = Vec::new();
    for step in steps {
        if *step == Step::Record && !failures.is_empty() {
            continue;
        }
        if let Err(e) = u.undo(*step, c, volumes) {
            failures.push((*step, e));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(TeardownError {
            id: c.id.clone(),
            failures,
        })
    }
}

impl Undo for Engine {
    fn undo(&self, step: Step, c: &Container, volumes: bool) -> Result<(), String> {
        let id = &c.id;
        match step {
            Step::Runtime => {
                self.delete_runtime(id);
                Ok(())
            }
            Step::Network => {
                let mut errors = Vec::new();
                let owns = c.config.pod.is_none() && c.config.namespaces.network.owns_namespace();
                if owns {
                    if let Err(e) = self.network.detach(id) {
                        errors.push(e);
                    }
                }
                if let Err(e) = silo_isolation::pin::unpin(&self.netns_path(id)) {
                    errors.push(e.to_string());
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                }
            }
            Step::Snapshot => self.storage.remove_snapshot(id).map_err(|e| e.to_string()),
            Step::Volumes => {
                if !volumes {
                    return Ok(());
                }
                let mut errors = Vec::new();
                for v in &c.anonymous_volumes {
                    if self.volume_users(v).iter().any(|u| u != id) {
                        continue;
                    }
                    match self.storage.remove_volume(v, false, true) {
                        Ok(()) => self.emit_with(
                            crate::Scope::Volume,
                            crate::Action::Destroy,
                            v,
                            Default::default(),
                        ),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors.join("; "))
                }
            }
            Step::Files => {
                // The short link first: it points into the directory.
                let _ = std::fs::remove_file(self.state_dir(id));
                let dir = self.container_dir(id);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("removing {}: {e}", dir.display())),
                }
            }
            Step::Record => {
                self.db.delete_container(id).map_err(|e| e.to_string())?;
                if let Some(exit) = c.state.last_exit() {
                    let mut recent = self.removed_exits.lock().unwrap_or_else(|p| p.into_inner());
                    if recent.len() >= crate::REMOVED_EXITS_KEPT {
                        recent.pop_front();
                    }
                    recent.push_back((id.clone(), exit.code));
                }
                self.lock().remove(id);
                self.op_locks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
                self.changed.notify_all();
                Ok(())
            }
        }
    }
}

/// Every step of a removal, in order.
pub(crate) const REMOVE: [Step; 6] = [
    Step::Runtime,
    Step::Network,
    Step::Snapshot,
    Step::Volumes,
    Step::Files,
    Step::Record,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records the steps it is asked to undo and fails the chosen ones.
    struct Fake {
        fail: Vec<Step>,
        done: RefCell<Vec<Step>>,
    }

    impl Undo for Fake {
        fn undo(&self, step: Step, _: &Container, _: bool) -> Result<(), String> {
            self.done.borrow_mut().push(step);
            if self.fail.contains(&step) {
                Err(format!("{} broke", step.name()))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_failure_in_each_step_still_runs_the_others_and_reports_all() {
        let c = Container::for_test("c1", "web");
        for failing in REMOVE {
            let fake = Fake {
                fail: vec![failing],
                done: RefCell::new(vec![]),
            };
            let e = run(&fake, &c, &REMOVE, true).unwrap_err();
            assert_eq!(e.failures.len(), 1, "{e}");
            assert_eq!(e.failures[0].0, failing);
            assert!(e.to_string().contains("broke"), "{e}");
            let done = fake.done.into_inner();
            let expected: Vec<Step> = REMOVE
                .iter()
                .copied()
                .filter(|s| *s != Step::Record || failing == Step::Record)
                .collect();
            assert_eq!(done, expected, "with {} failing", failing.name());
        }
        // Several failures are all reported, in order.
        let fake = Fake {
            fail: vec![Step::Runtime, Step::Snapshot, Step::Files],
            done: RefCell::new(vec![]),
        };
        let e = run(&fake, &c, &REMOVE, false).unwrap_err();
        let steps: Vec<Step> = e.failures.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [Step::Runtime, Step::Snapshot, Step::Files]);
        assert_eq!(
            e.to_string(),
            "tearing down c1: runtime state: runtime state broke; filesystem: filesystem broke; files: files broke"
        );
        // Nothing failing: every step ran, the record last.
        let fake = Fake {
            fail: vec![],
            done: RefCell::new(vec![]),
        };
        run(&fake, &c, &REMOVE, true).unwrap();
        assert_eq!(fake.done.into_inner(), REMOVE);
    }
}

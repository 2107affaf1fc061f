//! Fast joining: a single-threaded caller moves its own thread into the v1
//! hierarchies through `tasks`, so a child it then forks is born inside the
//! job. Writing a pid to `cgroup.procs` takes the kernel's global
//! threadgroup lock for writing, which waits for an RCU grace period
//! (about 10 ms on an idle host); moving only the current thread does not.

use crate::{AddError, CgroupFs, Job};
use std::path::{Path, PathBuf};

/// Where the caller was before `enter_current`; `leave` moves it back.
#[derive(Debug)]
#[must_use = "call leave() to move the caller back out of the job"]
pub struct Entered {
    back: Vec<PathBuf>,
}

/// Parses `/proc/self/cgroup` into (controllers, path) pairs.
fn memberships(text: &str) -> Vec<(Vec<&str>, &str)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            Some((ctrls.split(',').filter(|c| !c.is_empty()).collect(), path))
        })
        .collect()
}

fn thread_count(proc_self_status: &Path) -> Option<u32> {
    std::fs::read_to_string(proc_self_status)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Job {
    /// Moves the calling thread into this job's v1 hierarchies (writing
    /// "0" to each `tasks` file) and returns how to move it back. Returns
    /// `Ok(None)` when this does not apply: the process has more than one
    /// thread, or there are no v1 hierarchies; callers then fall back to
    /// `add_pid`. `proc_self` is the caller's `/proc/self`.
    pub fn enter_current(
        &self,
        fs: &CgroupFs,
        proc_self: &Path,
    ) -> Result<Option<Entered>, AddError> {
        if self.v1.is_empty() || thread_count(&proc_self.join("status")) != Some(1) {
            return Ok(None);
        }
        let text = std::fs::read_to_string(proc_self.join("cgroup")).map_err(|source| {
            AddError::Write {
                pid: 0,
                path: proc_self.join("cgroup"),
                source,
            }
        })?;
        let current = memberships(&text);
        let mut back = Vec::new();
        for (controller, dir) in &self.v1 {
            let name = controller.as_str();
            let Some(mount) = fs.controllers().get(name) else {
                continue;
            };
            let Some((_, path)) = current.iter().find(|(c, _)| c.contains(&name)) else {
                continue;
            };
            let original = mount.join(path.trim_start_matches('/')).join("tasks");
            if !back.contains(&original) {
                back.push(original);
            }
            let tasks = dir.join("tasks");
            if let Err(source) = crate::write_file(&tasks, "0") {
                let _ = Entered { back }.leave();
                return Err(AddError::Write {
                    pid: 0,
                    path: tasks,
                    source,
                });
            }
        }
        Ok(Some(Entered { back }))
    }
}

impl Entered {
    /// Moves the calling thread back where it was, carrying on past errors.
    pub fn leave(self) -> Result<(), AddError> {
        let mut first = None;
        for tasks in self.back {
            if let Err(source) = crate::write_file(&tasks, "0") {
                first.get_or_insert(AddError::Write {
                    pid: 0,
                    path: tasks,
                    source,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self_cgroup() {
        let text = "12:pids:/a\n3:cpu,cpuacct:/b/c\n1:name=systemd:/\n0::/u\n";
        let m = memberships(text);
        assert_eq!(m[0], (vec!["pids"], "/a"));
        assert_eq!(m[1], (vec!["cpu", "cpuacct"], "/b/c"));
        assert_eq!(m[2], (vec!["name=systemd"], "/"));
        assert_eq!(m[3], (vec![], "/u"));
    }

    #[test]
    fn counts_threads() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("status"), "Name:\tx\nThreads:\t3\n").unwrap();
        assert_eq!(thread_count(&d.path().join("status")), Some(3));
        assert_eq!(thread_count(&d.path().join("missing")), None);
    }
}

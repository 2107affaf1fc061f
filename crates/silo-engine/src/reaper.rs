//! Reaps the children nobody waits for. silod is a child subreaper, so the
//! orphans of its monitors and execs (a container's init after its monitor
//! was killed, a monitor whose parent gave up) become its children; the
//! engine waits for the ones it knows (monitors through pidfds, execs and
//! probes with `waitpid`) at once, and this thread collects every other
//! zombie. A zombie is reaped only after it has stayed one for
//! [`GRACE`], far longer than any of the engine's own waits takes to begin,
//! so it never steals an exit status someone is about to read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How long a child must have been a zombie before it is reaped here.
pub(crate) const GRACE: Duration = Duration::from_secs(3);
/// How often the children are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the reaper; it ends with the engine.
pub(crate) fn start(engine: Weak<crate::Engine>) {
    let spawned = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let mut seen: HashMap<i32, Instant> = HashMap::new();
            loop {
                std::thread::sleep(EVERY);
                if engine.upgrade().is_none() {
                    return;
                }
                let zombies = zombie_children(Path::new("/proc/self"));
                let now = Instant::now();
                seen.retain(|pid, _| zombies.contains(pid));
                for pid in zombies {
                    let first = *seen.entry(pid).or_insert(now);
                    if now.duration_since(first) >= GRACE {
                        reap(pid);
                        seen.remove(&pid);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("starting the reaper thread: {e}");
    }
}

/// The children (of any thread of the process at `proc_self`) that are
/// zombies.
pub(crate) fn zombie_children(proc_self: &Path) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(proc_self.join("task")) else {
        return vec![];
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for pid in list
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            if state == Some("Z") && !out.contains(&pid) {
                out.push(pid);
            }
        }
    }
    out
}

fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG writes into a live i32.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == pid {
        tracing::debug!(pid, status, "reaped an orphan");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_zombie_child_and_reaps_it() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !zombie_children(Path::new("/proc/self")).contains(&pid) {
            assert!(
                Instant::now() < deadline,
                "the child never showed as a zombie"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        reap(pid);
        assert!(!zombie_children(Path::new("/proc/self")).contains(&pid));
        // Reaped: the Child handle cannot wait for it any more.
        drop(child);
    }
}

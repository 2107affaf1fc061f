//! Notifications from a compute system (HCS notifications): periodic
//! statistics, OOM kills and hits of the pids limit, and warnings.

use crate::system::ComputeSystem;
use serde::Serialize;
use silo_oci::Status;
use std::time::{Duration, Instant};

/// One event, printed by `events` as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Warnings go to stderr; the runtime's logger also sees stderr.
pub(crate) fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

impl ComputeSystem {
    /// Watches the compute system until it stops or `sink` returns false.
    /// With `stats`, emits a `stats` event every `interval`; always emits
    /// `oom` when the OOM-kill counter grows and `pids.limit` when a fork
    /// hit the pids limit.
    pub fn watch(
        &self,
        interval: Duration,
        stats: bool,
        mut sink: impl FnMut(&Event) -> bool,
    ) -> Result<(), crate::OpError> {
        let first = self.stats()?;
        let (mut ooms, mut hits) = (first.memory.oom_kills, first.pids.limit_hits);
        let poll = Duration::from_millis(100).min(interval);
        let mut next_stats = Instant::now();
        loop {
            let now = Instant::now();
            let current = match self.stats() {
                Ok(s) => s,
                Err(_) => return Ok(()),
            };
            if current.memory.oom_kills > ooms {
                ooms = current.memory.oom_kills;
                if !sink(&self.event("oom", None)) {
                    return Ok(());
                }
            }
            if current.pids.limit_hits > hits {
                hits = current.pids.limit_hits;
                let data = serde_json::json!({"current": current.pids.current, "limit": current.pids.limit});
                if !sink(&self.event("pids.limit", Some(data))) {
                    return Ok(());
                }
            }
            if stats && now >= next_stats {
                next_stats = now + interval;
                let data = serde_json::to_value(&current).ok();
                if !sink(&self.event("stats", data)) {
                    return Ok(());
                }
            }
            if self.status() == Status::Stopped {
                return Ok(());
            }
            std::thread::sleep(poll);
        }
    }

    fn event(&self, kind: &str, data: Option<serde_json::Value>) -> Event {
        Event {
            kind: kind.into(),
            id: self.id().into(),
            data,
        }
    }
}

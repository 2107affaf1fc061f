//! The engine's events: what happened to which object, broadcast to
//! subscribers with a bounded history so a subscriber can ask for the
//! recent past. Front ends filter and render them in their own shapes.

use crate::model::HealthStatus;
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

/// How many past events are kept for `since`.
const HISTORY: usize = 1024;

/// What kind of object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Container,
    Image,
    Volume,
    Pod,
    Network,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Start,
    /// The run ended.
    Die {
        exit_code: i64,
    },
    /// The kernel's OOM killer ended it.
    Oom,
    Kill {
        signal: i32,
    },
    Stop,
    Restart,
    Pause,
    Unpause,
    Rename {
        old_name: String,
    },
    Update,
    Destroy,
    ExecCreate {
        exec_id: String,
        command: Vec<String>,
    },
    ExecStart {
        exec_id: String,
        command: Vec<String>,
    },
    ExecDie {
        exec_id: String,
        exit_code: i64,
    },
    Health(HealthStatus),
    /// Prune of a scope's unused objects.
    Prune {
        reclaimed: u64,
    },
    Import,
    Pull,
    Push,
    Load,
    Save,
    Commit,
    Tag,
    Untag,
    Delete,
    /// A container joined a network (scope network).
    Connect,
    /// A container left a network (scope network).
    Disconnect,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub scope: Scope,
    pub action: Action,
    /// The object's id ("" for a scope-wide event such as a prune).
    pub id: String,
    /// Context: a container's `name`, `image` and labels; an image's or a
    /// volume's `name`, a volume's `driver`.
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
}

impl Event {
    pub fn time_secs(&self) -> i64 {
        self.time_nano.div_euclid(1_000_000_000)
    }
}

struct Subscriber {
    tx: Sender<Event>,
    until: Option<i64>,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<Event>,
    subscribers: Vec<Subscriber>,
}

/// The broadcast.
#[derive(Default)]
pub(crate) struct Bus {
    inner: Mutex<Inner>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

impl Bus {
    /// Sends an event to every live subscriber and records it in the history.
    pub fn publish(
        &self,
        scope: Scope,
        action: Action,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let ev = Event {
            scope,
            action,
            id: id.to_string(),
            attributes,
            time_nano: now_nanos(),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        let secs = ev.time_secs();
        inner.subscribers.retain(|s| {
            if s.until.is_some_and(|u| secs > u) {
                return false;
            }
            s.tx.send(ev.clone()).is_ok()
        });
    }

    /// Subscribes: past events at or after `since` (unix seconds) are
    /// queued first; with an `until` in the past the channel closes after
    /// them, else at the first event after `until`.
    pub fn subscribe(&self, since: Option<i64>, until: Option<i64>) -> Receiver<Event> {
        let (tx, rx) = channel();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = since {
            for ev in inner.history.iter() {
                let t = ev.time_secs();
                if t >= since && until.is_none_or(|u| t <= u) {
                    let _ = tx.send(ev.clone());
                }
            }
        }
        let now = now_nanos() / 1_000_000_000;
        if until.is_none_or(|u| u >= now) {
            inner.subscribers.push(Subscriber { tx, until });
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_live_delivery_and_until() {
        let bus = Bus::default();
        bus.publish(Scope::Container, Action::Create, "aaa", BTreeMap::new());
        bus.publish(Scope::Image, Action::Import, "sha256:1", BTreeMap::new());
        let rx = bus.subscribe(Some(0), None);
        assert_eq!(rx.try_recv().unwrap().action, Action::Create);
        assert_eq!(rx.try_recv().unwrap().scope, Scope::Image);
        assert!(rx.try_recv().is_err());
        bus.publish(Scope::Container, Action::Start, "aaa", BTreeMap::new());
        assert_eq!(rx.try_recv().unwrap().action, Action::Start);
        let live = bus.subscribe(None, None);
        bus.publish(
            Scope::Container,
            Action::Die { exit_code: 3 },
            "aaa",
            BTreeMap::new(),
        );
        assert_eq!(
            live.try_recv().unwrap().action,
            Action::Die { exit_code: 3 }
        );
        // until in the past: replay only, then the channel is closed.
        let old = bus.subscribe(Some(0), Some(1));
        assert!(matches!(
            old.recv_timeout(std::time::Duration::from_millis(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}

//! Engine events (`GET /events`): an in-memory broadcast to subscribers
//! with a bounded history so `since` can replay recent events.

use crate::Filters;
use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

/// How many past events are kept for `since`.
const HISTORY: usize = 1024;

struct Subscriber {
    tx: Sender<EventMessage>,
    filters: Filters,
    until: Option<i64>,
}

#[derive(Default)]
struct Inner {
    history: VecDeque<EventMessage>,
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

fn type_enum(typ: &str) -> EventMessageTypeEnum {
    typ.parse().unwrap_or(EventMessageTypeEnum::EMPTY)
}

/// Whether `ev` passes Docker's event filters (type, event/action,
/// container, image, volume, label; values of one key are ORed, keys ANDed).
pub(crate) fn matches(ev: &EventMessage, filters: &Filters) -> bool {
    let typ = ev.typ.map(|t| t.to_string()).unwrap_or_default();
    let action = ev.action.clone().unwrap_or_default();
    let empty = HashMap::new();
    let actor = ev.actor.as_ref();
    let id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    let attrs = actor.and_then(|a| a.attributes.as_ref()).unwrap_or(&empty);
    let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
    filters.iter().all(|(key, values)| {
        if values.is_empty() {
            return true;
        }
        values.iter().any(|v| match key.as_str() {
            "type" => typ == *v,
            "event" | "action" => action == *v || action.split(':').next() == Some(v.as_str()),
            "container" => typ == "container" && (id.starts_with(v.as_str()) || attr("name") == *v),
            "image" => (typ == "image" && (id == *v || attr("name") == *v)) || attr("image") == *v,
            "volume" => typ == "volume" && id == *v,
            "label" => match v.split_once('=') {
                Some((k, val)) => attrs.get(k).map(|x| x == val).unwrap_or(false),
                None => attrs.contains_key(v.as_str()),
            },
            "scope" => v == "local",
            _ => true,
        })
    })
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Sends an event to every live subscriber whose filters match, and
    /// records it in the history.
    pub fn publish(&self, typ: &str, action: &str, id: &str, attributes: HashMap<String, String>) {
        let nanos = now_nanos();
        let ev = EventMessage {
            typ: Some(type_enum(typ)),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: Some(nanos / 1_000_000_000),
            time_nano: Some(nanos),
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        let secs = nanos / 1_000_000_000;
        inner.subscribers.retain(|s| {
            if s.until.is_some_and(|u| secs > u) {
                return false;
            }
            if !matches(&ev, &s.filters) {
                return true;
            }
            s.tx.send(ev.clone()).is_ok()
        });
    }

    /// Subscribes: matching past events at or after `since` are queued
    /// first; with an `until` in the past the channel closes after them.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filters: &Filters,
    ) -> Receiver<EventMessage> {
        let (tx, rx) = channel();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = since {
            for ev in inner.history.iter() {
                let t = ev.time.unwrap_or(0);
                if t >= since && until.is_none_or(|u| t <= u) && matches(ev, filters) {
                    let _ = tx.send(ev.clone());
                }
            }
        }
        let now = now_nanos() / 1_000_000_000;
        if until.is_none_or(|u| u >= now) {
            inner.subscribers.push(Subscriber {
                tx,
                filters: filters.clone(),
                until,
            });
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(name: &str) -> HashMap<String, String> {
        HashMap::from([
            ("name".to_string(), name.to_string()),
            ("image".to_string(), "busybox".to_string()),
        ])
    }

    #[test]
    fn replay_filters_and_live_delivery() {
        let bus = Bus::new();
        bus.publish("container", "create", "aaa", attrs("web"));
        bus.publish("image", "import", "sha256:1", HashMap::new());
        let filters = Filters::from([("type".to_string(), vec!["container".to_string()])]);
        let rx = bus.subscribe(Some(0), None, &filters);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.action.as_deref(), Some("create"));
        assert!(rx.try_recv().is_err(), "image event must be filtered out");
        bus.publish("container", "start", "aaa", attrs("web"));
        assert_eq!(rx.try_recv().unwrap().action.as_deref(), Some("start"));
        // Filter by name and by event.
        let f2 = Filters::from([
            ("container".to_string(), vec!["web".to_string()]),
            ("event".to_string(), vec!["die".to_string()]),
        ]);
        let rx2 = bus.subscribe(None, None, &f2);
        bus.publish("container", "start", "aaa", attrs("web"));
        bus.publish("container", "die", "bbb", attrs("other"));
        bus.publish("container", "die", "aaa", attrs("web"));
        let got: Vec<_> = rx2.try_iter().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].actor.as_ref().unwrap().id.as_deref(), Some("aaa"));
        // until in the past: replay only, then the channel is closed.
        let rx3 = bus.subscribe(Some(0), Some(1), &Filters::new());
        assert!(matches!(
            rx3.recv_timeout(std::time::Duration::from_millis(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}

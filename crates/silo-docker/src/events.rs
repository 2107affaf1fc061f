//! `docker events`: the engine's events in Docker's shape (actions such as
//! `die`, `exec_start: sh -c …`, `health_status: healthy`, attributes such
//! as `exitCode` and `execID`) and Docker's event filters.

use crate::exec::event_action;
use crate::inspect::Filters;
use crate::Docker;
use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use silo_engine::{Action, Event, Scope};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// The Docker event for an engine event.
pub(crate) fn to_docker(ev: &Event) -> EventMessage {
    let mut attributes: HashMap<String, String> = ev.attributes.clone().into_iter().collect();
    let action = match &ev.action {
        Action::Create => "create".to_string(),
        Action::Start => "start".into(),
        Action::Die { exit_code } => {
            attributes.insert("exitCode".into(), exit_code.to_string());
            "die".into()
        }
        Action::Oom => "oom".into(),
        Action::Kill { signal } => {
            attributes.insert("signal".into(), signal.to_string());
            "kill".into()
        }
        Action::Stop => "stop".into(),
        Action::Restart => "restart".into(),
        Action::Pause => "pause".into(),
        Action::Unpause => "unpause".into(),
        Action::Rename { old_name } => {
            attributes.insert("oldName".into(), format!("/{old_name}"));
            "rename".into()
        }
        Action::Update => "update".into(),
        Action::Destroy => "destroy".into(),
        Action::ExecCreate { exec_id, command } => {
            attributes.insert("execID".into(), exec_id.clone());
            event_action("exec_create", command)
        }
        Action::ExecStart { exec_id, command } => {
            attributes.insert("execID".into(), exec_id.clone());
            event_action("exec_start", command)
        }
        Action::ExecDie { exec_id, exit_code } => {
            attributes.insert("execID".into(), exec_id.clone());
            attributes.insert("exitCode".into(), exit_code.to_string());
            "exec_die".into()
        }
        Action::Health(s) => format!("health_status: {}", s.name()),
        Action::Prune { reclaimed } => {
            attributes.insert("reclaimed".into(), reclaimed.to_string());
            "prune".into()
        }
        Action::Import => "import".into(),
        Action::Pull => "pull".into(),
        Action::Push => "push".into(),
        Action::Load => "load".into(),
        Action::Save => "save".into(),
        Action::Commit => "commit".into(),
        Action::Tag => "tag".into(),
        Action::Untag => "untag".into(),
        Action::Delete => "delete".into(),
        Action::Connect => "connect".into(),
        Action::Disconnect => "disconnect".into(),
    };
    let typ = match ev.scope {
        Scope::Container | Scope::Pod => EventMessageTypeEnum::CONTAINER,
        Scope::Image => EventMessageTypeEnum::IMAGE,
        Scope::Volume => EventMessageTypeEnum::VOLUME,
        Scope::Network => EventMessageTypeEnum::NETWORK,
    };
    EventMessage {
        typ: Some(typ),
        action: Some(action),
        actor: Some(EventActor {
            id: Some(ev.id.clone()),
            attributes: Some(attributes),
        }),
        scope: Some(EventMessageScopeEnum::LOCAL),
        time: Some(ev.time_secs()),
        time_nano: Some(ev.time_nano),
    }
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
        if key == "label" {
            return values
                .iter()
                .all(|v| crate::inspect::label_matches(|k| attrs.get(k).cloned(), v));
        }
        values.iter().any(|v| match key.as_str() {
            "type" => typ == *v,
            "event" | "action" => action == *v || action.split(':').next() == Some(v.as_str()),
            "container" => typ == "container" && (id.starts_with(v.as_str()) || attr("name") == *v),
            "image" => (typ == "image" && (id == *v || attr("name") == *v)) || attr("image") == *v,
            "volume" => typ == "volume" && id == *v,
            "scope" => v == "local",
            _ => true,
        })
    })
}

/// A subscriber's events, filtered and in Docker's shape.
pub struct EventStream {
    rx: Receiver<Event>,
    filters: Filters,
}

impl EventStream {
    /// The next matching event within `timeout`; `Disconnected` once the
    /// stream is over (its `until` has passed).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<EventMessage, RecvTimeoutError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ev = self.rx.recv_timeout(left)?;
            if ev.scope == Scope::Pod {
                continue;
            }
            let msg = to_docker(&ev);
            if matches(&msg, &self.filters) {
                return Ok(msg);
            }
        }
    }
}

impl EventStream {
    /// The next matching event already queued, without waiting.
    pub fn try_recv(&self) -> Result<EventMessage, std::sync::mpsc::TryRecvError> {
        loop {
            let ev = self.rx.try_recv()?;
            if ev.scope == Scope::Pod {
                continue;
            }
            let msg = to_docker(&ev);
            if matches(&msg, &self.filters) {
                return Ok(msg);
            }
        }
    }
}

impl Docker {
    /// `GET /events`: past events since `since` first, then live ones.
    pub fn events(&self, since: Option<i64>, until: Option<i64>, filters: &Filters) -> EventStream {
        EventStream {
            rx: self.engine.events(since, until),
            filters: filters.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ev(scope: Scope, action: Action, id: &str, name: &str) -> Event {
        Event {
            scope,
            action,
            id: id.into(),
            attributes: BTreeMap::from([
                ("name".to_string(), name.to_string()),
                ("image".to_string(), "busybox".to_string()),
            ]),
            time_nano: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn actions_and_attributes_are_dockers() {
        let m = to_docker(&ev(
            Scope::Container,
            Action::Die { exit_code: 3 },
            "a",
            "web",
        ));
        assert_eq!(m.action.as_deref(), Some("die"));
        let attrs = m.actor.unwrap().attributes.unwrap();
        assert_eq!(attrs["exitCode"], "3");
        assert_eq!(attrs["name"], "web");
        assert_eq!(m.time, Some(1_700_000_000));
        let m = to_docker(&ev(
            Scope::Container,
            Action::ExecStart {
                exec_id: "x1".into(),
                command: vec!["id".into()],
            },
            "a",
            "web",
        ));
        assert_eq!(m.action.as_deref(), Some("exec_start: id "));
        let m = to_docker(&ev(
            Scope::Container,
            Action::Health(silo_engine::HealthStatus::Healthy),
            "a",
            "web",
        ));
        assert_eq!(m.action.as_deref(), Some("health_status: healthy"));
        let m = to_docker(&ev(
            Scope::Container,
            Action::Rename {
                old_name: "old".into(),
            },
            "a",
            "web",
        ));
        assert_eq!(m.actor.unwrap().attributes.unwrap()["oldName"], "/old");
    }

    #[test]
    fn filters() {
        let f = |pairs: &[(&str, &str)]| {
            let mut out = Filters::new();
            for (k, v) in pairs {
                out.entry(k.to_string()).or_default().push(v.to_string());
            }
            out
        };
        let die = to_docker(&ev(
            Scope::Container,
            Action::Die { exit_code: 0 },
            "aaa",
            "web",
        ));
        let imp = to_docker(&ev(Scope::Image, Action::Import, "sha256:1", ""));
        assert!(matches(&die, &f(&[("type", "container")])));
        assert!(!matches(&imp, &f(&[("type", "container")])));
        assert!(matches(&die, &f(&[("container", "web"), ("event", "die")])));
        assert!(matches(&die, &f(&[("container", "aa")])));
        assert!(!matches(&die, &f(&[("container", "other")])));
        assert!(matches(&die, &f(&[("image", "busybox")])));
        let exec = to_docker(&ev(
            Scope::Container,
            Action::ExecStart {
                exec_id: "1".into(),
                command: vec!["sh".into()],
            },
            "aaa",
            "web",
        ));
        assert!(matches(&exec, &f(&[("event", "exec_start")])));
    }
}

//! The engine's record of one container (what the store persists) and the
//! name/id lookups every operation starts with.

use crate::{EngineError, Result};
use bollard_stubs::models::{ContainerCreateBody, MountPoint};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Runtime state of a container, Docker's `State` in our own words.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    /// "creating" (only while create is in flight), "created", "running",
    /// "paused", "restarting", "removing", "exited", "dead".
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// The monitor supervising the current run (0 when not running).
    #[serde(default)]
    pub monitor_pid: i32,
    /// Docker's State.Health: set from the first start of a container
    /// with a healthcheck on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

/// Everything the engine knows about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Container {
    pub id: String,
    /// Without the leading '/'.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// "sha256:<hex>".
    pub image_id: String,
    /// The create request as received (Config + HostConfig).
    pub body: ContainerCreateBody,
    /// The generated OCI spec, without the seccomp program (that is
    /// derived from HostConfig at each start so the stored row stays small).
    pub spec: LazySpec,
    pub state: State,
    #[serde(default)]
    pub restart_count: i64,
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// Volumes created for this container only (removed by `rm -v`).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// Set by an explicit stop so restart policies do not fire.
    #[serde(default)]
    pub manual_stop: bool,
    /// The image's `User` (resolved in the rootfs at each start unless
    /// Config.User overrides it).
    #[serde(default)]
    pub image_user: String,
    /// Counts exits seen by this daemon (wait next-exit).
    #[serde(skip)]
    pub exit_seq: u64,
}

/// A container's OCI spec, decoded from its stored JSON on first use.
/// Decoding a thousand specs was most of silod's startup, and a restarted
/// daemon rarely needs more than a few of them soon.
#[derive(Debug, Default)]
pub(crate) struct LazySpec {
    /// The stored JSON, until it is decoded or replaced.
    raw: Option<Box<serde_json::value::RawValue>>,
    spec: OnceLock<silo_oci::Spec>,
}

impl LazySpec {
    fn decoded(&self) -> &silo_oci::Spec {
        self.spec.get_or_init(|| match &self.raw {
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or_else(|e| {
                // Rows are written by us from a Spec; a row that no longer
                // decodes yields an empty spec, which start refuses clearly.
                tracing::error!("stored OCI spec does not decode: {e}");
                silo_oci::Spec::default()
            }),
            None => silo_oci::Spec::default(),
        })
    }
}

impl From<silo_oci::Spec> for LazySpec {
    fn from(spec: silo_oci::Spec) -> LazySpec {
        LazySpec {
            raw: None,
            spec: OnceLock::from(spec),
        }
    }
}

impl Clone for LazySpec {
    fn clone(&self) -> LazySpec {
        LazySpec {
            raw: self.raw.clone(),
            spec: self.spec.clone(),
        }
    }
}

impl std::ops::Deref for LazySpec {
    type Target = silo_oci::Spec;
    fn deref(&self) -> &silo_oci::Spec {
        self.decoded()
    }
}

impl std::ops::DerefMut for LazySpec {
    fn deref_mut(&mut self) -> &mut silo_oci::Spec {
        self.decoded();
        self.raw = None;
        self.spec.get_mut().expect("decoded just above")
    }
}

impl Serialize for LazySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // `raw` is dropped whenever the spec is changed (DerefMut), so while
        // it is here it is the truth, even if it no longer decodes: a spec
        // we cannot read is kept as it was, never replaced by an empty one.
        match &self.raw {
            Some(raw) => raw.serialize(s),
            None => self.decoded().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for LazySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<LazySpec, D::Error> {
        Ok(LazySpec {
            raw: Some(Box::<serde_json::value::RawValue>::deserialize(d)?),
            spec: OnceLock::new(),
        })
    }
}

impl Container {
    /// A minimal record for unit tests: "created", image busybox.
    #[cfg(test)]
    pub fn for_test(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            created: String::new(),
            image: "busybox".into(),
            image_id: String::new(),
            body: ContainerCreateBody::default(),
            spec: Default::default(),
            state: State {
                status: "created".into(),
                ..Default::default()
            },
            restart_count: 0,
            mounts: vec![],
            anonymous_volumes: vec![],
            manual_stop: false,
            image_user: String::new(),
            exit_seq: 0,
        }
    }

    pub fn host_config(&self) -> bollard_stubs::models::HostConfig {
        self.body.host_config.clone().unwrap_or_default()
    }

    /// The user the container runs as: Config.User, else the image's
    /// (unresolved; empty is root). `docker exec` without `-u` and
    /// healthcheck probes run as this user too.
    pub fn user(&self) -> String {
        self.body
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.image_user.clone())
    }
}

/// Docker's error for an unknown container.
pub(crate) fn no_such(name_or_id: &str) -> EngineError {
    EngineError::NotFound(format!("No such container: {name_or_id}"))
}

/// Finds a container: exact id, exact name (with or without '/'), then a
/// unique id prefix.
pub(crate) fn find<'a>(
    map: &'a HashMap<String, Container>,
    name_or_id: &str,
) -> Result<&'a Container> {
    if name_or_id.is_empty() {
        return Err(no_such(name_or_id));
    }
    if let Some(c) = map.get(name_or_id) {
        if c.state.status != "creating" {
            return Ok(c);
        }
    }
    let name = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
    let visible = || map.values().filter(|c| c.state.status != "creating");
    if let Some(c) = visible().find(|c| c.name == name) {
        return Ok(c);
    }
    let mut hits = visible().filter(|c| c.id.starts_with(name_or_id));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(EngineError::BadParameter(format!(
            "multiple IDs found with provided prefix: {name_or_id}"
        ))),
        _ => Err(no_such(name_or_id)),
    }
}

/// Docker's container name rule: `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest: Vec<char> = chars.collect();
    !rest.is_empty()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// 32 random bytes as hex: a container id.
pub(crate) fn random_id() -> String {
    let mut buf = [0u8; 32];
    fill_random(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes into the valid buffer.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n <= 0 {
            // Fall back on the clock; ids only need to be unique, not secret.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8);
            }
            return;
        }
        filled += n as usize;
    }
}

const ADJECTIVES: [&str; 24] = [
    "admiring", "amazing", "blissful", "bold", "brave", "clever", "dreamy", "eager", "elegant",
    "festive", "focused", "gallant", "happy", "jolly", "keen", "loving", "modest", "nifty",
    "quirky", "serene", "sharp", "trusting", "vibrant", "zealous",
];
const NOUNS: [&str; 24] = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "faraday",
    "feynman",
    "galileo",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "turing",
    "wozniak",
];

/// A Docker-like random `adjective_noun` name (with a number appended
/// when `retry` > 0, like Docker does after a collision).
pub(crate) fn random_name(retry: u32) -> String {
    let mut b = [0u8; 2];
    fill_random(&mut b);
    let base = format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    );
    if retry == 0 {
        base
    } else {
        let mut n = [0u8; 1];
        fill_random(&mut n);
        format!("{base}{}", n[0] % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_spec_round_trips_undecoded_and_decodes_on_use() {
        let mut spec = silo_oci::Spec {
            hostname: Some("h1".into()),
            ..Default::default()
        };
        spec.process = Some(silo_oci::Process {
            args: vec!["sleep".into(), "1".into()],
            ..Default::default()
        });
        let json = serde_json::to_string(&LazySpec::from(spec)).unwrap();
        let lazy: LazySpec = serde_json::from_str(&json).unwrap();
        assert!(lazy.spec.get().is_none(), "decoded too early");
        // Re-encoding an undecoded spec writes the stored text as it was.
        assert_eq!(serde_json::to_string(&lazy).unwrap(), json);
        assert_eq!(lazy.hostname.as_deref(), Some("h1"));
        let mut copy = lazy.clone();
        copy.process.as_mut().unwrap().args = vec!["true".into()];
        let again: LazySpec = serde_json::from_str(&serde_json::to_string(&copy).unwrap()).unwrap();
        assert_eq!(again.process.as_ref().unwrap().args, ["true"]);
        assert_eq!(lazy.process.as_ref().unwrap().args, ["sleep", "1"]);
        let broken: LazySpec = serde_json::from_str(r#"{"process":7}"#).unwrap();
        assert!(
            broken.process.is_none(),
            "a row that does not decode is empty"
        );
        assert_eq!(
            serde_json::to_string(&broken).unwrap(),
            r#"{"process":7}"#,
            "an unreadable spec is written back as it was"
        );
    }

    fn c(id: &str, name: &str) -> Container {
        Container::for_test(id, name)
    }

    #[test]
    fn find_by_id_name_and_prefix() {
        let mut m = HashMap::new();
        for (id, name) in [("abc123", "web"), ("abd456", "db")] {
            m.insert(id.to_string(), c(id, name));
        }
        assert_eq!(find(&m, "abc123").unwrap().name, "web");
        assert_eq!(find(&m, "/db").unwrap().id, "abd456");
        assert_eq!(find(&m, "db").unwrap().id, "abd456");
        assert_eq!(find(&m, "abc").unwrap().id, "abc123");
        assert!(matches!(find(&m, "ab"), Err(EngineError::BadParameter(_))));
        let e = find(&m, "nope").unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(e.to_string(), "No such container: nope");
        // A row still being created is invisible.
        m.get_mut("abd456").unwrap().state.status = "creating".into();
        assert!(find(&m, "db").is_err());
    }

    #[test]
    fn names_and_ids() {
        assert!(valid_name("web-1"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        let id = random_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id());
        assert!(random_name(0).contains('_'));
    }
}

//! Read-side container operations: `ps` (list with Docker's filters),
//! `inspect`, and `container prune`.

use crate::containers::{human_duration, now_secs, parse_rfc3339, LOG_FILE};
use crate::health;
use crate::model::Container;
use crate::*;

/// Docker's status line: "Up 3 seconds", "Exited (0) 2 seconds ago", "Created".
pub(crate) fn status_line(c: &Container, now: i64) -> String {
    let s = &c.state;
    match s.status.as_str() {
        "running" | "paused" => {
            let up = parse_rfc3339(&s.started_at).map(|t| now - t).unwrap_or(0);
            let mut out = format!("Up {}", human_duration(up));
            if s.paused {
                out.push_str(" (Paused)");
            } else if let Some(h) = &s.health {
                out.push_str(&format!(" ({})", health::describe(h)));
            }
            out
        }
        "restarting" => {
            let ago = parse_rfc3339(&s.finished_at).map(|t| now - t).unwrap_or(0);
            format!("Restarting ({}) {} ago", s.exit_code, human_duration(ago))
        }
        "exited" => {
            let ago = parse_rfc3339(&s.finished_at).map(|t| now - t).unwrap_or(0);
            format!("Exited ({}) {} ago", s.exit_code, human_duration(ago))
        }
        "removing" => "Removal In Progress".into(),
        "dead" => "Dead".into(),
        _ => "Created".into(),
    }
}

fn command_line(c: &Container) -> String {
    Some(spec::user_args(&c.spec))
        .map(|args| {
            args.iter()
                .map(|a| {
                    if a.contains(' ') || a.is_empty() {
                        format!("{a:?}")
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `name` filter: substring, or an anchored regex-lite (`^name$`, `^pre`, `suf$`).
fn name_matches(name: &str, pattern: &str) -> bool {
    let pat = pattern.strip_prefix('/').unwrap_or(pattern);
    let pat = pat
        .strip_prefix("^/")
        .map(|p| format!("^{p}"))
        .unwrap_or(pat.to_string());
    match (pat.strip_prefix('^'), pat.ends_with('$')) {
        (Some(p), true) => name == &p[..p.len() - 1],
        (Some(p), false) => name.starts_with(p),
        (None, true) => name.ends_with(&pat[..pat.len() - 1]),
        (None, false) => name.contains(pat.as_str()),
    }
}

/// Whether `c` passes Docker's `ps` filters (values ORed, keys ANDed).
pub(crate) fn container_matches(
    c: &Container,
    filters: &Filters,
    order: &dyn Fn(&str) -> Option<String>,
) -> Result<bool> {
    for (key, values) in filters {
        if values.is_empty() {
            continue;
        }
        let ok = match key.as_str() {
            "status" => {
                for v in values {
                    if !matches!(
                        v.as_str(),
                        "created"
                            | "restarting"
                            | "running"
                            | "removing"
                            | "paused"
                            | "exited"
                            | "dead"
                    ) {
                        return Err(EngineError::BadParameter(format!(
                            "invalid filter 'status={v}'"
                        )));
                    }
                }
                values.contains(&c.state.status)
            }
            "label" => values.iter().any(|v| {
                let labels = c.body.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                }
            }),
            "name" => values.iter().any(|v| name_matches(&c.name, v)),
            "id" => values.iter().any(|v| c.id.starts_with(v.as_str())),
            "ancestor" => values.iter().any(|v| {
                let v_latest = if v.contains(':') || v.starts_with("sha256:") {
                    v.clone()
                } else {
                    format!("{v}:latest")
                };
                c.image == *v
                    || c.image == v_latest
                    || format!("{}:latest", c.image) == *v
                    || c.image_id == *v
                    || c.image_id
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(v.as_str()))
                    || order(v).is_some_and(|id| id == c.image_id)
            }),
            "exited" => {
                let mut any = false;
                for v in values {
                    let code: i64 = v.parse().map_err(|_| {
                        EngineError::BadParameter(format!("invalid filter 'exited={v}'"))
                    })?;
                    any |= c.state.status == "exited" && c.state.exit_code == code;
                }
                any
            }
            "volume" => values.iter().any(|v| {
                c.mounts.iter().any(|m| {
                    m.name.as_deref() == Some(v.as_str())
                        || m.destination.as_deref() == Some(v.as_str())
                })
            }),
            "network" => values.iter().any(|v| {
                let mode = c.host_config().network_mode.unwrap_or_default();
                *v == mode || (v == "bridge" && (mode.is_empty() || mode == "default"))
            }),
            "health" => {
                for v in values {
                    if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
                        return Err(EngineError::BadParameter(format!(
                            "Unrecognised filter value for health: {v}"
                        )));
                    }
                }
                values.iter().any(|v| v == health::filter_value(&c.state))
            }
            "before" | "since" | "until" | "isolation" | "is-task" | "publish" | "expose" => true,
            other => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter '{other}'"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Engine {
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &Filters,
    ) -> Result<Vec<ContainerSummary>> {
        let mut list: Vec<Container> = self
            .lock()
            .values()
            .filter(|c| c.state.status != "creating")
            .cloned()
            .collect();
        // Newest first.
        list.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let image_id = |r: &str| self.storage.image(r).ok().map(|i| i.id);
        // before/since: relative to another container's creation.
        let bound = |key: &str| -> Result<Option<String>> {
            match filters.get(key).and_then(|v| v.first()) {
                Some(v) => {
                    let map = self.lock();
                    Ok(Some(model::find(&map, v)?.created.clone()))
                }
                None => Ok(None),
            }
        };
        let before = bound("before")?;
        let since = bound("since")?;
        let now = now_secs();
        let mut out = Vec::new();
        let limited = limit.filter(|l| *l > 0);
        for c in list {
            let show = all
                || c.state.running
                || limited.is_some()
                || filters.contains_key("status")
                || filters.contains_key("exited");
            if !show {
                continue;
            }
            if before.as_ref().is_some_and(|b| c.created >= *b) {
                continue;
            }
            if since.as_ref().is_some_and(|s| c.created <= *s) {
                continue;
            }
            if !container_matches(&c, filters, &image_id)? {
                continue;
            }
            out.push(self.summary(&c, size, now));
            if limited.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    fn summary(&self, c: &Container, size: bool, now: i64) -> ContainerSummary {
        let hc = c.host_config();
        let state = c
            .state
            .status
            .parse()
            .unwrap_or(ContainerSummaryStateEnum::CREATED);
        ContainerSummary {
            id: Some(c.id.clone()),
            names: Some(vec![format!("/{}", c.name)]),
            image: Some(c.image.clone()),
            image_id: Some(c.image_id.clone()),
            command: Some(command_line(c)),
            created: parse_rfc3339(&c.created),
            ports: Some(vec![]),
            size_rw: size.then(|| self.storage.snapshot_size(&c.id) as i64),
            size_root_fs: size.then(|| {
                (self.storage.snapshot_size(&c.id)
                    + self.storage.image(&c.image_id).map(|i| i.size).unwrap_or(0))
                    as i64
            }),
            labels: Some(c.body.labels.clone().unwrap_or_default()),
            state: Some(state),
            status: Some(status_line(c, now)),
            health: Some(ContainerSummaryHealth {
                status: health::filter_value(&c.state).parse().ok(),
                failing_streak: Some(c.state.health.as_ref().map_or(0, |h| h.failing_streak)),
            }),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: Some(
                    hc.network_mode
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "bridge".into()),
                ),
                annotations: None,
            }),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::new()),
            }),
            mounts: Some(c.mounts.clone()),
            ..Default::default()
        }
    }

    pub fn inspect(&self, id: &str, size: bool) -> Result<ContainerInspectResponse> {
        let c = self.get(id)?;
        let dir = self.container_dir(&c.id);
        let p = c.spec.process.clone().unwrap_or_default();
        let status = c
            .state
            .status
            .parse()
            .unwrap_or(ContainerStateStatusEnum::CREATED);
        let mut hc = c.host_config();
        if hc.network_mode.as_deref().unwrap_or("").is_empty() {
            hc.network_mode = Some("bridge".into());
        }
        let zero_time = "0001-01-01T00:00:00Z".to_string();
        let or_zero = |s: &str| {
            if s.is_empty() {
                zero_time.clone()
            } else {
                s.to_string()
            }
        };
        let b = &c.body;
        let image = self.storage.image(&c.image_id).ok();
        let config = ContainerConfig {
            hostname: c.spec.hostname.clone(),
            domainname: Some(b.domainname.clone().unwrap_or_default()),
            user: Some(b.user.clone().unwrap_or_default()),
            attach_stdin: Some(b.attach_stdin.unwrap_or(false)),
            attach_stdout: Some(b.attach_stdout.unwrap_or(false)),
            attach_stderr: Some(b.attach_stderr.unwrap_or(false)),
            exposed_ports: b.exposed_ports.clone(),
            tty: Some(b.tty.unwrap_or(false)),
            open_stdin: Some(b.open_stdin.unwrap_or(false)),
            stdin_once: Some(b.stdin_once.unwrap_or(false)),
            env: Some(p.env.clone()),
            cmd: b
                .cmd
                .clone()
                .or_else(|| image.as_ref().and_then(|i| i.config.config.cmd.clone())),
            healthcheck: b.healthcheck.clone(),
            image: Some(c.image.clone()),
            volumes: b.volumes.clone(),
            working_dir: Some(b.working_dir.clone().unwrap_or_default()),
            entrypoint: b.entrypoint.clone().or_else(|| {
                image
                    .as_ref()
                    .and_then(|i| i.config.config.entrypoint.clone())
            }),
            labels: Some(b.labels.clone().unwrap_or_default()),
            stop_signal: b.stop_signal.clone(),
            stop_timeout: b.stop_timeout,
            ..Default::default()
        };
        let snap = self.config.data_root.join("storage/snapshots").join(&c.id);
        let lower = image
            .as_ref()
            .map(|i| {
                i.diff_ids
                    .iter()
                    .rev()
                    .map(|d| self.storage.layer_path(d).to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let graph = DriverData {
            name: "silo-overlay".into(),
            data: HashMap::from([
                (
                    "MergedDir".to_string(),
                    snap.join("merged").to_string_lossy().into_owned(),
                ),
                (
                    "UpperDir".to_string(),
                    snap.join("upper").to_string_lossy().into_owned(),
                ),
                (
                    "WorkDir".to_string(),
                    snap.join("work").to_string_lossy().into_owned(),
                ),
                ("LowerDir".to_string(), lower),
            ]),
        };
        Ok(ContainerInspectResponse {
            id: Some(c.id.clone()),
            created: Some(c.created.clone()),
            path: spec::user_args(&c.spec).first().cloned(),
            args: Some(spec::user_args(&c.spec).iter().skip(1).cloned().collect()),
            state: Some(ContainerState {
                status: Some(status),
                running: Some(c.state.running),
                paused: Some(c.state.paused),
                restarting: Some(c.state.restarting),
                oom_killed: Some(c.state.oom_killed),
                dead: Some(c.state.dead),
                pid: Some(if c.state.running {
                    c.state.pid as i64
                } else {
                    0
                }),
                exit_code: Some(c.state.exit_code),
                error: Some(c.state.error.clone()),
                started_at: Some(or_zero(&c.state.started_at)),
                finished_at: Some(or_zero(&c.state.finished_at)),
                health: c.state.health.as_ref().map(health::to_api),
            }),
            image: Some(c.image_id.clone()),
            resolv_conf_path: Some(dir.join("resolv.conf").to_string_lossy().into_owned()),
            hostname_path: Some(dir.join("hostname").to_string_lossy().into_owned()),
            hosts_path: Some(dir.join("hosts").to_string_lossy().into_owned()),
            log_path: Some(dir.join(LOG_FILE).to_string_lossy().into_owned()),
            name: Some(format!("/{}", c.name)),
            restart_count: Some(c.restart_count),
            driver: Some("silo-overlay".into()),
            platform: Some("linux".into()),
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: None,
            host_config: Some(hc),
            graph_driver: Some(graph),
            size_rw: size.then(|| self.storage.snapshot_size(&c.id) as i64),
            size_root_fs: size.then(|| {
                (self.storage.snapshot_size(&c.id) + image.as_ref().map(|i| i.size).unwrap_or(0))
                    as i64
            }),
            mounts: Some(c.mounts.clone()),
            config: Some(config),
            network_settings: Some(NetworkSettings {
                sandbox_key: Some(String::new()),
                networks: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    pub fn prune_containers(&self, filters: &Filters) -> Result<ContainerPruneResponse> {
        let until = filters
            .get("until")
            .and_then(|v| v.first())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    EngineError::BadParameter(format!(
                        "invalid filter 'until={v}': want unix seconds"
                    ))
                })
            })
            .transpose()?;
        let label_filters: Filters = filters
            .iter()
            .filter(|(k, _)| k.as_str() == "label")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let candidates: Vec<Container> = self
            .lock()
            .values()
            .filter(|c| {
                !c.state.running
                    && !c.state.restarting
                    && matches!(c.state.status.as_str(), "created" | "exited" | "dead")
            })
            .cloned()
            .collect();
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for c in candidates {
            if until.is_some_and(|u| parse_rfc3339(&c.created).unwrap_or(0) >= u) {
                continue;
            }
            if !container_matches(&c, &label_filters, &|_| None)? {
                continue;
            }
            let size = self.storage.snapshot_size(&c.id) as i64;
            if self.remove(&c.id, false, false).is_ok() {
                reclaimed += size;
                deleted.push(c.id.clone());
            }
        }
        self.events.publish(
            "container",
            "prune",
            "",
            HashMap::from([("reclaimed".to_string(), reclaimed.to_string())]),
        );
        Ok(ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn c(id: &str, name: &str, status: &str, code: i64, labels: &[(&str, &str)]) -> Container {
        Container {
            created: "2026-01-01T00:00:00Z".into(),
            image_id: "sha256:abcdef".into(),
            body: ContainerCreateBody {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            state: State {
                status: status.into(),
                running: status == "running",
                exit_code: code,
                started_at: "2026-01-01T00:00:00Z".into(),
                finished_at: "2026-01-01T00:00:10Z".into(),
                ..Default::default()
            },
            ..Container::for_test(id, name)
        }
    }

    fn f(pairs: &[(&str, &str)]) -> Filters {
        let mut out = Filters::new();
        for (k, v) in pairs {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
        out
    }

    #[test]
    fn ps_filters() {
        let none = |_: &str| None;
        let web = c("aaa111", "web", "running", 0, &[("tier", "front")]);
        let job = c(
            "bbb222",
            "job-1",
            "exited",
            3,
            &[("tier", "back"), ("batch", "")],
        );
        let m = |c: &Container, p: &[(&str, &str)]| container_matches(c, &f(p), &none).unwrap();
        assert!(m(&web, &[("status", "running")]));
        assert!(!m(&job, &[("status", "running")]));
        assert!(m(&job, &[("status", "running"), ("status", "exited")]));
        assert!(m(&web, &[("label", "tier=front")]));
        assert!(!m(&job, &[("label", "tier=front")]));
        assert!(m(&job, &[("label", "batch")]));
        assert!(m(&job, &[("name", "job")]));
        assert!(m(&job, &[("name", "^job-1$")]));
        assert!(!m(&job, &[("name", "^ob")]));
        assert!(m(&web, &[("id", "aaa")]));
        assert!(!m(&web, &[("id", "bbb")]));
        assert!(m(&web, &[("ancestor", "busybox")]));
        assert!(m(&web, &[("ancestor", "busybox:latest")]));
        assert!(m(&web, &[("ancestor", "abcd")]));
        assert!(!m(&web, &[("ancestor", "alpine")]));
        assert!(m(&job, &[("exited", "3")]));
        assert!(!m(&job, &[("exited", "0")]));
        assert!(
            !m(&web, &[("exited", "0")]),
            "running containers have no exit code"
        );
        // Keys are ANDed.
        assert!(!m(&job, &[("exited", "3"), ("label", "tier=front")]));
        assert!(container_matches(&web, &f(&[("status", "bogus")]), &none).is_err());
        assert!(container_matches(&web, &f(&[("colour", "red")]), &none).is_err());
    }

    #[test]
    fn status_lines() {
        let now = parse_rfc3339("2026-01-01T00:00:13Z").unwrap();
        assert_eq!(
            status_line(&c("a", "a", "running", 0, &[]), now),
            "Up 13 seconds"
        );
        assert_eq!(
            status_line(&c("a", "a", "exited", 2, &[]), now),
            "Exited (2) 3 seconds ago"
        );
        assert_eq!(status_line(&c("a", "a", "created", 0, &[]), now), "Created");
    }
}

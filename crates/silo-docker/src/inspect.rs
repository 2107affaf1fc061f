//! Containers in Docker's shapes: `inspect`, `ps` (with Docker's filters
//! and status lines) and the filters `container prune` takes.

use crate::{body_of, health, invalid, Docker, Result};
use bollard_stubs::models::{
    ContainerConfig as DockerConfig, ContainerCreateBody, ContainerInspectResponse,
    ContainerPruneResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHealth, ContainerSummaryHostConfig, ContainerSummaryNetworkSettings,
    ContainerSummaryStateEnum, DriverData, HostConfig, MountPoint, NetworkSettings, PortBinding,
    PortSummary, PortSummaryTypeEnum, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use silo_engine::{Container, MountKind, NetworkMode, RestartPolicy, Status};
use std::collections::HashMap;

/// Filters as the Docker API sends them: `{"status":["running"],"label":["a=b"]}`.
pub type Filters = HashMap<String, Vec<String>>;

/// Docker's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn parse_rfc3339(s: &str) -> Option<i64> {
    silo_units::parse_rfc3339(s).ok().map(|(secs, _)| secs)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// The exit code Docker shows: while not running, the last failed
/// start's (127, 126, 255) if it failed since, else the last exit's.
fn exit_code(c: &Container) -> i64 {
    match c.state.status {
        Status::Running(_) | Status::Paused(_) => 0,
        _ if c.state.error_code != 0 => c.state.error_code,
        Status::Created => 0,
        _ => c.state.last_exit().map_or(0, |e| e.code),
    }
}

/// Fills what the request left out with what dockerd shows for it, so
/// every client finds the fields it reads (the Python SDK reads
/// `HostConfig.LogConfig.Type` after every `containers.run`), whichever
/// client made the container.
fn fill_host_config(hc: &mut HostConfig, c: &Container) {
    use bollard_stubs::models::HostConfigLogConfig;
    fn or<T>(f: &mut Option<T>, v: T) {
        if f.is_none() {
            *f = Some(v);
        }
    }
    let log = hc
        .log_config
        .get_or_insert_with(HostConfigLogConfig::default);
    if log.typ.as_deref().is_none_or(str::is_empty) {
        log.typ = Some("json-file".into());
    }
    or(&mut log.config, HashMap::new());
    // Unset stays "" as Debian's dockerd shows it.
    let rp = hc.restart_policy.get_or_insert_with(DockerRestart::default);
    if rp.name.is_none() {
        rp.name = Some(RestartPolicyNameEnum::EMPTY);
    }
    or(&mut rp.maximum_retry_count, 0);
    or(&mut hc.container_id_file, String::new());
    or(&mut hc.auto_remove, c.config.auto_remove);
    or(&mut hc.volume_driver, String::new());
    or(&mut hc.console_size, vec![0, 0]);
    or(
        &mut hc.cgroupns_mode,
        bollard_stubs::models::HostConfigCgroupnsModeEnum::PRIVATE,
    );
    or(&mut hc.ipc_mode, "private".into());
    or(&mut hc.cgroup, String::new());
    or(&mut hc.oom_score_adj, 0);
    or(&mut hc.pid_mode, String::new());
    or(&mut hc.privileged, false);
    or(&mut hc.publish_all_ports, false);
    or(&mut hc.readonly_rootfs, false);
    or(&mut hc.uts_mode, String::new());
    or(&mut hc.userns_mode, String::new());
    or(&mut hc.shm_size, 64 << 20);
    or(&mut hc.runtime, "silo".into());
    or(
        &mut hc.isolation,
        bollard_stubs::models::HostConfigIsolationEnum::EMPTY,
    );
    or(&mut hc.cpu_shares, 0);
    or(&mut hc.memory, 0);
    or(&mut hc.nano_cpus, 0);
    or(&mut hc.cgroup_parent, String::new());
    or(&mut hc.blkio_weight, 0);
    or(&mut hc.cpu_period, 0);
    or(&mut hc.cpu_quota, 0);
    or(&mut hc.cpu_realtime_period, 0);
    or(&mut hc.cpu_realtime_runtime, 0);
    or(&mut hc.cpuset_cpus, String::new());
    or(&mut hc.cpuset_mems, String::new());
    or(&mut hc.memory_reservation, 0);
    or(&mut hc.memory_swap, 0);
    or(&mut hc.oom_kill_disable, false);
    or(&mut hc.cpu_count, 0);
    or(&mut hc.cpu_percent, 0);
    or(&mut hc.io_maximum_iops, 0);
    or(&mut hc.io_maximum_bandwidth, 0);
    if let Some(l) = c.spec.linux.as_ref() {
        or(&mut hc.masked_paths, l.masked_paths.clone());
        or(&mut hc.readonly_paths, l.readonly_paths.clone());
    }
}

/// Docker's status line: "Up 3 seconds", "Exited (0) 2 seconds ago", "Created".
pub(crate) fn status_line(c: &Container, now: i64) -> String {
    let ago = |t: &str| silo_units::human_duration(parse_rfc3339(t).map_or(0, |t| now - t));
    match &c.state.status {
        Status::Running(r) | Status::Paused(r) => {
            let mut out = format!("Up {}", ago(&r.started_at));
            if matches!(c.state.status, Status::Paused(_)) {
                out.push_str(" (Paused)");
            } else if let Some(h) = &c.health {
                out.push_str(&format!(" ({})", health::describe(h)));
            }
            out
        }
        Status::Restarting(e) => format!("Restarting ({}) {} ago", e.code, ago(&e.finished_at)),
        Status::Exited(e) => format!("Exited ({}) {} ago", e.code, ago(&e.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created | Status::Creating => "Created".into(),
    }
}

fn command_line(c: &Container) -> String {
    c.config
        .process
        .args
        .iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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

/// One `label` filter value (`key` or `key=value`) against labels looked
/// up by `get`. Docker ANDs a filter's label values (every one must
/// match), unlike its other filters' values.
pub(crate) fn label_matches(get: impl Fn(&str) -> Option<String>, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => get(k).is_some_and(|x| x == val),
        None => get(v).is_some(),
    }
}

/// Docker's network mode name for a container.
fn network_name(c: &Container, body: &ContainerCreateBody) -> String {
    if let Some(m) = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .filter(|m| !m.is_empty() && m != "default")
    {
        return m;
    }
    match &c.config.namespaces.network {
        NetworkMode::Default => "bridge".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::Container(t) => format!("container:{t}"),
        NetworkMode::Networks(j) => j.first().map(|j| j.network.clone()).unwrap_or_default(),
    }
}

/// Whether `c` passes Docker's `ps` filters (values ORed, keys ANDed).
pub(crate) fn container_matches(
    c: &Container,
    filters: &Filters,
    image_id_of: &dyn Fn(&str) -> Option<String>,
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
                        return Err(invalid("filters", format!("invalid filter 'status={v}'")));
                    }
                }
                values.iter().any(|v| v == c.state.status.name())
            }
            "label" => values
                .iter()
                .all(|v| label_matches(|k| c.config.labels.get(k).cloned(), v)),
            "name" => values.iter().any(|v| name_matches(&c.name, v)),
            "id" => values.iter().any(|v| c.id.starts_with(v.as_str())),
            "ancestor" => values.iter().any(|v| {
                let image = &c.config.image;
                let v_latest = if v.contains(':') || v.starts_with("sha256:") {
                    v.clone()
                } else {
                    format!("{v}:latest")
                };
                image.name == *v
                    || image.name == v_latest
                    || format!("{}:latest", image.name) == *v
                    || image.id == *v
                    || image
                        .id
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(v.as_str()))
                    || image_id_of(v).is_some_and(|id| id == image.id)
            }),
            "exited" => {
                let mut any = false;
                for v in values {
                    let code: i64 = v
                        .parse()
                        .map_err(|_| invalid("filters", format!("invalid filter 'exited={v}'")))?;
                    any |= matches!(&c.state.status, Status::Exited(e) if e.code == code);
                }
                any
            }
            "volume" => values.iter().any(|v| {
                c.mounts
                    .iter()
                    .any(|m| m.name.as_deref() == Some(v.as_str()) || m.destination == *v)
            }),
            "network" => {
                let mode = network_name(c, &body_of(c));
                values.contains(&mode)
            }
            "health" => {
                for v in values {
                    if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
                        return Err(invalid(
                            "filters",
                            format!("Unrecognised filter value for health: {v}"),
                        ));
                    }
                }
                values
                    .iter()
                    .any(|v| v == health::filter_value(c.health.as_ref()))
            }
            "before" | "since" | "until" | "isolation" | "is-task" | "publish" | "expose" => true,
            other => return Err(invalid("filters", format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The mounts as Docker shows them (HostConfig.Tmpfs entries are not listed).
pub(crate) fn mount_points(c: &Container, body: &ContainerCreateBody) -> Vec<MountPoint> {
    let tmpfs = body.host_config.as_ref().and_then(|h| h.tmpfs.as_ref());
    c.mounts
        .iter()
        .filter(|m| {
            !(m.kind == MountKind::Tmpfs && tmpfs.is_some_and(|t| t.contains_key(&m.destination)))
        })
        .map(|m| match m.kind {
            MountKind::Bind => MountPoint {
                typ: Some("bind".into()),
                source: Some(m.source.clone()),
                destination: Some(m.destination.clone()),
                mode: Some(m.mode.clone()),
                rw: Some(!m.readonly),
                propagation: Some(m.propagation.clone()),
                ..Default::default()
            },
            MountKind::Volume => MountPoint {
                typ: Some("volume".into()),
                name: m.name.clone(),
                source: Some(m.source.clone()),
                destination: Some(m.destination.clone()),
                driver: Some("local".into()),
                mode: Some(if m.readonly { "ro" } else { "z" }.into()),
                rw: Some(!m.readonly),
                propagation: Some(String::new()),
            },
            MountKind::Tmpfs => MountPoint {
                typ: Some("tmpfs".into()),
                destination: Some(m.destination.clone()),
                rw: Some(!m.readonly),
                source: Some(String::new()),
                mode: Some(String::new()),
                ..Default::default()
            },
        })
        .collect()
}

/// A create request that says what a container made by another front end is.
pub(crate) fn synthesize(c: &Container) -> ContainerCreateBody {
    let cfg = &c.config;
    let restart = match cfg.restart {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        RestartPolicy::OnFailure { .. } => RestartPolicyNameEnum::ON_FAILURE,
    };
    let max = match cfg.restart {
        RestartPolicy::OnFailure { max_retries } => i64::from(max_retries),
        _ => 0,
    };
    let network = match &cfg.namespaces.network {
        NetworkMode::Default => "bridge".to_string(),
        NetworkMode::None => "none".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::Container(t) => format!("container:{t}"),
        NetworkMode::Networks(j) => j.first().map(|j| j.network.clone()).unwrap_or_default(),
    };
    ContainerCreateBody {
        hostname: Some(cfg.hostname.clone()),
        domainname: Some(cfg.domainname.clone()),
        user: Some(cfg.process.user.clone()),
        tty: Some(cfg.process.terminal),
        open_stdin: Some(cfg.process.stdin),
        env: Some(cfg.process.env.clone()),
        cmd: Some(cfg.process.args.clone()),
        image: Some(cfg.image.name.clone()),
        working_dir: Some(cfg.process.cwd.clone()),
        labels: Some(cfg.labels.clone().into_iter().collect()),
        stop_signal: cfg.stop_signal.and_then(silo_sys::signal::name),
        stop_timeout: cfg.stop_timeout,
        host_config: Some(HostConfig {
            network_mode: Some(network),
            auto_remove: Some(cfg.auto_remove),
            privileged: Some(cfg.security.privileged),
            readonly_rootfs: Some(cfg.security.readonly_rootfs),
            init: Some(cfg.init),
            restart_policy: Some(DockerRestart {
                name: Some(restart),
                maximum_retry_count: Some(max),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Docker {
    /// `GET /containers/json`.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &Filters,
    ) -> Result<Vec<ContainerSummary>> {
        let mut list = self.engine.containers();
        // Newest first.
        list.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        let image_id = |r: &str| self.engine.image(r).ok().map(|i| i.id);
        // before/since: relative to another container's creation.
        let bound = |key: &str| -> Result<Option<String>> {
            match filters.get(key).and_then(|v| v.first()) {
                Some(v) => Ok(Some(self.engine.container(v)?.created)),
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
                || c.state.status.is_running()
                || limited.is_some()
                || filters.contains_key("status")
                || filters.contains_key("exited");
            if !show
                || before.as_ref().is_some_and(|b| c.created >= *b)
                || since.as_ref().is_some_and(|s| c.created <= *s)
                || !container_matches(&c, filters, &image_id)?
            {
                continue;
            }
            out.push(self.summary(&c, size, now));
            if limited.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn summary(&self, c: &Container, size: bool, now: i64) -> ContainerSummary {
        let body = body_of(c);
        let storage = self.engine.storage();
        ContainerSummary {
            id: Some(c.id.clone()),
            names: Some(vec![format!("/{}", c.name)]),
            image: Some(c.config.image.name.clone()),
            image_id: Some(c.config.image.id.clone()),
            command: Some(command_line(c)),
            created: parse_rfc3339(&c.created),
            ports: Some(if c.state.status.run().is_some() {
                self.port_summaries(c)
            } else {
                Vec::new()
            }),
            size_rw: size.then(|| storage.snapshot_size(&c.id) as i64),
            size_root_fs: size.then(|| {
                let image = storage.image(&c.config.image.id).map_or(0, |i| i.size);
                (storage.snapshot_size(&c.id) + image) as i64
            }),
            labels: Some(c.config.labels.clone().into_iter().collect()),
            state: Some(
                c.state
                    .status
                    .name()
                    .parse()
                    .unwrap_or(ContainerSummaryStateEnum::CREATED),
            ),
            status: Some(status_line(c, now)),
            health: Some(ContainerSummaryHealth {
                status: health::filter_value(c.health.as_ref()).parse().ok(),
                failing_streak: Some(c.health.as_ref().map_or(0, |h| i64::from(h.failing_streak))),
            }),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: Some(network_name(c, &body)),
                annotations: None,
            }),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(self.endpoint_settings(c)),
            }),
            mounts: Some(mount_points(c, &body)),
            ..Default::default()
        }
    }

    /// `GET /containers/{id}/json` as sent: [`Docker::inspect`] plus the
    /// top-level `NetworkSettings` fields that API 1.45 still carries and
    /// bollard-stubs (made for newer APIs) no longer has (`MacAddress`,
    /// `IPAddress`, `Gateway`, ...), from the default network's endpoint.
    pub fn inspect_document(&self, id: &str, size: bool) -> Result<serde_json::Value> {
        let doc = self.inspect(id, size)?;
        let mut v = serde_json::to_value(&doc)
            .map_err(|e| silo_engine::Error::internal("encoding the inspect document", e))?;
        // Keys dockerd writes as null (or 0) when unset, which
        // bollard-stubs leaves out.
        let null = serde_json::Value::Null;
        if let Some(top) = v.as_object_mut() {
            top.entry("ExecIDs").or_insert(null.clone());
        }
        if let Some(cfg) = v.get_mut("Config").and_then(|c| c.as_object_mut()) {
            for k in ["Entrypoint", "OnBuild", "Volumes"] {
                cfg.entry(k).or_insert(null.clone());
            }
        }
        if let Some(hc) = v.get_mut("HostConfig").and_then(|h| h.as_object_mut()) {
            for k in [
                "Binds",
                "BlkioWeightDevice",
                "BlkioDeviceReadBps",
                "BlkioDeviceReadIOps",
                "BlkioDeviceWriteBps",
                "BlkioDeviceWriteIOps",
                "CapAdd",
                "CapDrop",
                "DeviceCgroupRules",
                "DeviceRequests",
                "Devices",
                "Dns",
                "DnsOptions",
                "DnsSearch",
                "ExtraHosts",
                "GroupAdd",
                "Links",
                "MemorySwappiness",
                "PidsLimit",
                "PortBindings",
                "SecurityOpt",
                "Ulimits",
                "VolumesFrom",
            ] {
                hc.entry(k).or_insert(null.clone());
            }
            for k in ["KernelMemory", "KernelMemoryTCP"] {
                hc.entry(k).or_insert(serde_json::json!(0));
            }
        }
        // dockerd fills the top-level fields from the default network.
        let default_ep = v
            .pointer(&format!(
                "/NetworkSettings/Networks/{}",
                silo_network::service::DEFAULT_NETWORK
            ))
            .cloned();
        if let (Some(ep), Some(ns)) = (
            default_ep,
            v.get_mut("NetworkSettings").and_then(|n| n.as_object_mut()),
        ) {
            for (top, key) in [
                ("EndpointID", "EndpointID"),
                ("Gateway", "Gateway"),
                ("IPAddress", "IPAddress"),
                ("IPPrefixLen", "IPPrefixLen"),
                ("MacAddress", "MacAddress"),
            ] {
                if let Some(val) = ep.get(key).filter(|x| !x.is_null()) {
                    ns.insert(top.to_string(), val.clone());
                }
            }
        }
        if let Some(ns) = v.get_mut("NetworkSettings").and_then(|n| n.as_object_mut()) {
            for (k, empty) in [
                ("Bridge", serde_json::json!("")),
                ("HairpinMode", serde_json::json!(false)),
                ("LinkLocalIPv6Address", serde_json::json!("")),
                ("LinkLocalIPv6PrefixLen", serde_json::json!(0)),
                ("SecondaryIPAddresses", serde_json::Value::Null),
                ("SecondaryIPv6Addresses", serde_json::Value::Null),
                ("EndpointID", serde_json::json!("")),
                ("Gateway", serde_json::json!("")),
                ("GlobalIPv6Address", serde_json::json!("")),
                ("GlobalIPv6PrefixLen", serde_json::json!(0)),
                ("IPAddress", serde_json::json!("")),
                ("IPPrefixLen", serde_json::json!(0)),
                ("IPv6Gateway", serde_json::json!("")),
                ("MacAddress", serde_json::json!("")),
                ("Ports", serde_json::json!({})),
                ("SandboxID", serde_json::json!("")),
            ] {
                ns.entry(k).or_insert(empty);
            }
        }
        Ok(v)
    }

    /// `GET /containers/{id}/json`.
    /// The container's endpoints as Docker's `NetworkSettings.Networks`:
    /// its user networks, with the address of the current run (the
    /// configured networks without an address while it is stopped).
    pub(crate) fn endpoint_settings(
        &self,
        c: &Container,
    ) -> HashMap<String, bollard_stubs::models::EndpointSettings> {
        self.endpoint_settings_of(c)
    }

    /// The container's exposed ports (its own, the image's and those it
    /// binds), as `port/proto` keys.
    fn exposed(&self, c: &Container, b: &ContainerCreateBody) -> Vec<String> {
        let mut keys: Vec<String> = b.exposed_ports.clone().unwrap_or_default();
        if let Ok(i) = self.engine.storage().image(&c.config.image.id) {
            keys.extend(
                i.config
                    .config
                    .exposed_ports
                    .iter()
                    .flatten()
                    .map(|(k, _)| k.clone()),
            );
        }
        keys.extend(
            b.host_config
                .iter()
                .flat_map(|h| h.port_bindings.iter().flatten().map(|(k, _)| k.clone())),
        );
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| {
                if k.contains('/') {
                    k
                } else {
                    format!("{k}/tcp")
                }
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The ports of the current run, published or only exposed.
    pub(crate) fn port_summaries(&self, c: &Container) -> Vec<PortSummary> {
        let b = body_of(c);
        let published: Vec<silo_network::ports::PortMapping> = self
            .engine
            .endpoints_of(&c.id)
            .into_iter()
            .flat_map(|(_, ep)| ep.ports)
            .collect();
        let ty = |p: &str| match p {
            "udp" => PortSummaryTypeEnum::UDP,
            "sctp" => PortSummaryTypeEnum::SCTP,
            _ => PortSummaryTypeEnum::TCP,
        };
        let mut out: Vec<PortSummary> = published
            .iter()
            .map(|m| PortSummary {
                ip: Some(m.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string())),
                private_port: m.container_port,
                public_port: Some(m.host_port),
                typ: Some(ty(m.protocol.as_str())),
            })
            .collect();
        for k in self.exposed(c, &b) {
            let (port, proto) = k.split_once('/').unwrap_or((&k, "tcp"));
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if !out
                .iter()
                .any(|p| p.private_port == port && p.typ == Some(ty(proto)))
            {
                out.push(PortSummary {
                    ip: None,
                    private_port: port,
                    public_port: None,
                    typ: Some(ty(proto)),
                });
            }
        }
        out
    }

    /// `NetworkSettings.Ports`: while running, each exposed port with its
    /// host bindings (null when only exposed); empty while stopped.
    fn port_map(&self, c: &Container) -> HashMap<String, Option<Vec<PortBinding>>> {
        let mut out = HashMap::new();
        if c.state.status.run().is_none() {
            return out;
        }
        for p in self.port_summaries(c) {
            let key = format!(
                "{}/{}",
                p.private_port,
                p.typ.map_or("tcp".to_string(), |t| t.to_string())
            );
            let slot = out.entry(key).or_insert(None);
            if let Some(public) = p.public_port {
                slot.get_or_insert_with(Vec::new).push(PortBinding {
                    host_ip: p.ip.clone(),
                    host_port: Some(public.to_string()),
                });
            }
        }
        out
    }

    fn endpoint_settings_of(
        &self,
        c: &Container,
    ) -> HashMap<String, bollard_stubs::models::EndpointSettings> {
        let mut out = HashMap::new();
        let default_join;
        let joins = match &c.config.namespaces.network {
            NetworkMode::Networks(joins) => joins,
            NetworkMode::Default if c.config.pod.is_none() => {
                default_join = [silo_engine::NetworkJoin::default_network()];
                &default_join[..]
            }
            _ => return out,
        };
        let live = self.engine.endpoints_of(&c.id);
        for j in joins {
            let ep = live.iter().find(|(n, _)| n.name == j.network);
            let s = match ep {
                Some((n, ep)) => bollard_stubs::models::EndpointSettings {
                    // The names the embedded DNS server answers for.
                    dns_names: (n.name != silo_network::service::DEFAULT_NETWORK).then(|| {
                        let mut names = ep.names.clone();
                        names.extend(ep.aliases.iter().cloned());
                        names
                    }),
                    aliases: Some(j.aliases.clone()),
                    network_id: Some(n.id.clone()),
                    endpoint_id: Some(ep.id.clone()),
                    gateway: Some(n.pool.gateway.to_string()),
                    ip_address: Some(ep.ip.to_string()),
                    ip_prefix_len: Some(i64::from(ep.prefix)),
                    global_ipv6_address: Some(ep.ip6.map(|a| a.to_string()).unwrap_or_default()),
                    global_ipv6_prefix_len: Some(
                        n.pool6
                            .as_ref()
                            .filter(|_| ep.ip6.is_some())
                            .map_or(0, |p| i64::from(p.subnet.prefix)),
                    ),
                    ipv6_gateway: Some(
                        n.pool6
                            .as_ref()
                            .map(|p| p.gateway.to_string())
                            .unwrap_or_default(),
                    ),
                    mac_address: Some(ep.mac.clone()),
                    ..Default::default()
                },
                None => bollard_stubs::models::EndpointSettings {
                    aliases: Some(j.aliases.clone()),
                    network_id: self.engine.network(&j.network).ok().map(|n| n.id),
                    ..Default::default()
                },
            };
            out.insert(j.network.clone(), s);
        }
        out
    }

    pub fn inspect(&self, id: &str, size: bool) -> Result<ContainerInspectResponse> {
        let c = self.engine.container(id)?;
        let dir = self.engine.container_dir(&c.id);
        let b = body_of(&c);
        let storage = self.engine.storage();
        let mut hc = b.host_config.clone().unwrap_or_default();
        hc.network_mode = Some(network_name(&c, &b));
        fill_host_config(&mut hc, &c);
        let or_zero =
            |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or(ZERO_TIME).to_string();
        let image = storage.image(&c.config.image.id).ok();
        let env = c
            .spec
            .process
            .as_ref()
            .map(|p| p.env.clone())
            .unwrap_or_else(|| c.config.process.env.clone());
        let config = DockerConfig {
            hostname: Some(c.hostname()),
            domainname: Some(b.domainname.clone().unwrap_or_default()),
            user: Some(b.user.clone().unwrap_or_default()),
            attach_stdin: Some(b.attach_stdin.unwrap_or(false)),
            attach_stdout: Some(b.attach_stdout.unwrap_or(false)),
            attach_stderr: Some(b.attach_stderr.unwrap_or(false)),
            exposed_ports: b.exposed_ports.clone(),
            tty: Some(b.tty.unwrap_or(false)),
            open_stdin: Some(b.open_stdin.unwrap_or(false)),
            stdin_once: Some(b.stdin_once.unwrap_or(false)),
            env: Some(env),
            cmd: b
                .cmd
                .clone()
                .or_else(|| image.as_ref().and_then(|i| i.config.config.cmd.clone())),
            healthcheck: b.healthcheck.clone(),
            image: Some(c.config.image.name.clone()),
            volumes: b.volumes.clone(),
            working_dir: Some(b.working_dir.clone().unwrap_or_default()),
            entrypoint: b.entrypoint.clone().or_else(|| {
                image
                    .as_ref()
                    .and_then(|i| i.config.config.entrypoint.clone())
            }),
            labels: Some(c.config.labels.clone().into_iter().collect()),
            stop_signal: b.stop_signal.clone(),
            stop_timeout: b.stop_timeout,
            ..Default::default()
        };
        let snap = storage.snapshot_paths(&c.id);
        let lower = image
            .as_ref()
            .map(|i| {
                i.diff_ids
                    .iter()
                    .rev()
                    .map(|d| storage.layer_path(d).to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let graph = DriverData {
            name: "silo-overlay".into(),
            data: HashMap::from([
                ("MergedDir".to_string(), path(&snap.merged)),
                ("UpperDir".to_string(), path(&snap.upper)),
                ("WorkDir".to_string(), path(&snap.work)),
                ("LowerDir".to_string(), lower),
            ]),
        };
        let run = c.state.status.run();
        let last = c.state.last_exit();
        let etc = self.engine.etc_dir_of(&c);
        let size_rw = || storage.snapshot_size(&c.id);
        Ok(ContainerInspectResponse {
            id: Some(c.id.clone()),
            created: Some(c.created.clone()),
            path: c.config.process.args.first().cloned(),
            args: Some(c.config.process.args.iter().skip(1).cloned().collect()),
            state: Some(ContainerState {
                status: Some(
                    c.state
                        .status
                        .name()
                        .parse()
                        .unwrap_or(ContainerStateStatusEnum::CREATED),
                ),
                running: Some(run.is_some()),
                paused: Some(matches!(c.state.status, Status::Paused(_))),
                restarting: Some(matches!(c.state.status, Status::Restarting(_))),
                oom_killed: Some(matches!(
                    &c.state.status,
                    Status::Exited(e) | Status::Restarting(e) if e.oom_killed
                )),
                dead: Some(c.state.status == Status::Dead),
                pid: Some(run.map_or(0, |r| i64::from(r.pid))),
                exit_code: Some(exit_code(&c)),
                error: Some(c.state.error.clone()),
                started_at: Some(or_zero(
                    run.map(|r| r.started_at.as_str())
                        .or(last.map(|e| e.started_at.as_str())),
                )),
                finished_at: Some(or_zero(last.map(|e| e.finished_at.as_str()))),
                health: c.health.as_ref().map(health::to_api),
            }),
            image: Some(c.config.image.id.clone()),
            resolv_conf_path: Some(path(&etc.join("resolv.conf"))),
            hostname_path: Some(path(&etc.join("hostname"))),
            hosts_path: Some(path(&etc.join("hosts"))),
            log_path: Some(path(&dir.join("container-json.log"))),
            name: Some(format!("/{}", c.name)),
            restart_count: Some(i64::from(c.restart_count)),
            driver: Some("silo-overlay".into()),
            platform: Some("linux".into()),
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: None,
            host_config: Some(hc),
            graph_driver: Some(graph),
            size_rw: size.then(|| size_rw() as i64),
            size_root_fs: size.then(|| (size_rw() + image.as_ref().map_or(0, |i| i.size)) as i64),
            mounts: Some(mount_points(&c, &b)),
            config: Some(config),
            network_settings: Some(NetworkSettings {
                sandbox_key: Some(String::new()),
                networks: Some(self.endpoint_settings(&c)),
                ports: Some(self.port_map(&c)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// `POST /containers/prune`: filters `until` (unix seconds) and `label`.
    pub fn prune_containers(&self, filters: &Filters) -> Result<ContainerPruneResponse> {
        let until = filters
            .get("until")
            .and_then(|v| v.first())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    invalid(
                        "filters",
                        format!("invalid filter 'until={v}': want unix seconds"),
                    )
                })
            })
            .transpose()?;
        let labels: Filters = filters
            .iter()
            .filter(|(k, _)| k.as_str() == "label")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Label filters never fail to apply.
        let keep = |c: &Container| {
            until.is_some_and(|u| parse_rfc3339(&c.created).unwrap_or(0) >= u)
                || !container_matches(c, &labels, &|_| None).unwrap_or(false)
        };
        let (deleted, reclaimed) = self.engine.prune_containers(&keep);
        Ok(ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_engine::{Exit, Run};

    fn c(id: &str, name: &str, status: Status, labels: &[(&str, &str)]) -> Container {
        let mut c: Container = serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "created": "2026-01-01T00:00:00Z",
            "config": serde_json::to_value(silo_engine::ContainerConfig::default()).unwrap(),
            "state": {"status": "created"},
        }))
        .unwrap();
        c.config.image = silo_engine::ImageRef {
            name: "busybox".into(),
            id: "sha256:abcdef".into(),
        };
        c.config.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.state.status = status;
        c
    }

    fn exited(code: i64) -> Status {
        Status::Exited(Exit {
            code,
            oom_killed: false,
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:10Z".into(),
        })
    }

    fn running() -> Status {
        Status::Running(Run {
            pid: 5,
            monitor_pid: 4,
            started_at: "2026-01-01T00:00:00Z".into(),
        })
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
        let web = c("aaa111", "web", running(), &[("tier", "front")]);
        let job = c(
            "bbb222",
            "job-1",
            exited(3),
            &[("tier", "back"), ("batch", "")],
        );
        let m = |c: &Container, p: &[(&str, &str)]| container_matches(c, &f(p), &none).unwrap();
        assert!(m(&web, &[("status", "running")]));
        assert!(!m(&job, &[("status", "running")]));
        assert!(m(&job, &[("status", "running"), ("status", "exited")]));
        assert!(m(&web, &[("label", "tier=front")]));
        assert!(!m(&job, &[("label", "tier=front")]));
        assert!(m(&job, &[("label", "batch")]));
        // Label values are ANDed (docker-compose's project + service query).
        assert!(m(&job, &[("label", "batch"), ("label", "tier=back")]));
        assert!(!m(&job, &[("label", "batch"), ("label", "tier=front")]));
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
        assert!(m(&web, &[("network", "bridge")]));
        assert!(!m(&job, &[("exited", "3"), ("label", "tier=front")]));
        assert!(container_matches(&web, &f(&[("status", "bogus")]), &none).is_err());
        assert!(container_matches(&web, &f(&[("colour", "red")]), &none).is_err());
    }

    #[test]
    fn status_lines() {
        let now = parse_rfc3339("2026-01-01T00:00:13Z").unwrap();
        assert_eq!(
            status_line(&c("a", "a", running(), &[]), now),
            "Up 13 seconds"
        );
        assert_eq!(
            status_line(&c("a", "a", exited(2), &[]), now),
            "Exited (2) 3 seconds ago"
        );
        assert_eq!(
            status_line(&c("a", "a", Status::Created, &[]), now),
            "Created"
        );
        let later = parse_rfc3339("2026-01-01T01:30:00Z").unwrap();
        assert_eq!(
            status_line(&c("a", "a", running(), &[]), later),
            "Up 2 hours"
        );
    }

    #[test]
    fn a_container_of_another_front_end_reads_as_a_request() {
        let mut x = c("a", "a", Status::Created, &[("k", "v")]);
        x.config.process.args = vec!["sleep".into(), "1".into()];
        x.config.restart = RestartPolicy::OnFailure { max_retries: 3 };
        x.config.stop_signal = Some(libc::SIGINT);
        let b = synthesize(&x);
        assert_eq!(
            b.cmd.as_deref(),
            Some(&["sleep".to_string(), "1".into()][..])
        );
        let rp = b.host_config.unwrap().restart_policy.unwrap();
        assert_eq!(rp.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(rp.maximum_retry_count, Some(3));
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(b.labels.unwrap().get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn mounts_are_shown_the_docker_way() {
        let mut x = c("a", "a", Status::Created, &[]);
        x.mounts = vec![
            silo_engine::MountPoint {
                kind: MountKind::Volume,
                name: Some("data".into()),
                source: "/v/data/_data".into(),
                destination: "/data".into(),
                readonly: false,
                propagation: String::new(),
                mode: String::new(),
            },
            silo_engine::MountPoint {
                kind: MountKind::Tmpfs,
                name: None,
                source: String::new(),
                destination: "/run".into(),
                readonly: false,
                propagation: String::new(),
                mode: String::new(),
            },
        ];
        let mut b = ContainerCreateBody::default();
        let points = mount_points(&x, &b);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].mode.as_deref(), Some("z"));
        assert_eq!(points[0].driver.as_deref(), Some("local"));
        b.host_config = Some(HostConfig {
            tmpfs: Some(HashMap::from([("/run".to_string(), String::new())])),
            ..Default::default()
        });
        assert_eq!(
            mount_points(&x, &b).len(),
            1,
            "HostConfig.Tmpfs is not listed"
        );
    }
}

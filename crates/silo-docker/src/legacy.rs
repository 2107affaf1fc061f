//! Container records written by silod before the engine had a model of its
//! own (store schema 1): a Docker create request, the OCI spec made from
//! it, and a state of strings and booleans. Only this adapter can read the
//! request, so it turns each record into the engine's [`Container`] when
//! the store migrates to schema 2. What the container ran with comes from
//! its stored spec, so nothing is re-derived from an image that may have
//! changed since.

use crate::create::{network_mode_of, restart_policy, security_opts, sharing_of};
use bollard_stubs::models::{ContainerCreateBody, MountPoint as DockerMount};
use serde::Deserialize;
use silo_engine::{
    Container, ContainerConfig, Exit, HealthState, HealthStatus, ImageRef, LegacyRecords,
    MountKind, MountPoint, ProbeResult, ProcessConfig, Run, SecurityConfig, State, Status,
};

/// The old record (only what is read).
#[derive(Deserialize)]
struct OldRecord {
    id: String,
    name: String,
    created: String,
    image: String,
    image_id: String,
    body: ContainerCreateBody,
    spec: Box<serde_json::value::RawValue>,
    #[serde(default)]
    restart_count: i64,
    #[serde(default)]
    mounts: Vec<DockerMount>,
    #[serde(default)]
    anonymous_volumes: Vec<String>,
    #[serde(default)]
    manual_stop: bool,
    #[serde(default)]
    image_user: String,
}

/// The old state: a status string beside booleans.
#[derive(Deserialize, Default)]
#[serde(default)]
struct OldState {
    status: String,
    pid: i32,
    exit_code: i64,
    oom_killed: bool,
    error: String,
    started_at: String,
    finished_at: String,
    monitor_pid: i32,
    health: Option<OldHealth>,
}

#[derive(Deserialize)]
struct OldHealth {
    status: String,
    #[serde(default)]
    failing_streak: i64,
    #[serde(default)]
    log: Vec<OldProbe>,
}

#[derive(Deserialize)]
struct OldProbe {
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    exit_code: i64,
    #[serde(default)]
    output: String,
}

/// Reads schema-1 container rows for the engine's migration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Legacy;

fn health(h: OldHealth) -> HealthState {
    HealthState {
        status: match h.status.as_str() {
            "healthy" => HealthStatus::Healthy,
            "unhealthy" => HealthStatus::Unhealthy,
            _ => HealthStatus::Starting,
        },
        failing_streak: u32::try_from(h.failing_streak).unwrap_or(0),
        log: h
            .log
            .into_iter()
            .map(|p| ProbeResult {
                start: p.start,
                end: p.end,
                exit_code: p.exit_code,
                output: p.output,
            })
            .collect(),
    }
}

fn status(s: &OldState) -> Result<(Status, Option<Exit>), String> {
    let exit = || Exit {
        code: s.exit_code,
        oom_killed: s.oom_killed,
        started_at: s.started_at.clone(),
        finished_at: s.finished_at.clone(),
    };
    let run = || Run {
        pid: s.pid,
        monitor_pid: s.monitor_pid,
        started_at: s.started_at.clone(),
    };
    // A run that ended before the current one started shows its end only.
    let earlier = (!s.finished_at.is_empty()).then(|| Exit {
        started_at: String::new(),
        ..exit()
    });
    Ok(match s.status.as_str() {
        "creating" => (Status::Creating, None),
        "created" => (Status::Created, earlier),
        "running" => (Status::Running(run()), earlier),
        "paused" => (Status::Paused(run()), earlier),
        "restarting" => (Status::Restarting(exit()), None),
        "exited" => (Status::Exited(exit()), None),
        "removing" => (Status::Removing, earlier.map(|_| exit())),
        "dead" => (Status::Dead, earlier.map(|_| exit())),
        other => return Err(format!("unknown status {other:?}")),
    })
}

fn mount(m: &DockerMount) -> Option<MountPoint> {
    let kind = match m.typ.as_deref()? {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        _ => return None,
    };
    Some(MountPoint {
        kind,
        name: m.name.clone(),
        source: m.source.clone().unwrap_or_default(),
        destination: m.destination.clone().unwrap_or_default(),
        readonly: m.rw == Some(false),
        propagation: m.propagation.clone().unwrap_or_default(),
        mode: if kind == MountKind::Bind {
            m.mode.clone().unwrap_or_default()
        } else {
            String::new()
        },
    })
}

/// The command without the `--init` prefix the old spec carried.
fn user_args(spec: &silo_oci::Spec) -> Vec<String> {
    let args = spec.process.as_ref().map_or(&[][..], |p| &p.args[..]);
    let init = spec
        .mounts
        .iter()
        .any(|m| m.destination == silo_engine::INIT_TARGET);
    match args {
        [first, dashes, rest @ ..]
            if init && first == silo_engine::INIT_TARGET && dashes == "--" =>
        {
            rest.to_vec()
        }
        _ => args.to_vec(),
    }
}

impl LegacyRecords for Legacy {
    fn container(&self, record: &str, state: &str) -> Result<Container, String> {
        let old: OldRecord = serde_json::from_str(record).map_err(|e| format!("record: {e}"))?;
        let st: OldState = serde_json::from_str(state).map_err(|e| format!("state: {e}"))?;
        let spec: silo_oci::Spec =
            serde_json::from_str(old.spec.get()).map_err(|e| format!("spec: {e}"))?;
        let body = &old.body;
        let hc = body.host_config.clone().unwrap_or_default();
        let p = spec.process.clone().unwrap_or_default();
        let linux = spec.linux.clone().unwrap_or_default();
        let caps = p
            .capabilities
            .as_ref()
            .and_then(|c| c.bounding.clone())
            .unwrap_or_default();
        let sec = security_opts(&hc, &caps).map_err(|e| e.to_string())?;
        let init = spec
            .mounts
            .iter()
            .any(|m| m.destination == silo_engine::INIT_TARGET);
        let shm = spec
            .mounts
            .iter()
            .find(|m| m.destination == "/dev/shm")
            .and_then(|m| m.options.iter().find_map(|o| o.strip_prefix("size=")))
            .and_then(|s| s.strip_suffix('k'))
            .and_then(|k| k.parse::<u64>().ok())
            .map_or(0, |k| k * 1024);
        let config = ContainerConfig {
            image: ImageRef {
                name: old.image.clone(),
                id: old.image_id.clone(),
            },
            process: ProcessConfig {
                args: user_args(&spec),
                env: p.env.clone(),
                cwd: p.cwd.clone(),
                user: body
                    .user
                    .clone()
                    .filter(|u| !u.is_empty())
                    .unwrap_or(old.image_user.clone()),
                // Old silod accepted GroupAdd and ignored it; kept so.
                groups: vec![],
                terminal: p.terminal,
                stdin: body.open_stdin == Some(true),
                capabilities: caps,
                no_new_privileges: p.no_new_privileges,
                rlimits: p.rlimits.clone(),
                oom_score_adj: p.oom_score_adj,
            },
            hostname: spec.hostname.clone().unwrap_or_default(),
            domainname: body.domainname.clone().unwrap_or_default(),
            mounts: crate::create::mounts(body).map_err(|e| e.to_string())?,
            // Old silod refused Devices: none to carry over.
            devices: vec![],
            shm_size: shm,
            resources: linux.resources.clone().unwrap_or_default(),
            cgroup_parent: None,
            security: SecurityConfig {
                privileged: hc.privileged == Some(true),
                seccomp: sec.seccomp,
                readonly_rootfs: spec.root.as_ref().is_some_and(|r| r.readonly),
                sysctls: linux.sysctl.clone(),
                masked_paths: None,
                readonly_paths: None,
            },
            namespaces: silo_engine::NamespaceConfig {
                network: network_mode_of(&hc).map_err(|e| e.to_string())?,
                ipc: sharing_of(&hc.ipc_mode),
                pid: sharing_of(&hc.pid_mode),
                uts: sharing_of(&hc.uts_mode),
            },
            pod: None,
            init,
            auto_remove: hc.auto_remove == Some(true),
            restart: restart_policy(&hc).map_err(|e| e.to_string())?,
            health: crate::health::policy(body),
            stop_signal: body
                .stop_signal
                .as_deref()
                .filter(|s| !s.is_empty())
                .and_then(|s| silo_sys::signal::parse(s).ok()),
            stop_timeout: body.stop_timeout,
            labels: body
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            storage: Default::default(),
            log: Default::default(),
            links: Vec::new(),
            ports: Vec::new(),
            dns: Default::default(),
            extra_hosts: Vec::new(),
        };
        let (status, previous) = status(&st)?;
        Ok(Container {
            id: old.id,
            name: old.name,
            created: old.created,
            config,
            state: State {
                status,
                previous,
                error: st.error.clone(),
                error_code: 0,
            },
            restart_count: u32::try_from(old.restart_count).unwrap_or(0),
            manual_stop: old.manual_stop,
            health: st.health.map(health),
            mounts: old.mounts.iter().filter_map(mount).collect(),
            anonymous_volumes: old.anonymous_volumes,
            spec: serde_json::from_str(old.spec.get()).map_err(|e| format!("spec: {e}"))?,
            extensions: crate::extension(body).map_err(|e| e.to_string())?,
            exit_seq: 0,
        })
    }
}

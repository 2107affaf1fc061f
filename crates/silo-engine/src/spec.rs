//! Docker's container configuration (Config + HostConfig + the image's
//! config) turned into an OCI `silo_oci::Spec`, with Docker's defaults and
//! Docker's answers (400 naming the field) for what silo does not support.

use crate::{EngineError, Result};
use bollard_stubs::models::{ContainerCreateBody, HostConfig, MountPoint, MountType};
use silo_oci::{
    mount, Capabilities, Cpu, DeviceCgroup, Linux, Memory, Mount, Namespace, NamespaceType, Pids,
    Process, Resources, Rlimit, Root, Seccomp, Spec, User,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the image contributes to a container's process.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
}

/// A volume the spec needs: `None` asks for a new anonymous volume.
/// The callback returns the volume's name and its data directory.
pub(crate) type VolumeFn<'a> = dyn FnMut(Option<&str>) -> Result<(String, PathBuf)> + 'a;

/// The generated spec plus what inspect reports about it.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub spec: Spec,
    pub mounts: Vec<MountPoint>,
    pub anonymous_volumes: Vec<String>,
}

/// Every capability this kernel knows (for "ALL" and privileged).
pub(crate) const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::BadParameter(msg.into())
}

/// The warning every container on the default network gets.
pub(crate) const NETWORK_WARNING: &str = "silo has no network drivers yet: the default network mode gives the container its own network namespace with loopback only (use --network host or --network none to choose explicitly)";

/// Rejects what silo cannot honour (400 naming the field) and returns
/// Docker-style warnings. Runs before anything is created.
pub(crate) fn validate(body: &ContainerCreateBody) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let hc = body.host_config.clone().unwrap_or_default();
    match hc.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "bridge" => warnings.push(NETWORK_WARNING.to_string()),
        "none" | "host" => {}
        other => {
            return Err(bad(format!(
                "HostConfig.NetworkMode {other:?} is not supported by silo yet (use default, bridge, none or host)"
            )))
        }
    }
    for port in body.exposed_ports.iter().flatten() {
        check_port(port, "Config.ExposedPorts")?;
    }
    if let Some(pb) = &hc.port_bindings {
        for (port, bindings) in pb {
            check_port(port, "HostConfig.PortBindings")?;
            if bindings.as_ref().is_some_and(|b| !b.is_empty()) {
                return Err(bad(format!(
                    "HostConfig.PortBindings ({port}): publishing ports is not supported by silo yet"
                )));
            }
        }
    }
    let mode = |v: &Option<String>, allowed: &[&str]| {
        v.as_deref()
            .is_some_and(|v| !v.is_empty() && !allowed.contains(&v))
    };
    let unsupported: [(&str, bool); 14] = [
        ("HostConfig.Devices", given(&hc.devices)),
        ("HostConfig.DeviceRequests", given(&hc.device_requests)),
        (
            "HostConfig.DeviceCgroupRules",
            given(&hc.device_cgroup_rules),
        ),
        ("HostConfig.VolumesFrom", given(&hc.volumes_from)),
        ("HostConfig.Links", given(&hc.links)),
        (
            "HostConfig.PublishAllPorts",
            hc.publish_all_ports == Some(true),
        ),
        ("HostConfig.StorageOpt", given(&hc.storage_opt)),
        ("HostConfig.CgroupParent", given(&hc.cgroup_parent)),
        ("HostConfig.PidMode", mode(&hc.pid_mode, &["private"])),
        (
            "HostConfig.IpcMode",
            mode(&hc.ipc_mode, &["private", "shareable"]),
        ),
        ("HostConfig.UTSMode", given(&hc.uts_mode)),
        ("HostConfig.UsernsMode", given(&hc.userns_mode)),
        (
            "HostConfig.BlkioDeviceReadBps",
            given(&hc.blkio_device_read_bps),
        ),
        (
            "HostConfig.BlkioDeviceWriteBps",
            given(&hc.blkio_device_write_bps),
        ),
    ];
    for (field, set) in unsupported {
        if set {
            return Err(bad(format!("{field} is not supported by silo yet")));
        }
    }
    if let Some(rt) = hc.runtime.as_deref() {
        if !matches!(rt, "" | "silo" | "runc") {
            return Err(bad(format!(
                "HostConfig.Runtime: unknown runtime {rt:?} (only \"silo\")"
            )));
        }
    }
    if let Some(lc) = &hc.log_config {
        if let Some(t) = lc.typ.as_deref() {
            if !matches!(t, "" | "json-file") {
                return Err(bad(format!(
                    "HostConfig.LogConfig.Type {t:?} is not supported by silo (only json-file)"
                )));
            }
        }
    }
    if let Some(rp) = &hc.restart_policy {
        use bollard_stubs::models::RestartPolicyNameEnum as R;
        let name = rp.name.unwrap_or(R::EMPTY);
        if hc.auto_remove == Some(true) && !matches!(name, R::EMPTY | R::NO) {
            return Err(bad(
                "conflicting options: cannot specify both --restart and --rm (HostConfig.RestartPolicy)",
            ));
        }
        if rp.maximum_retry_count.unwrap_or(0) != 0 && name != R::ON_FAILURE {
            return Err(bad(
                "HostConfig.RestartPolicy.MaximumRetryCount: only allowed with on-failure",
            ));
        }
    }
    crate::health::validate(body.healthcheck.as_ref())?;
    if let Some(m) = hc.memory {
        if m != 0 && m < 6 * 1024 * 1024 {
            return Err(bad(
                "HostConfig.Memory: minimum memory limit allowed is 6MB",
            ));
        }
    }
    if hc.nano_cpus.unwrap_or(0) != 0
        && (hc.cpu_quota.unwrap_or(0) != 0 || hc.cpu_period.unwrap_or(0) != 0)
    {
        return Err(bad("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set (HostConfig.NanoCpus)"));
    }
    caps(&hc)?;
    security_with(&hc, &[], false)?;
    Ok(warnings)
}

/// A request field that is present and not empty.
fn given<T: Emptiable>(v: &Option<T>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

trait Emptiable {
    fn is_empty(&self) -> bool;
}

impl<T> Emptiable for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl Emptiable for String {
    fn is_empty(&self) -> bool {
        String::is_empty(self)
    }
}

impl<K, V> Emptiable for HashMap<K, V> {
    fn is_empty(&self) -> bool {
        HashMap::is_empty(self)
    }
}

fn check_port(port: &str, field: &str) -> Result<()> {
    let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let ok_num = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let nums_ok = match num.split_once('-') {
        Some((a, b)) => ok_num(a) && ok_num(b),
        None => ok_num(num),
    };
    if !nums_ok || !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad(format!("{field}: invalid port {port:?}: the port must be a number from 1 to 65535 with an optional /tcp, /udp or /sctp")));
    }
    Ok(())
}

fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set: Docker's default + CapAdd − CapDrop ("ALL" allowed
/// on either side; the `CAP_` prefix is optional); privileged gets all.
pub(crate) fn caps(hc: &HostConfig) -> Result<Vec<String>> {
    if hc.privileged == Some(true) {
        return Ok(ALL_CAPS.iter().map(|s| s.to_string()).collect());
    }
    let add: Vec<String> = hc
        .cap_add
        .iter()
        .flatten()
        .map(|c| normalize_cap(c))
        .collect();
    let drop: Vec<String> = hc
        .cap_drop
        .iter()
        .flatten()
        .map(|c| normalize_cap(c))
        .collect();
    for (field, list) in [("HostConfig.CapAdd", &add), ("HostConfig.CapDrop", &drop)] {
        for c in list {
            if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
                return Err(bad(format!("{field}: unknown capability: {c:?}")));
            }
        }
    }
    let mut set: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        silo_oci::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        set = ALL_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c) || add.contains(c))
            .collect();
    } else {
        for c in add {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    Ok(set)
}

/// What SecurityOpt asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Security {
    /// None = unconfined.
    pub seccomp: Option<Seccomp>,
    pub no_new_privileges: bool,
}

/// Parses SecurityOpt and resolves the seccomp profile for `caps`.
pub(crate) fn security(hc: &HostConfig, caps: &[String]) -> Result<Security> {
    security_with(hc, caps, true)
}

/// Docker's default profile for `caps`, resolved once per capability set.
fn default_profile(caps: &[String]) -> Seccomp {
    static CACHE: std::sync::Mutex<Vec<(Vec<String>, Seccomp)>> = std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = cache.iter().find(|(k, _)| k.as_slice() == caps) {
        return p.clone();
    }
    let p = silo_seccomp::docker_default(caps);
    if cache.len() >= 16 {
        cache.remove(0);
    }
    cache.push((caps.to_vec(), p.clone()));
    p
}

/// As [`security`]; without `resolve_default` the default profile is
/// left out (None) — for validation and the stored spec, where only the
/// options matter.
pub(crate) fn security_with(
    hc: &HostConfig,
    caps: &[String],
    resolve_default: bool,
) -> Result<Security> {
    let privileged = hc.privileged == Some(true);
    let mut profile: Option<Option<Seccomp>> = None;
    let mut nnp = false;
    for opt in hc.security_opt.iter().flatten() {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, v),
            None => (opt.as_str(), ""),
        };
        match key {
            "seccomp" => {
                if value == "unconfined" {
                    profile = Some(None);
                } else if value.trim_start().starts_with('{') {
                    let p = silo_seccomp::resolve_docker_profile(value.as_bytes(), caps).map_err(
                        |e| bad(format!("HostConfig.SecurityOpt: seccomp profile: {e}")),
                    )?;
                    profile = Some(Some(p));
                } else if value == "builtin" || value == "default" {
                    profile = None;
                } else {
                    return Err(bad(format!(
                        "HostConfig.SecurityOpt: seccomp={value:?}: expected \"unconfined\" or the profile's JSON content"
                    )));
                }
            }
            "no-new-privileges" => {
                nnp = match value {
                    "" | "true" => true,
                    "false" => false,
                    v => {
                        return Err(bad(format!(
                            "HostConfig.SecurityOpt: invalid no-new-privileges value {v:?}"
                        )))
                    }
                }
            }
            // No LSMs on this host: accepted and ignored, like dockerd without AppArmor/SELinux.
            "apparmor" | "label" => {}
            _ => {
                return Err(bad(format!(
                    "HostConfig.SecurityOpt: invalid --security-opt: {opt:?}"
                )))
            }
        }
    }
    let seccomp = match profile {
        Some(p) => p,
        None if privileged || !resolve_default => None,
        None => Some(default_profile(caps)),
    };
    Ok(Security {
        seccomp,
        no_new_privileges: nnp,
    })
}

/// Where `--init` puts the init binary inside the container, as Docker does.
pub(crate) const INIT_TARGET: &str = "/sbin/docker-init";

/// `HostConfig.Init`: bind-mounts `init` read-only at [`INIT_TARGET`] and
/// makes it PID 1, running the container's command as its child
/// (`/sbin/docker-init -- cmd...`), so zombies are reaped and signals are
/// forwarded. `init` must be static: it runs inside the image's rootfs.
pub(crate) fn add_init(spec: &mut Spec, init: &Path) {
    if let Some(p) = spec.process.as_mut() {
        let mut args = vec![INIT_TARGET.to_string(), "--".to_string()];
        args.append(&mut p.args);
        p.args = args;
    }
    spec.mounts.push(mount(
        INIT_TARGET,
        "bind",
        &init.to_string_lossy(),
        &["bind", "ro", "nosuid", "nodev"],
    ));
}

/// The container's own command: the process args without the `--init` prefix.
pub(crate) fn user_args(spec: &Spec) -> &[String] {
    let args = spec.process.as_ref().map_or(&[][..], |p| &p.args[..]);
    let init = spec
        .mounts
        .iter()
        .any(|m| m.destination == INIT_TARGET && m.typ.as_deref() == Some("bind"));
    match args {
        [first, dashes, rest @ ..] if init && first == INIT_TARGET && dashes == "--" => rest,
        _ => args,
    }
}

/// Merges `KEY=value` lists; later entries replace earlier ones by key.
pub(crate) fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(over) {
        let key = e.split('=').next().unwrap_or("");
        if let Some(slot) = out
            .iter_mut()
            .find(|x| x.split('=').next().unwrap_or("") == key)
        {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

fn mode_for(rw: bool) -> &'static str {
    if rw {
        "rw"
    } else {
        "ro"
    }
}

/// Adds a user mount, replacing any default mount at the same destination.
fn add_mount(mounts: &mut Vec<Mount>, m: Mount) {
    mounts.retain(|x| x.destination != m.destination);
    mounts.push(m);
}

/// Generates the spec. `rootfs` is the snapshot's merged dir; `dir` the
/// container's directory holding hostname, hosts and resolv.conf;
/// `cgroupns` whether the host is pure cgroup v2 (then the container gets
/// a cgroup namespace). Named volumes in Binds/Mounts are created on
/// demand through `volume`; unlike Docker, the image's content at the
/// mount point is NOT copied into a new volume.
pub(crate) fn build(
    id: &str,
    body: &ContainerCreateBody,
    image: &ImageDefaults,
    rootfs: &Path,
    dir: &Path,
    cgroupns: bool,
    volume: &mut VolumeFn<'_>,
) -> Result<Built> {
    let hc = body.host_config.clone().unwrap_or_default();
    let privileged = hc.privileged == Some(true);

    // Process arguments: Entrypoint + Cmd, request over image. A request
    // Entrypoint drops the image's Cmd, as in Docker.
    let req_cmd = body.cmd.clone().filter(|c| !c.is_empty());
    let (entrypoint, cmd) = match body.entrypoint.clone() {
        Some(ep) if !(ep.len() == 1 && ep[0].is_empty()) => (ep, req_cmd.unwrap_or_default()),
        Some(_) => (Vec::new(), req_cmd.unwrap_or_default()),
        None => (
            image.entrypoint.clone(),
            req_cmd.unwrap_or_else(|| image.cmd.clone()),
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(bad("no command specified (Config.Cmd and Config.Entrypoint are empty, and the image has none)"));
    }

    let hostname = body
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| id.chars().take(12).collect());
    let tty = body.tty == Some(true);
    let mut env = merge_env(
        &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()],
        &image.env,
    );
    env = merge_env(&env, &[format!("HOSTNAME={hostname}")]);
    if tty {
        env = merge_env(&env, &["TERM=xterm".to_string()]);
    }
    env = merge_env(&env, body.env.as_deref().unwrap_or(&[]));

    let caps = caps(&hc)?;
    let sec = security_with(&hc, &caps, false)?;
    let cwd = body
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(bad(format!(
            "Config.WorkingDir: the working directory {cwd:?} is invalid, it needs to be an absolute path"
        )));
    }

    let mut rlimits = Vec::new();
    for u in hc.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(format!(
                "HostConfig.Ulimits: invalid ulimit name {name:?}"
            )));
        }
        let soft = u.soft.unwrap_or(0);
        let hard = u.hard.unwrap_or(soft);
        if soft < -1 || hard < -1 || (hard >= 0 && soft > hard) {
            return Err(bad(format!(
                "HostConfig.Ulimits: {name}: soft limit {soft} must not exceed hard limit {hard}"
            )));
        }
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        rlimits.push(Rlimit {
            typ: format!("RLIMIT_{}", name.to_ascii_uppercase()),
            soft: v(soft),
            hard: v(hard),
        });
    }
    let oom_score_adj = match hc.oom_score_adj {
        Some(v) if !(-1000..=1000).contains(&v) => {
            return Err(bad(format!(
                "HostConfig.OomScoreAdj: {v} is out of range [-1000, 1000]"
            )))
        }
        Some(0) | None => None,
        Some(v) => Some(v as i32),
    };

    let process = Process {
        terminal: tty,
        user: User::default(),
        args: argv.clone(),
        env,
        cwd,
        capabilities: Some(Capabilities {
            bounding: Some(caps.clone()),
            effective: Some(caps.clone()),
            permitted: Some(caps.clone()),
            inheritable: None,
            ambient: None,
        }),
        rlimits,
        no_new_privileges: sec.no_new_privileges,
        oom_score_adj,
        ..Default::default()
    };

    // Default mounts, then /etc files, then the user's.
    let shm = match hc.shm_size {
        Some(s) if s < 0 => return Err(bad("HostConfig.ShmSize: must not be negative")),
        Some(s) if s > 0 => s,
        _ => 64 * 1024 * 1024,
    };
    let mut mounts = silo_oci::system_mounts((shm + 1023) / 1024, privileged);
    for f in ["hostname", "hosts", "resolv.conf"] {
        let src = dir.join(f);
        mounts.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate", "rw"],
        ));
    }

    let mut points: Vec<MountPoint> = Vec::new();
    let mut anonymous = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let claim = |targets: &mut Vec<String>, dst: &str, field: &str| -> Result<()> {
        if !dst.starts_with('/') {
            return Err(bad(format!(
                "{field}: invalid mount destination {dst:?}: it must be an absolute path"
            )));
        }
        if dst == "/" {
            return Err(bad(format!("{field}: invalid mount destination \"/\"")));
        }
        if targets.iter().any(|t| t == dst) {
            return Err(bad(format!("{field}: duplicate mount point: {dst}")));
        }
        targets.push(dst.to_string());
        Ok(())
    };

    for b in hc.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => {
                return Err(bad(format!(
                    "HostConfig.Binds: invalid volume specification: {b:?}"
                )))
            }
        };
        let mut rw = true;
        let mut propagation = "rprivate".to_string();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => rw = false,
                "rw" => rw = true,
                "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                    propagation = o.to_string()
                }
                _ => {
                    return Err(bad(format!(
                        "HostConfig.Binds: invalid mode {o:?} in {b:?}"
                    )))
                }
            }
        }
        claim(&mut targets, dst, "HostConfig.Binds")?;
        if src.starts_with('/') {
            // Docker's -v creates a missing host directory.
            if !Path::new(src).exists() {
                std::fs::create_dir_all(src).map_err(|e| {
                    bad(format!(
                        "HostConfig.Binds: creating the bind source {src}: {e}"
                    ))
                })?;
            }
            add_mount(
                &mut mounts,
                mount(dst, "bind", src, &["rbind", &propagation, mode_for(rw)]),
            );
            points.push(MountPoint {
                typ: Some("bind".into()),
                source: Some(src.into()),
                destination: Some(dst.into()),
                mode: Some(opts.into()),
                rw: Some(rw),
                propagation: Some(propagation),
                ..Default::default()
            });
        } else {
            if src.is_empty() {
                return Err(bad(format!("HostConfig.Binds: empty source in {b:?}")));
            }
            let (name, data) = volume(Some(src))?;
            add_mount(
                &mut mounts,
                mount(
                    dst,
                    "bind",
                    &data.to_string_lossy(),
                    &["rbind", "rprivate", mode_for(rw)],
                ),
            );
            points.push(volume_point(&name, &data, dst, rw));
        }
    }

    for m in hc.mounts.iter().flatten() {
        let dst = m.target.clone().unwrap_or_default();
        claim(&mut targets, &dst, "HostConfig.Mounts.Target")?;
        let rw = m.read_only != Some(true);
        match m.typ {
            Some(MountType::BIND) => {
                let src = m.source.clone().unwrap_or_default();
                if !src.starts_with('/') {
                    return Err(bad(format!(
                        "HostConfig.Mounts.Source: invalid bind source {src:?}: it must be an absolute path"
                    )));
                }
                if !Path::new(&src).exists() {
                    return Err(bad(format!(
                        "HostConfig.Mounts.Source: invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                add_mount(
                    &mut mounts,
                    mount(&dst, "bind", &src, &["rbind", "rprivate", mode_for(rw)]),
                );
                points.push(MountPoint {
                    typ: Some("bind".into()),
                    source: Some(src),
                    destination: Some(dst.clone()),
                    rw: Some(rw),
                    propagation: Some("rprivate".into()),
                    mode: Some(String::new()),
                    ..Default::default()
                });
            }
            Some(MountType::VOLUME) => {
                let src = m.source.clone().filter(|s| !s.is_empty());
                let (name, data) = volume(src.as_deref())?;
                if src.is_none() {
                    anonymous.push(name.clone());
                }
                add_mount(
                    &mut mounts,
                    mount(
                        &dst,
                        "bind",
                        &data.to_string_lossy(),
                        &["rbind", "rprivate", mode_for(rw)],
                    ),
                );
                points.push(volume_point(&name, &data, &dst, rw));
            }
            Some(MountType::TMPFS) => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ];
                if let Some(t) = &m.tmpfs_options {
                    if let Some(sz) = t.size_bytes.filter(|s| *s > 0) {
                        opts.push(format!("size={sz}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m > 0) {
                        opts.push(format!("mode={mode:o}"));
                    }
                }
                if !rw {
                    opts.push("ro".into());
                }
                let refs: Vec<&str> = opts.iter().map(|s| s.as_str()).collect();
                add_mount(&mut mounts, mount(&dst, "tmpfs", "tmpfs", &refs));
                points.push(MountPoint {
                    typ: Some("tmpfs".into()),
                    destination: Some(dst.clone()),
                    rw: Some(rw),
                    source: Some(String::new()),
                    mode: Some(String::new()),
                    ..Default::default()
                });
            }
            other => {
                return Err(bad(format!(
                    "HostConfig.Mounts.Type: mount type {:?} is not supported by silo",
                    other.map(|t| t.to_string()).unwrap_or_default()
                )))
            }
        }
    }

    let mut tmpfs: Vec<(&String, &String)> = hc.tmpfs.iter().flatten().collect();
    tmpfs.sort();
    for (dst, opts) in tmpfs {
        claim(&mut targets, dst, "HostConfig.Tmpfs")?;
        let mut o = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "noexec".to_string(),
        ];
        for x in opts.split(',').filter(|x| !x.is_empty()) {
            if let Some(sz) = x.strip_prefix("size=") {
                let bytes = silo_units::parse_size(sz)
                    .map_err(|_| bad(format!("HostConfig.Tmpfs: invalid size {sz:?} for {dst}")))?;
                o.push(format!("size={bytes}"));
            } else if x == "exec" {
                o.retain(|y| y != "noexec");
            } else if x == "suid" {
                o.retain(|y| y != "nosuid");
            } else if x == "dev" {
                o.retain(|y| y != "nodev");
            } else {
                o.push(x.to_string());
            }
        }
        let refs: Vec<&str> = o.iter().map(|s| s.as_str()).collect();
        add_mount(&mut mounts, mount(dst, "tmpfs", "tmpfs", &refs));
    }

    // Config.Volumes: anonymous volumes at paths no other mount covers.
    let mut vols: Vec<String> = body.volumes.clone().unwrap_or_default();
    vols.sort();
    for dst in vols {
        if targets.contains(&dst) {
            continue;
        }
        claim(&mut targets, &dst, "Config.Volumes")?;
        let (name, data) = volume(None)?;
        anonymous.push(name.clone());
        add_mount(
            &mut mounts,
            mount(
                &dst,
                "bind",
                &data.to_string_lossy(),
                &["rbind", "rprivate", "rw"],
            ),
        );
        points.push(volume_point(&name, &data, &dst, true));
    }

    // Namespaces.
    let net_host = hc.network_mode.as_deref() == Some("host");
    let mut ns = vec![
        NamespaceType::Pid,
        NamespaceType::Ipc,
        NamespaceType::Uts,
        NamespaceType::Mount,
    ];
    if !net_host {
        ns.push(NamespaceType::Network);
    }
    if cgroupns {
        ns.push(NamespaceType::Cgroup);
    }

    let mut sysctl = BTreeMap::new();
    for (k, v) in hc.sysctls.iter().flatten() {
        if net_host && k.starts_with("net.") {
            return Err(bad(format!(
                "HostConfig.Sysctls: {k} cannot be set with the host network namespace"
            )));
        }
        sysctl.insert(k.clone(), v.clone());
    }

    let resources = resources(&hc, privileged)?;

    let spec = Spec {
        oci_version: silo_oci::OCI_VERSION.into(),
        process: Some(process),
        root: Some(Root {
            path: rootfs.to_string_lossy().into_owned(),
            readonly: hc.readonly_rootfs == Some(true),
        }),
        hostname: Some(hostname),
        mounts,
        linux: Some(Linux {
            sysctl,
            resources: Some(resources),
            cgroups_path: Some(format!("/silo/{id}")),
            namespaces: ns
                .into_iter()
                .map(|typ| Namespace { typ, path: None })
                .collect(),
            seccomp: None,
            masked_paths: if privileged {
                vec![]
            } else {
                silo_oci::MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            readonly_paths: if privileged {
                vec![]
            } else {
                silo_oci::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Built {
        spec,
        mounts: points,
        anonymous_volumes: anonymous,
    })
}

fn volume_point(name: &str, data: &Path, dst: &str, rw: bool) -> MountPoint {
    MountPoint {
        typ: Some("volume".into()),
        name: Some(name.into()),
        source: Some(data.to_string_lossy().into_owned()),
        destination: Some(dst.into()),
        driver: Some("local".into()),
        mode: Some(if rw { "z".into() } else { "ro".into() }),
        rw: Some(rw),
        propagation: Some(String::new()),
    }
}

/// The cgroup resources from HostConfig (also used by `update`).
pub(crate) fn resources(hc: &HostConfig, privileged: bool) -> Result<Resources> {
    let mut r = Resources {
        devices: vec![DeviceCgroup {
            allow: privileged,
            access: Some("rwm".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut mem = Memory::default();
    let pos = |v: Option<i64>| v.filter(|x| *x != 0);
    mem.limit = pos(hc.memory);
    mem.reservation = pos(hc.memory_reservation);
    mem.swap = pos(hc.memory_swap);
    if let (Some(l), Some(s)) = (mem.limit, mem.swap) {
        if s > 0 && s < l {
            return Err(bad("HostConfig.MemorySwap: minimum memoryswap limit should be larger than memory limit"));
        }
    }
    if mem.swap.is_some() && mem.limit.is_none() {
        return Err(bad("HostConfig.MemorySwap: you should always set the memory limit when using a memoryswap limit"));
    }
    if let Some(sw) = hc.memory_swappiness.filter(|s| *s >= 0) {
        if sw > 100 {
            return Err(bad(format!(
                "HostConfig.MemorySwappiness: {sw} is not in [0, 100]"
            )));
        }
        mem.swappiness = Some(sw as u64);
    }
    if hc.oom_kill_disable == Some(true) {
        mem.disable_oom_killer = Some(true);
    }
    if mem != Memory::default() {
        r.memory = Some(mem);
    }
    let mut cpu = Cpu::default();
    if let Some(n) = pos(hc.nano_cpus) {
        if n < 0 {
            return Err(bad("HostConfig.NanoCpus: must not be negative"));
        }
        cpu.period = Some(100_000);
        cpu.quota = Some(n * 100_000 / 1_000_000_000);
    }
    if let Some(q) = pos(hc.cpu_quota) {
        cpu.quota = Some(q);
    }
    if let Some(p) = pos(hc.cpu_period) {
        cpu.period = Some(p as u64);
    }
    if let Some(s) = pos(hc.cpu_shares) {
        if s < 0 {
            return Err(bad("HostConfig.CpuShares: must not be negative"));
        }
        cpu.shares = Some(s as u64);
    }
    cpu.cpus = hc.cpuset_cpus.clone().filter(|s| !s.is_empty());
    cpu.mems = hc.cpuset_mems.clone().filter(|s| !s.is_empty());
    if cpu != Cpu::default() {
        r.cpu = Some(cpu);
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        r.pids = Some(Pids { limit: p });
    }
    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(bad(format!(
                "HostConfig.BlkioWeight: {w} is not in [10, 1000]"
            )));
        }
        r.block_io = Some(silo_oci::BlockIo {
            weight: Some(w),
            ..Default::default()
        });
    }
    Ok(r)
}

/// Resolves Docker's `User` ("uid", "uid:gid", "name", "name:group") in the
/// container's root filesystem (/etc/passwd and /etc/group there). Numeric
/// ids need no entry; names must exist. Supplementary groups come from
/// /etc/group membership.
pub(crate) fn resolve_user(rootfs: &Path, user: &str) -> Result<User> {
    if user.is_empty() {
        return Ok(User::default());
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    user_from_files(user, &passwd, &group).map_err(|e| bad(format!("{e} (Config.User)")))
}

/// [`resolve_user`] over the contents of /etc/passwd and /etc/group (the
/// start of a container and `docker exec` both use it); the error is
/// Docker's message. An empty `user` is root.
pub(crate) fn user_from_files(
    user: &str,
    passwd: &str,
    group: &str,
) -> std::result::Result<User, String> {
    if user.is_empty() {
        return Ok(User::default());
    }
    // "uid:" names no group, as in Docker.
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (user, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(|s| s.to_string()).collect())
            .collect()
    };
    let pw = entries(passwd);
    let gr = entries(group);
    let (uid, mut gid, name) = if let Ok(uid) = u.parse::<u32>() {
        let e = pw
            .iter()
            .find(|e| e.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid));
        (
            uid,
            e.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(0),
            e.map(|e| e[0].clone()),
        )
    } else {
        let e = pw.iter().find(|e| e[0] == u).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?;
        let uid = e
            .get(2)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("corrupt passwd entry for {u}"))?;
        (
            uid,
            e.get(3).and_then(|x| x.parse().ok()).unwrap_or(0),
            Some(u.to_string()),
        )
    };
    if let Some(g) = g {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            gr.iter()
                .find(|e| e[0] == g)
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
        };
    }
    // Supplementary groups from /etc/group only when no group was named,
    // as runc (and so Docker) does.
    let mut additional = Vec::new();
    if let (Some(name), None) = (&name, g) {
        for e in &gr {
            let members = e
                .get(3)
                .map(|m| m.split(',').any(|x| x == name))
                .unwrap_or(false);
            if members {
                if let Some(id) = e.get(2).and_then(|x| x.parse::<u32>().ok()) {
                    if id != gid && !additional.contains(&id) {
                        additional.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        ..Default::default()
    })
}

/// Writes the container's /etc/hostname, /etc/hosts and /etc/resolv.conf
/// (copied from `host_resolv`) into `dir`.
pub(crate) fn write_etc_files(dir: &Path, hostname: &str, host_resolv: &Path) -> Result<()> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text)
            .map_err(|e| EngineError::Internal(format!("writing {}: {e}", p.display())))
    };
    w("hostname", format!("{hostname}\n"))?;
    w(
        "hosts",
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
        ),
    )?;
    w(
        "resolv.conf",
        std::fs::read_to_string(host_resolv).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{Mount as DMount, ResourcesUlimits};
    use std::collections::HashMap;

    fn body(hc: HostConfig) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["echo".into(), "hi".into()]),
            host_config: Some(hc),
            ..Default::default()
        }
    }

    fn build_ok(b: &ContainerCreateBody) -> Built {
        let dir = Path::new("/tmp/x");
        let mut vol = |name: Option<&str>| -> Result<(String, PathBuf)> {
            let n = name.unwrap_or("anon0").to_string();
            Ok((n.clone(), PathBuf::from(format!("/vols/{n}/_data"))))
        };
        build(
            &"a".repeat(64),
            b,
            &ImageDefaults::default(),
            Path::new("/rootfs"),
            dir,
            false,
            &mut vol,
        )
        .unwrap()
    }

    fn caps_of(s: &Spec) -> Vec<String> {
        s.process
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap()
            .bounding
            .clone()
            .unwrap()
    }

    #[test]
    fn capabilities_add_drop_all() {
        let c = caps(&HostConfig {
            cap_add: Some(vec!["sys_admin".into(), "CAP_NET_ADMIN".into()]),
            cap_drop: Some(vec!["chown".into()]),
            ..Default::default()
        })
        .unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_KILL".to_string()));
        let c = caps(&HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["kill".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c, vec!["CAP_KILL".to_string()]);
        let c = caps(&HostConfig {
            cap_add: Some(vec!["all".into()]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.len(), ALL_CAPS.len());
        let e = caps(&HostConfig {
            cap_add: Some(vec!["bogus".into()]),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("HostConfig.CapAdd"), "{e}");
    }

    #[test]
    fn default_spec_shape() {
        let b = build_ok(&body(HostConfig::default()));
        let s = &b.spec;
        let p = s.process.as_ref().unwrap();
        assert_eq!(p.args, vec!["echo", "hi"]);
        assert_eq!(s.hostname.as_deref(), Some("aaaaaaaaaaaa"));
        assert!(p.env.iter().any(|e| e.starts_with("PATH=")));
        assert!(p.env.contains(&"HOSTNAME=aaaaaaaaaaaa".to_string()));
        assert_eq!(caps_of(s).len(), silo_oci::DEFAULT_CAPS.len());
        let l = s.linux.as_ref().unwrap();
        assert_eq!(
            l.cgroups_path.as_deref(),
            Some(&*format!("/silo/{}", "a".repeat(64)))
        );
        assert!(l.namespaces.iter().any(|n| n.typ == NamespaceType::Network));
        assert!(!l.namespaces.iter().any(|n| n.typ == NamespaceType::Cgroup));
        assert_eq!(l.masked_paths.len(), silo_oci::MASKED_PATHS.len());
        let dests: Vec<&str> = s.mounts.iter().map(|m| m.destination.as_str()).collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d), "missing {d}");
        }
        let shm = s
            .mounts
            .iter()
            .find(|m| m.destination == "/dev/shm")
            .unwrap();
        assert!(shm.options.contains(&"size=65536k".to_string()));
        // Default network gets the warning.
        let w = validate(&body(HostConfig::default())).unwrap();
        assert!(w[0].contains("loopback"));
        let w = validate(&body(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }))
        .unwrap();
        assert!(w.is_empty());
        // Host network: no network namespace.
        let b = build_ok(&body(HostConfig {
            network_mode: Some("host".into()),
            ..Default::default()
        }));
        assert!(!b
            .spec
            .linux
            .unwrap()
            .namespaces
            .iter()
            .any(|n| n.typ == NamespaceType::Network));
    }

    #[test]
    fn env_entrypoint_and_image_defaults() {
        let img = ImageDefaults {
            env: vec!["PATH=/img".into(), "A=1".into(), "B=2".into()],
            cmd: vec!["sh".into()],
            entrypoint: vec!["/init".into()],
            working_dir: "/srv".into(),
        };
        let mut vol = |_: Option<&str>| -> Result<(String, PathBuf)> { unreachable!() };
        let b = ContainerCreateBody {
            env: Some(vec!["B=3".into(), "C=4".into()]),
            tty: Some(true),
            ..Default::default()
        };
        let out = build(
            "abc",
            &b,
            &img,
            Path::new("/r"),
            Path::new("/d"),
            true,
            &mut vol,
        )
        .unwrap();
        let p = out.spec.process.as_ref().unwrap();
        assert_eq!(p.args, vec!["/init", "sh"]);
        assert_eq!(p.cwd, "/srv");
        assert!(p.terminal);
        assert!(p.env.contains(&"PATH=/img".to_string()));
        assert!(p.env.contains(&"B=3".to_string()));
        assert!(!p.env.contains(&"B=2".to_string()));
        assert!(p.env.contains(&"TERM=xterm".to_string()));
        assert!(out
            .spec
            .linux
            .unwrap()
            .namespaces
            .iter()
            .any(|n| n.typ == NamespaceType::Cgroup));
        // A request entrypoint drops the image's cmd.
        let b2 = ContainerCreateBody {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        let out = build(
            "abc",
            &b2,
            &img,
            Path::new("/r"),
            Path::new("/d"),
            false,
            &mut vol,
        )
        .unwrap();
        assert_eq!(out.spec.process.unwrap().args, vec!["echo"]);
        // Nothing to run.
        let e = build(
            "abc",
            &ContainerCreateBody::default(),
            &ImageDefaults::default(),
            Path::new("/r"),
            Path::new("/d"),
            false,
            &mut vol,
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn privileged_and_security_opts() {
        let b = build_ok(&body(HostConfig {
            privileged: Some(true),
            ..Default::default()
        }));
        let l = b.spec.linux.as_ref().unwrap();
        assert!(l.masked_paths.is_empty() && l.readonly_paths.is_empty());
        assert!(l.resources.as_ref().unwrap().devices[0].allow);
        assert_eq!(caps_of(&b.spec).len(), ALL_CAPS.len());
        let hc = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        assert_eq!(security(&hc, &[]).unwrap().seccomp, None);

        let def = security(&HostConfig::default(), &["CAP_KILL".into()]).unwrap();
        assert!(def.seccomp.is_some());
        assert!(!def.no_new_privileges);
        let hc = HostConfig {
            security_opt: Some(vec![
                "seccomp=unconfined".into(),
                "no-new-privileges".into(),
            ]),
            ..Default::default()
        };
        let s = security(&hc, &[]).unwrap();
        assert_eq!(s.seccomp, None);
        assert!(s.no_new_privileges);
        let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let hc = HostConfig {
            security_opt: Some(vec![
                format!("seccomp={profile}"),
                "no-new-privileges:true".into(),
            ]),
            ..Default::default()
        };
        let s = security(&hc, &[]).unwrap();
        let sc = s.seccomp.unwrap();
        assert!(format!("{:?}", sc.default_action).contains("ERRNO"));
        assert!(s.no_new_privileges);
        for badopt in ["seccomp=/no/such/file", "bogus=1", "seccomp={not json"] {
            let hc = HostConfig {
                security_opt: Some(vec![badopt.into()]),
                ..Default::default()
            };
            let e = security(&hc, &[]).unwrap_err();
            assert_eq!(e.status(), 400, "{badopt}");
            assert!(e.to_string().contains("SecurityOpt"), "{e}");
        }
    }

    #[test]
    fn binds_volumes_tmpfs() {
        let host_dir = tempfile::tempdir().unwrap();
        let src = host_dir.path().to_string_lossy().into_owned();
        let hc = HostConfig {
            binds: Some(vec![format!("{src}:/data:ro"), "named:/vol".into()]),
            mounts: Some(vec![
                DMount {
                    target: Some("/anon".into()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                },
                DMount {
                    target: Some("/scratch".into()),
                    typ: Some(MountType::TMPFS),
                    ..Default::default()
                },
            ]),
            tmpfs: Some(HashMap::from([(
                "/run".to_string(),
                "size=1m,exec".to_string(),
            )])),
            shm_size: Some(128 * 1024 * 1024),
            ..Default::default()
        };
        let b = build_ok(&body(hc));
        let find = |d: &str| {
            b.spec
                .mounts
                .iter()
                .find(|m| m.destination == d)
                .unwrap()
                .clone()
        };
        let data = find("/data");
        assert_eq!(data.source.as_deref(), Some(src.as_str()));
        assert!(data.options.contains(&"ro".to_string()));
        let vol = find("/vol");
        assert_eq!(vol.source.as_deref(), Some("/vols/named/_data"));
        assert_eq!(vol.typ.as_deref(), Some("bind"));
        assert_eq!(find("/anon").source.as_deref(), Some("/vols/anon0/_data"));
        assert_eq!(b.anonymous_volumes, vec!["anon0".to_string()]);
        assert_eq!(find("/scratch").typ.as_deref(), Some("tmpfs"));
        let run = find("/run");
        assert!(run.options.contains(&"size=1048576".to_string()));
        assert!(!run.options.contains(&"noexec".to_string()));
        assert!(find("/dev/shm")
            .options
            .contains(&"size=131072k".to_string()));
        assert_eq!(b.mounts.len(), 4);
        assert_eq!(
            b.mounts
                .iter()
                .filter(|m| m.typ.as_deref() == Some("volume"))
                .count(),
            2
        );
        // Errors name the field.
        for (hc, field) in [
            (
                HostConfig {
                    binds: Some(vec!["a:b:c:d".into()]),
                    ..Default::default()
                },
                "HostConfig.Binds",
            ),
            (
                HostConfig {
                    binds: Some(vec!["/x:relative".into()]),
                    ..Default::default()
                },
                "HostConfig.Binds",
            ),
            (
                HostConfig {
                    tmpfs: Some(HashMap::from([("/t".to_string(), "size=lots".to_string())])),
                    ..Default::default()
                },
                "HostConfig.Tmpfs",
            ),
            (
                HostConfig {
                    mounts: Some(vec![DMount {
                        target: Some("/m".into()),
                        source: Some("/no/such/dir".into()),
                        typ: Some(MountType::BIND),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                "HostConfig.Mounts",
            ),
        ] {
            let mut vol = |_: Option<&str>| -> Result<(String, PathBuf)> {
                Ok(("v".into(), PathBuf::from("/v")))
            };
            let e = build(
                "id",
                &body(hc),
                &ImageDefaults::default(),
                Path::new("/r"),
                Path::new("/d"),
                false,
                &mut vol,
            )
            .unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn resources_and_limits() {
        let hc = HostConfig {
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(50),
            blkio_weight: Some(300),
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(100),
                hard: Some(200),
            }]),
            sysctls: Some(HashMap::from([(
                "net.ipv4.ip_forward".to_string(),
                "1".to_string(),
            )])),
            oom_score_adj: Some(500),
            readonly_rootfs: Some(true),
            ..Default::default()
        };
        let b = build_ok(&body(hc));
        let l = b.spec.linux.as_ref().unwrap();
        let r = l.resources.as_ref().unwrap();
        let m = r.memory.as_ref().unwrap();
        assert_eq!(m.limit, Some(64 << 20));
        assert_eq!(m.reservation, Some(32 << 20));
        assert_eq!(m.swap, Some(128 << 20));
        let c = r.cpu.as_ref().unwrap();
        assert_eq!(
            (c.quota, c.period, c.shares),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(c.cpus.as_deref(), Some("0"));
        assert_eq!(r.pids.as_ref().unwrap().limit, 50);
        assert_eq!(r.block_io.as_ref().unwrap().weight, Some(300));
        assert_eq!(
            l.sysctl.get("net.ipv4.ip_forward").map(|s| s.as_str()),
            Some("1")
        );
        let p = b.spec.process.as_ref().unwrap();
        assert_eq!(
            p.rlimits,
            vec![Rlimit {
                typ: "RLIMIT_NOFILE".into(),
                soft: 100,
                hard: 200
            }]
        );
        assert_eq!(p.oom_score_adj, Some(500));
        assert!(b.spec.root.as_ref().unwrap().readonly);
        // Quota/period directly.
        let r = resources(
            &HostConfig {
                cpu_quota: Some(20000),
                cpu_period: Some(50000),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(r.cpu.as_ref().unwrap().quota, Some(20000));
        assert_eq!(r.cpu.as_ref().unwrap().period, Some(50000));
        let e = resources(
            &HostConfig {
                memory: Some(64 << 20),
                memory_swap: Some(1 << 20),
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("MemorySwap"));
    }

    #[test]
    fn init_becomes_pid_1_and_hides_from_path() {
        let mut b = body(HostConfig {
            init: Some(true),
            ..Default::default()
        });
        b.cmd = Some(vec!["sleep".into(), "5".into()]);
        assert!(validate(&b).is_ok());
        let mut spec = build_ok(&b).spec;
        assert_eq!(user_args(&spec), ["sleep", "5"]);
        add_init(&mut spec, Path::new("/usr/bin/tini-static"));
        let p = spec.process.as_ref().unwrap();
        assert_eq!(p.args, [INIT_TARGET, "--", "sleep", "5"]);
        let m = spec.mounts.last().unwrap();
        assert_eq!(m.destination, INIT_TARGET);
        assert_eq!(m.source.as_deref(), Some("/usr/bin/tini-static"));
        assert!(m.options.iter().any(|o| o == "ro"), "{:?}", m.options);
        assert_eq!(user_args(&spec), ["sleep", "5"]);
    }

    #[test]
    fn unsupported_fields_are_400_naming_the_field() {
        use bollard_stubs::models::{DeviceMapping, PortBinding};
        let cases: Vec<(HostConfig, &str)> = vec![
            (
                HostConfig {
                    network_mode: Some("mynet".into()),
                    ..Default::default()
                },
                "HostConfig.NetworkMode",
            ),
            (
                HostConfig {
                    devices: Some(vec![DeviceMapping::default()]),
                    ..Default::default()
                },
                "HostConfig.Devices",
            ),
            (
                HostConfig {
                    port_bindings: Some(HashMap::from([(
                        "80/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: None,
                            host_port: Some("8080".into()),
                        }]),
                    )])),
                    ..Default::default()
                },
                "HostConfig.PortBindings",
            ),
            (
                HostConfig {
                    port_bindings: Some(HashMap::from([("eighty/tcp".to_string(), None)])),
                    ..Default::default()
                },
                "invalid port",
            ),
            (
                HostConfig {
                    memory: Some(1024),
                    ..Default::default()
                },
                "HostConfig.Memory",
            ),
        ];
        for (hc, needle) in cases {
            let e = validate(&body(hc)).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(
                e.to_string().contains(needle),
                "{e} should contain {needle}"
            );
        }
    }

    #[test]
    fn user_lookup_in_rootfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,bob\naudio:x:29:www\n",
        )
        .unwrap();
        let r = root.path();
        let u = resolve_user(r, "www").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![50, 29]);
        let u = resolve_user(r, "1000:1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = resolve_user(r, "33").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        let u = resolve_user(r, "www:staff").unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        // A named group means no supplementary groups, as with runc.
        assert!(u.additional_gids.is_empty(), "{:?}", u.additional_gids);
        assert_eq!(resolve_user(r, "").unwrap(), User::default());
        let e = resolve_user(r, "nobody").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("nobody"));
        assert!(resolve_user(r, "www:nogroup").is_err());
    }

    #[test]
    fn users_resolve_from_file_contents() {
        // What `docker exec` resolves (its error has no "(Config.User)").
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:www\n";
        let ids =
            |u: &str| user_from_files(u, passwd, group).map(|u| (u.uid, u.gid, u.additional_gids));
        assert_eq!(ids("www"), Ok((33, 34, vec![50])));
        assert_eq!(ids("33"), Ok((33, 34, vec![50])));
        assert_eq!(ids("www:staff"), Ok((33, 50, vec![])));
        assert_eq!(ids("www:root"), Ok((33, 0, vec![])));
        assert_eq!(ids("1000"), Ok((1000, 0, vec![])));
        assert_eq!(ids("1000:7"), Ok((1000, 7, vec![])));
        assert_eq!(ids("www:"), Ok((33, 34, vec![50])));
        assert_eq!(ids("0"), Ok((0, 0, vec![])));
        assert_eq!(ids(""), Ok((0, 0, vec![])));
        assert_eq!(
            ids("nobody"),
            Err("unable to find user nobody: no matching entries in passwd file".into())
        );
        assert_eq!(
            ids("www:nogroup"),
            Err("unable to find group nogroup: no matching entries in group file".into())
        );
    }
}

//! CRI requests in the engine's words: a pod sandbox config becomes a
//! [`PodConfig`], a container config a [`ContainerConfig`]. Pure functions
//! (the host is asked only through [`Host`]), so each rule is unit-tested.
//! A field silo cannot honour is refused by name, never dropped.

use crate::proto as cri;
use serde::{Deserialize, Serialize};
use silo_engine::{
    ContainerConfig, DnsConfig, ImageRef, LogConfig, MountRequest, NetworkMode, PodConfig,
    ProcessConfig, SeccompPolicy, SecurityConfig, Sharing,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A field the CRI sent that silo refuses, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        field,
        message: message.into(),
    }
}

/// What the CRI keeps with a pod (the engine's pod extension `cri`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub annotations: BTreeMap<String, String>,
    pub log_directory: String,
    pub runtime_handler: String,
    /// Applied to each of its containers (they share its network, IPC and UTS).
    pub sysctls: BTreeMap<String, String>,
    pub cgroup_parent: Option<String>,
    /// The pod's PID namespace mode for its containers: the host's.
    pub host_pid: bool,
    /// The pod is on the node's network, and shares the node's IPC.
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub host_ipc: bool,
    /// One PID namespace for the whole pod, held by its pause container.
    #[serde(default)]
    pub shared_pid: bool,
    pub privileged: bool,
    pub port_mappings: Vec<(i32, i32, i32, String)>,
    /// Its network came from CNI plugins (not silo's network).
    #[serde(default)]
    pub cni: bool,
}

/// What the CRI keeps with a container (its extension `cri`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub attempt: u32,
    pub annotations: BTreeMap<String, String>,
    /// The image as the kubelet named it.
    pub image: String,
    /// `log_directory/log_path`; empty: no log.
    pub log_path: String,
    pub mounts: Vec<(String, String, bool, i32)>,
}

/// Host facts the translation needs.
pub trait Host {
    /// The device node at `host` as a device at `inside`.
    fn device(&self, host: &str, inside: &str) -> Result<silo_oci::Device, String>;
    /// The content of a Localhost seccomp profile.
    fn read_profile(&self, path: &str) -> Result<Vec<u8>, String>;
    /// Whether a negative oom_score_adj may be set (CAP_SYS_RESOURCE).
    fn may_lower_oom_score(&self) -> bool;
}

/// The engine's pod name for a CRI pod: unique per attempt, as the kubelet's.
pub fn pod_name(m: &cri::PodSandboxMetadata) -> String {
    format!("k8s_POD_{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// The engine's container name for a container of a pod.
pub fn container_name(m: &cri::ContainerMetadata, pod: &PodRecord) -> String {
    format!(
        "k8s_{}_{}_{}_{}_{}",
        m.name, pod.name, pod.namespace, pod.uid, m.attempt
    )
}

fn sorted(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A pod sandbox config as a pod and the CRI's record of it.
pub fn pod_config(c: &cri::PodSandboxConfig) -> Result<(PodConfig, PodRecord), Refused> {
    let m = c
        .metadata
        .as_ref()
        .ok_or_else(|| refuse("metadata", "a pod sandbox needs its metadata"))?;
    if m.name.is_empty() || m.uid.is_empty() || m.namespace.is_empty() {
        return Err(refuse(
            "metadata",
            "name, uid and namespace must all be set",
        ));
    }
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    // Unset: the kubelet's defaults (pod network and IPC, PID per container).
    let ns = sc
        .namespace_options
        .clone()
        .unwrap_or(cri::NamespaceOption {
            pid: 1,
            ..Default::default()
        });
    let network = match mode(ns.network, "namespace_options.network")? {
        Mode::Node => NetworkMode::Host,
        Mode::Pod => NetworkMode::Default,
        _ => {
            return Err(refuse(
                "namespace_options.network",
                "a pod's network is its own (POD) or the node's (NODE)",
            ))
        }
    };
    let host_ipc = match mode(ns.ipc, "namespace_options.ipc")? {
        Mode::Node => true,
        Mode::Pod => false,
        _ => {
            return Err(refuse(
                "namespace_options.ipc",
                "a pod's IPC namespace is its own (POD) or the node's (NODE)",
            ))
        }
    };
    let (host_pid, shared_pid) = match mode(ns.pid, "namespace_options.pid")? {
        Mode::Node => (true, false),
        Mode::Container => (false, false),
        // shareProcessNamespace: a pause container is PID 1 of it.
        Mode::Pod => (false, true),
        Mode::Target => {
            return Err(refuse(
                "namespace_options.pid",
                "TARGET is for containers, not for a pod",
            ))
        }
    };
    if shared_pid && network == NetworkMode::Host {
        return Err(refuse(
            "namespace_options.pid",
            "a shared PID namespace needs the pod's own network (its pause container joins it)",
        ));
    }
    if ns.userns_options.as_ref().is_some_and(|u| u.mode != 2) {
        return Err(refuse(
            "namespace_options.userns_options",
            "user namespaces are not supported by silo yet (only NODE)",
        ));
    }
    if sc
        .selinux_options
        .as_ref()
        .is_some_and(|s| *s != Default::default())
    {
        return Err(refuse(
            "selinux_options",
            "SELinux is not supported by silo",
        ));
    }
    let mut ports = Vec::new();
    let mut mappings = Vec::new();
    for p in &c.port_mappings {
        if p.host_port == 0 {
            // The kubelet lists containerPorts without a hostPort too.
            continue;
        }
        let protocol = match p.protocol {
            0 => silo_network::ports::Protocol::Tcp,
            1 => silo_network::ports::Protocol::Udp,
            2 => silo_network::ports::Protocol::Sctp,
            n => {
                return Err(refuse(
                    "port_mappings.protocol",
                    format!("unknown protocol {n}"),
                ))
            }
        };
        let port = |v: i32, what: &str| {
            u16::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| refuse("port_mappings", format!("{what} {v} is not a port")))
        };
        let host_ip = match p.host_ip.as_str() {
            "" | "0.0.0.0" => None,
            ip => Some(ip.parse().map_err(|_| {
                refuse(
                    "port_mappings.host_ip",
                    format!("{ip:?} is not an IPv4 address"),
                )
            })?),
        };
        let host = port(p.host_port, "host port")?;
        ports.push(silo_network::ports::PortRequest {
            protocol,
            host_ip,
            host_first: host,
            host_last: host,
            container_port: port(p.container_port, "container port")?,
        });
        mappings.push((p.protocol, p.container_port, p.host_port, p.host_ip.clone()));
    }
    if !ports.is_empty() && network == NetworkMode::Host {
        return Err(refuse(
            "port_mappings",
            "a pod on the node's network publishes no ports (its ports are the node's)",
        ));
    }
    let dns = match &c.dns_config {
        None => DnsConfig::default(),
        Some(d) => DnsConfig {
            servers: d
                .servers
                .iter()
                .map(|s| {
                    s.parse().map_err(|_| {
                        refuse("dns_config.servers", format!("{s:?} is not an IP address"))
                    })
                })
                .collect::<Result<_, _>>()?,
            search: d.searches.clone(),
            options: d.options.clone(),
        },
    };
    if !c.log_directory.is_empty()
        && (!c.log_directory.starts_with('/') || c.log_directory.split('/').any(|p| p == ".."))
    {
        return Err(refuse(
            "log_directory",
            format!("{:?}: want an absolute path without '..'", c.log_directory),
        ));
    }
    let cgroup_parent = Some(linux.cgroup_parent.clone()).filter(|p| !p.is_empty());
    if let Some(p) = &cgroup_parent {
        if !p.starts_with('/') {
            return Err(refuse(
                "linux.cgroup_parent",
                format!("{p:?}: silo uses the cgroupfs driver, so the parent is a path such as /kubepods/pod<uid> (set the kubelet's cgroupDriver to cgroupfs)"),
            ));
        }
    }
    let host_network = network == NetworkMode::Host;
    let config = PodConfig {
        name: pod_name(m),
        hostname: c.hostname.clone(),
        labels: sorted(&c.labels),
        network,
        host_ipc,
        ports,
        dns,
    };
    let record = PodRecord {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
        annotations: sorted(&c.annotations),
        log_directory: c.log_directory.clone(),
        runtime_handler: String::new(),
        sysctls: sorted(&linux.sysctls),
        cgroup_parent,
        host_pid,
        host_network,
        host_ipc,
        shared_pid,
        privileged: sc.privileged,
        port_mappings: mappings,
        cni: false,
    };
    Ok((config, record))
}

enum Mode {
    Pod,
    Container,
    Node,
    Target,
}

fn mode(v: i32, field: &'static str) -> Result<Mode, Refused> {
    match v {
        0 => Ok(Mode::Pod),
        1 => Ok(Mode::Container),
        2 => Ok(Mode::Node),
        3 => Ok(Mode::Target),
        n => Err(refuse(field, format!("unknown namespace mode {n}"))),
    }
}

/// The container's argv, Kubernetes' way: `command` replaces the image's
/// entrypoint (and drops its cmd), `args` replaces its cmd.
pub fn argv(c: &cri::ContainerConfig, image: &silo_storage::ImageConfig) -> Vec<String> {
    let ic = &image.config;
    let (entry, cmd) = if c.command.is_empty() {
        (
            ic.entrypoint.clone().unwrap_or_default(),
            if c.args.is_empty() {
                ic.cmd.clone().unwrap_or_default()
            } else {
                c.args.clone()
            },
        )
    } else {
        (c.command.clone(), c.args.clone())
    };
    entry.into_iter().chain(cmd).collect()
}

/// `KEY=value` of the image, overridden by the config's, in order.
fn environment(c: &cri::ContainerConfig, image: &silo_storage::ImageConfig) -> Vec<String> {
    let mut env: Vec<String> = image.config.env.clone().unwrap_or_default();
    for kv in &c.envs {
        let key = format!("{}=", kv.key);
        env.retain(|e| !e.starts_with(&key));
        env.push(format!("{}={}", kv.key, kv.value));
    }
    env
}

/// CRI resources as OCI cgroup resources.
pub fn resources(r: &cri::LinuxContainerResources) -> Result<silo_oci::Resources, Refused> {
    if !r.unified.is_empty() {
        return Err(refuse(
            "resources.unified",
            "cgroup v2 unified settings are not supported by silo's CRI yet",
        ));
    }
    let pos = |v: i64| (v > 0).then_some(v);
    let mut out = silo_oci::Resources::default();
    let cpu = silo_oci::Cpu {
        shares: pos(r.cpu_shares).map(|v| v as u64),
        quota: pos(r.cpu_quota),
        period: pos(r.cpu_period).map(|v| v as u64),
        cpus: Some(r.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
        mems: Some(r.cpuset_mems.clone()).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    if cpu != silo_oci::Cpu::default() {
        out.cpu = Some(cpu);
    }
    if r.memory_limit_in_bytes > 0 || r.memory_swap_limit_in_bytes > 0 {
        out.memory = Some(silo_oci::Memory {
            limit: pos(r.memory_limit_in_bytes),
            swap: pos(r.memory_swap_limit_in_bytes),
            ..Default::default()
        });
    }
    for h in &r.hugepage_limits {
        out.hugepage_limits.push(silo_oci::HugepageLimit {
            page_size: h.page_size.clone(),
            limit: h.limit,
        });
    }
    Ok(out)
}

/// A negative oom_score_adj where the host forbids it becomes 0 (and is logged).
fn oom_score(v: i64, host: &dyn Host) -> Option<i32> {
    let v = i32::try_from(v.clamp(-1000, 1000)).unwrap_or(0);
    if v < 0 && !host.may_lower_oom_score() {
        tracing::warn!(
            requested = v,
            "oom_score_adj {v} needs CAP_SYS_RESOURCE, which silod lacks: using 0"
        );
        return Some(0);
    }
    Some(v)
}

fn profile(p: Option<&cri::SecurityProfile>, legacy: &str) -> (i32, String) {
    match p {
        Some(p) => (p.profile_type, p.localhost_ref.clone()),
        None => match legacy {
            "" | "unconfined" => (1, String::new()),
            "runtime/default" | "docker/default" => (0, String::new()),
            l => (2, l.strip_prefix("localhost/").unwrap_or(l).to_string()),
        },
    }
}

/// A container config, in the pod it belongs to, as the engine's config and
/// the CRI's record.
/// The container name of a pod's pause container (shared PID namespace).
pub fn pause_name(pod_name: &str) -> String {
    format!("{pod_name}_pause")
}

/// `pause` is the id of the pod's pause container, when the pod shares
/// one PID namespace.
pub fn container_config(
    c: &cri::ContainerConfig,
    pod_id: &str,
    pod: &PodRecord,
    pause: Option<&str>,
    image: &silo_storage::Image,
    host: &dyn Host,
) -> Result<(ContainerConfig, ContainerRecord), Refused> {
    let meta = c
        .metadata
        .as_ref()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| refuse("metadata", "a container needs its metadata with a name"))?;
    let args = argv(c, &image.config);
    if args.is_empty() {
        return Err(refuse(
            "command",
            "no command: neither the config nor the image names one",
        ));
    }
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let res = linux.resources.clone().unwrap_or_default();
    let privileged = sc.privileged;
    if privileged && !pod.privileged {
        return Err(refuse(
            "security_context.privileged",
            "a privileged container needs a privileged pod sandbox",
        ));
    }
    let mut caps: Vec<String> = if privileged {
        silo_engine::ALL_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        silo_oci::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    if let Some(cap) = &sc.capabilities {
        let name = |c: &str| {
            let c = c.to_ascii_uppercase();
            if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        };
        let all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
        // Drops first, then adds (so "drop ALL, add NET_RAW" keeps NET_RAW).
        if all(&cap.drop_capabilities) {
            caps.clear();
        } else {
            let drop: Vec<String> = cap.drop_capabilities.iter().map(|d| name(d)).collect();
            caps.retain(|c| !drop.contains(c));
        }
        if all(&cap.add_capabilities) {
            caps = silo_engine::ALL_CAPS
                .iter()
                .map(|c| c.to_string())
                .collect();
        } else {
            for a in &cap.add_capabilities {
                let a = name(a);
                if !silo_engine::ALL_CAPS.contains(&a.as_str()) {
                    return Err(refuse(
                        "capabilities.add_capabilities",
                        format!("unknown capability {a}"),
                    ));
                }
                if !caps.contains(&a) {
                    caps.push(a);
                }
            }
        }
        if !cap.add_ambient_capabilities.is_empty() {
            return Err(refuse(
                "capabilities.add_ambient_capabilities",
                "ambient capabilities are not supported by silo yet",
            ));
        }
    }
    if sc.supplemental_groups_policy != 0 {
        return Err(refuse(
            "security_context.supplemental_groups_policy",
            "Strict is not supported by silo yet (only Merge: the image's groups of the user are added)",
        ));
    }
    let mut user = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        u.value.to_string()
    } else {
        image.config.config.user.clone().unwrap_or_default()
    };
    if let Some(g) = &sc.run_as_group {
        if user.is_empty() {
            return Err(refuse(
                "security_context.run_as_group",
                "run_as_group needs run_as_user or run_as_username",
            ));
        }
        let name = user.split(':').next().unwrap_or_default().to_string();
        user = format!("{name}:{}", g.value);
    }
    #[allow(deprecated)]
    let (seccomp_type, seccomp_ref) = profile(sc.seccomp.as_ref(), &sc.seccomp_profile_path);
    let seccomp = if privileged {
        SeccompPolicy::Unconfined
    } else {
        match seccomp_type {
            0 => SeccompPolicy::Default,
            1 => SeccompPolicy::Unconfined,
            2 => {
                let json = host
                    .read_profile(&seccomp_ref)
                    .map_err(|e| refuse("security_context.seccomp", e))?;
                let p = silo_seccomp::resolve_docker_profile(&json, &caps).map_err(|e| {
                    refuse(
                        "security_context.seccomp",
                        format!("seccomp profile {seccomp_ref}: {e}"),
                    )
                })?;
                SeccompPolicy::Profile(Box::new(p))
            }
            n => {
                return Err(refuse(
                    "security_context.seccomp",
                    format!("unknown profile type {n}"),
                ))
            }
        }
    };
    #[allow(deprecated)]
    let (apparmor_type, apparmor_ref) = profile(sc.apparmor.as_ref(), &sc.apparmor_profile);
    if apparmor_type == 2 {
        return Err(refuse(
            "security_context.apparmor",
            format!("AppArmor profile {apparmor_ref:?}: this host has no AppArmor (silo supports RuntimeDefault and Unconfined, which mean no profile here)"),
        ));
    }
    if sc
        .selinux_options
        .as_ref()
        .is_some_and(|s| *s != Default::default())
    {
        return Err(refuse(
            "security_context.selinux_options",
            "SELinux is not supported by silo",
        ));
    }
    let pid = match mode(
        sc.namespace_options.as_ref().map_or(1, |n| n.pid),
        "namespace_options.pid",
    )? {
        Mode::Container => Sharing::Private,
        Mode::Node => Sharing::Host,
        Mode::Target => Sharing::Container(
            sc.namespace_options
                .as_ref()
                .map(|n| n.target_id.clone())
                .unwrap_or_default(),
        ),
        Mode::Pod => match pause {
            Some(p) => Sharing::Container(p.to_string()),
            None => {
                return Err(refuse(
                    "namespace_options.pid",
                    "POD: the pod sandbox does not share a PID namespace",
                ))
            }
        },
    };
    let pid = if pod.host_pid { Sharing::Host } else { pid };
    // The pod decides the network and IPC namespaces; a container may only
    // say the same.
    if let Some(ns) = &sc.namespace_options {
        let want = |host: bool| if host { 2 } else { 0 };
        if ns.network != want(pod.host_network) || ns.ipc != want(pod.host_ipc) {
            return Err(refuse(
                "namespace_options",
                "a container's network and IPC namespaces are its pod's (POD, or NODE for a pod on the node's)",
            ));
        }
    }
    if c.stdin_once {
        return Err(refuse(
            "stdin_once",
            "closing stdin after the first attach is not supported by silo yet",
        ));
    }
    let mut mounts = Vec::new();
    let mut recorded = Vec::new();
    for m in &c.mounts {
        if !m.container_path.starts_with('/') || !m.host_path.starts_with('/') {
            return Err(refuse(
                "mounts",
                format!(
                    "{:?} -> {:?}: both paths must be absolute",
                    m.host_path, m.container_path
                ),
            ));
        }
        if m.selinux_relabel {
            return Err(refuse(
                "mounts.selinux_relabel",
                "SELinux is not supported by silo",
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(refuse(
                "mounts",
                "id-mapped mounts are not supported by silo yet",
            ));
        }
        if m.image.is_some() {
            return Err(refuse(
                "mounts",
                "image volumes are not supported by silo yet",
            ));
        }
        if m.recursive_read_only {
            return Err(refuse(
                "mounts",
                format!(
                    "{}: recursive read-only mounts are not supported by silo yet (its runtime handler reports recursive_read_only_mounts false)",
                    m.container_path
                ),
            ));
        }
        let propagation = match m.propagation {
            0 => "rprivate",
            1 => "rslave",
            2 => "rshared",
            n => {
                return Err(refuse(
                    "mounts.propagation",
                    format!("unknown propagation {n}"),
                ))
            }
        };
        mounts.push(MountRequest::Bind {
            source: m.host_path.clone(),
            destination: m.container_path.clone(),
            readonly: m.readonly,
            propagation: propagation.into(),
            // As containerd: a missing host directory is made.
            create_source: true,
            mode: String::new(),
        });
        recorded.push((
            m.host_path.clone(),
            m.container_path.clone(),
            m.readonly,
            m.propagation,
        ));
    }
    let mut devices = Vec::new();
    for d in &c.devices {
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            &d.permissions
        };
        if perms.len() != 3 || !"rwm".chars().all(|p| perms.contains(p)) {
            return Err(refuse(
                "devices.permissions",
                format!(
                    "device {}: permissions {perms:?} are not supported by silo yet (only rwm)",
                    d.host_path
                ),
            ));
        }
        let inside = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        devices.push(
            host.device(&d.host_path, inside)
                .map_err(|e| refuse("devices", e))?,
        );
    }
    if !c.cdi_devices.is_empty() {
        return Err(refuse(
            "cdi_devices",
            "CDI devices are not supported by silo",
        ));
    }
    let escapes = |p: &str| p.split('/').any(|c| c == "..");
    if c.log_path.starts_with('/') || escapes(&c.log_path) {
        return Err(refuse(
            "log_path",
            format!(
                "{:?}: want a path relative to the pod's log directory, without '..'",
                c.log_path
            ),
        ));
    }
    let log_path = if pod.log_directory.is_empty() || c.log_path.is_empty() {
        String::new()
    } else {
        PathBuf::from(&pod.log_directory)
            .join(&c.log_path)
            .to_string_lossy()
            .into_owned()
    };
    let config = ContainerConfig {
        image: ImageRef {
            name: c
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            id: image.id.clone(),
        },
        process: ProcessConfig {
            args,
            env: environment(c, &image.config),
            cwd: Some(c.working_dir.clone())
                .filter(|w| !w.is_empty())
                .or_else(|| {
                    image
                        .config
                        .config
                        .working_dir
                        .clone()
                        .filter(|w| !w.is_empty())
                })
                .unwrap_or_else(|| "/".into()),
            user,
            groups: sc
                .supplemental_groups
                .iter()
                .map(|g| g.to_string())
                .collect(),
            terminal: c.tty,
            stdin: c.stdin,
            capabilities: caps,
            no_new_privileges: sc.no_new_privs,
            rlimits: Vec::new(),
            oom_score_adj: oom_score(res.oom_score_adj, host),
        },
        mounts,
        devices,
        resources: resources(&res)?,
        cgroup_parent: pod.cgroup_parent.clone(),
        security: SecurityConfig {
            privileged,
            seccomp,
            readonly_rootfs: sc.readonly_rootfs,
            sysctls: pod.sysctls.clone(),
            masked_paths: Some(sc.masked_paths.clone()).filter(|p| !p.is_empty()),
            readonly_paths: Some(sc.readonly_paths.clone()).filter(|p| !p.is_empty()),
        },
        namespaces: silo_engine::NamespaceConfig {
            pid,
            ..Default::default()
        },
        pod: Some(pod_id.to_string()),
        labels: sorted(&c.labels),
        log: LogConfig {
            enabled: !log_path.is_empty(),
            cri_path: Some(PathBuf::from(&log_path)).filter(|_| !log_path.is_empty()),
            ..Default::default()
        },
        ..Default::default()
    };
    let record = ContainerRecord {
        name: meta.name.clone(),
        attempt: meta.attempt,
        annotations: sorted(&c.annotations),
        image: config.image.name.clone(),
        log_path,
        mounts: recorded,
    };
    Ok((config, record))
}

#[cfg(test)]
mod tests;

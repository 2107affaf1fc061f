//! Docker's container create request (Config + HostConfig + the image's
//! config) translated into the engine's [`ContainerConfig`], with
//! Docker's defaults, Docker's rules (400 naming the field) for what is
//! wrong, and a 400 naming the field for what silo does not support:
//! nothing is accepted and ignored.

use crate::{invalid, Docker, Result};
use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, HostConfig, MountType, PortBinding,
    RestartPolicyNameEnum,
};
use silo_engine::{
    ContainerConfig, CreateRequest, ImageRef, MountRequest, NamespaceConfig, NetworkMode,
    ProcessConfig, RestartPolicy, SeccompPolicy, SecurityConfig, Sharing,
};
use silo_network::ports::{PortRequest, Protocol};
use std::collections::HashMap;
use std::time::Duration;

/// The name under which the adapter keeps a container's create request.
pub(crate) const EXTENSION: &str = "docker";

/// What the image contributes to a container.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

impl ImageDefaults {
    pub fn of(image: &silo_storage::Image) -> ImageDefaults {
        let ic = &image.config.config;
        ImageDefaults {
            env: ic.env.clone().unwrap_or_default(),
            cmd: ic.cmd.clone().unwrap_or_default(),
            entrypoint: ic.entrypoint.clone().unwrap_or_default(),
            working_dir: ic.working_dir.clone().unwrap_or_default(),
            user: ic.user.clone().unwrap_or_default(),
        }
    }
}

/// Docker's default capabilities + CapAdd − CapDrop ("ALL" allowed on
/// either side; the `CAP_` prefix is optional); privileged gets all.
pub(crate) fn caps(hc: &HostConfig) -> Result<Vec<String>> {
    let all = || silo_engine::ALL_CAPS.iter().map(|s| s.to_string());
    if hc.privileged == Some(true) {
        return Ok(all().collect());
    }
    let norm = |c: &String| {
        let up = c.trim().to_ascii_uppercase();
        if up == "ALL" || up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    let add: Vec<String> = hc.cap_add.iter().flatten().map(norm).collect();
    let drop: Vec<String> = hc.cap_drop.iter().flatten().map(norm).collect();
    for (field, list) in [("HostConfig.CapAdd", &add), ("HostConfig.CapDrop", &drop)] {
        for c in list {
            if c != "ALL" && !silo_engine::ALL_CAPS.contains(&c.as_str()) {
                return Err(invalid(
                    field,
                    format!("{field}: unknown capability: {c:?}"),
                ));
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
        set = all()
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
pub(crate) struct SecurityOpts {
    pub seccomp: SeccompPolicy,
    pub no_new_privileges: bool,
}

/// Parses SecurityOpt (a seccomp profile is resolved for `caps`).
pub(crate) fn security_opts(hc: &HostConfig, caps: &[String]) -> Result<SecurityOpts> {
    let field = "HostConfig.SecurityOpt";
    let mut seccomp = SeccompPolicy::Default;
    let mut nnp = false;
    for opt in hc.security_opt.iter().flatten() {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match key {
            "seccomp" => {
                seccomp = if value == "unconfined" {
                    SeccompPolicy::Unconfined
                } else if value.trim_start().starts_with('{') {
                    let p = silo_seccomp::resolve_docker_profile(value.as_bytes(), caps)
                        .map_err(|e| invalid(field, format!("{field}: seccomp profile: {e}")))?;
                    SeccompPolicy::Profile(Box::new(p))
                } else if value == "builtin" || value == "default" {
                    SeccompPolicy::Default
                } else {
                    return Err(invalid(
                        field,
                        format!("{field}: seccomp={value:?}: expected \"unconfined\" or the profile's JSON content"),
                    ));
                }
            }
            "no-new-privileges" => {
                nnp = match value {
                    "" | "true" => true,
                    "false" => false,
                    v => {
                        return Err(invalid(
                            field,
                            format!("{field}: invalid no-new-privileges value {v:?}"),
                        ))
                    }
                }
            }
            // No LSMs on this host: accepted and ignored, like dockerd without AppArmor/SELinux.
            "apparmor" | "label" => {}
            _ => {
                return Err(invalid(
                    field,
                    format!("{field}: invalid --security-opt: {opt:?}"),
                ))
            }
        }
    }
    Ok(SecurityOpts {
        seccomp,
        no_new_privileges: nnp,
    })
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
        return Err(invalid(field, format!("{field}: invalid port {port:?}: the port must be a number from 1 to 65535 with an optional /tcp, /udp or /sctp")));
    }
    Ok(())
}

/// A namespace mode: `container:<name>` or one of `plain`.
enum Mode<'a> {
    Plain(&'a str),
    Container(&'a str),
}

fn mode(v: &Option<String>) -> Mode<'_> {
    let v = v.as_deref().unwrap_or("");
    match v.strip_prefix("container:") {
        Some(t) => Mode::Container(t),
        None => Mode::Plain(v),
    }
}

pub(crate) fn network_mode_of(hc: &HostConfig) -> Result<NetworkMode> {
    network_mode(hc, None)
}

/// `HostConfig.NetworkMode` with `NetworkingConfig.EndpointsConfig`: a
/// network name joins that network (with the aliases and IPv4 address its
/// endpoint settings give), and the other networks listed there too.
pub(crate) fn network_mode(
    hc: &HostConfig,
    net: Option<&bollard_stubs::models::NetworkingConfig>,
) -> Result<NetworkMode> {
    let field = "HostConfig.NetworkMode";
    let join = |name: &str| {
        endpoint_join(
            name,
            net.and_then(|n| n.endpoints_config.as_ref())
                .and_then(|e| e.get(name)),
        )
    };
    match mode(&hc.network_mode) {
        Mode::Plain(name @ ("" | "default" | "bridge" | "nat")) => {
            // Settings for the default network: a MAC is honoured; aliases
            // and addresses are for user networks only (as in Docker).
            let eps = net.and_then(|n| n.endpoints_config.as_ref());
            let settings = ["default", "bridge", "nat", name]
                .iter()
                .find_map(|k| eps.and_then(|e| e.get(*k)));
            let Some(st) = settings else {
                return Ok(NetworkMode::Default);
            };
            if st.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
                return Err(invalid(
                    "NetworkingConfig.EndpointsConfig",
                    "network-scoped aliases are supported only for containers in user-defined networks",
                ));
            }
            let ipam = st.ipam_config.as_ref();
            if ipam.is_some_and(|i| {
                i.ipv4_address.as_ref().is_some_and(|a| !a.is_empty())
                    || i.ipv6_address.as_ref().is_some_and(|a| !a.is_empty())
            }) {
                return Err(invalid(
                    "NetworkingConfig.EndpointsConfig",
                    "user specified IP address is supported on user defined networks only",
                ));
            }
            let j = endpoint_join(silo_network::service::DEFAULT_NETWORK, Some(st))?;
            if j.mac.is_none() {
                return Ok(NetworkMode::Default);
            }
            Ok(NetworkMode::Networks(vec![j]))
        }
        Mode::Plain("none") => Ok(NetworkMode::None),
        Mode::Plain("host") => Ok(NetworkMode::Host),
        Mode::Container(t) if !t.is_empty() => Ok(NetworkMode::Container(t.to_string())),
        Mode::Plain(name) if !name.contains(':') => {
            let mut joins = vec![join(name)?];
            let mut extra: Vec<&String> = net
                .and_then(|n| n.endpoints_config.as_ref())
                .map(|e| e.keys().filter(|k| k.as_str() != name).collect())
                .unwrap_or_default();
            extra.sort();
            for other in extra {
                joins.push(join(other)?);
            }
            Ok(NetworkMode::Networks(joins))
        }
        _ => Err(invalid(
            field,
            format!(
                "{field} {:?} is not supported by silo (use default, bridge, none, host, container:<name> or a network's name)",
                hc.network_mode.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// One network a container joins, with the endpoint settings Docker gives
/// for it (aliases, an IPv4 address); settings silo cannot honour are
/// refused.
pub(crate) fn endpoint_join(
    name: &str,
    settings: Option<&bollard_stubs::models::EndpointSettings>,
) -> Result<silo_engine::NetworkJoin> {
    if let Some(st) = settings {
        let ipam = st.ipam_config.as_ref();
        let refused = [
            (
                "DriverOpts",
                st.driver_opts.as_ref().is_some_and(|d| !d.is_empty()),
            ),
            (
                "IPAMConfig.LinkLocalIPs",
                ipam.and_then(|i| i.link_local_ips.as_ref())
                    .is_some_and(|a| !a.is_empty()),
            ),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, given)| *given) {
            return Err(invalid(
                "NetworkingConfig.EndpointsConfig",
                format!(
                    "NetworkingConfig.EndpointsConfig.{name}.{field} is not supported by silo yet"
                ),
            ));
        }
    }
    let ip = settings
        .and_then(|s| s.ipam_config.as_ref())
        .and_then(|i| i.ipv4_address.as_deref())
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse().map_err(|_| {
                invalid(
                    "NetworkingConfig.EndpointsConfig",
                    format!("invalid IPv4 address {a:?} for network {name}"),
                )
            })
        })
        .transpose()?;
    let ip6 = settings
        .and_then(|s| s.ipam_config.as_ref())
        .and_then(|i| i.ipv6_address.as_deref())
        .filter(|a| !a.is_empty())
        .map(|a| match a.parse::<std::net::IpAddr>() {
            Ok(ip @ std::net::IpAddr::V6(_)) => Ok(ip),
            _ => Err(invalid(
                "NetworkingConfig.EndpointsConfig",
                format!("invalid IPv6 address {a:?} for network {name}"),
            )),
        })
        .transpose()?;
    let mac = settings
        .and_then(|s| s.mac_address.as_deref())
        .filter(|m| !m.is_empty())
        .map(|m| {
            parse_mac(
                m,
                &format!("NetworkingConfig.EndpointsConfig.{name}.MacAddress"),
            )
        })
        .transpose()?;
    Ok(silo_engine::NetworkJoin {
        network: name.to_string(),
        aliases: settings.and_then(|s| s.aliases.clone()).unwrap_or_default(),
        ip,
        ip6,
        mac,
    })
}

/// Moves a top-level `MacAddress` (API < 1.44) to the endpoint settings
/// of the container's network, as dockerd does, unless those give one.
pub fn legacy_mac_address(body: &mut ContainerCreateBody, mac: &str) {
    let net = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let eps = body
        .networking_config
        .get_or_insert_with(Default::default)
        .endpoints_config
        .get_or_insert_with(Default::default);
    let st = eps.entry(net).or_default();
    if st.mac_address.as_deref().unwrap_or("").is_empty() {
        st.mac_address = Some(mac.to_string());
    }
}

/// A unicast MAC address (`02:42:ac:11:00:02`).
pub(crate) fn parse_mac(m: &str, field: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = m
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok().filter(|_| b.len() == 2))
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default();
    match <[u8; 6]>::try_from(bytes) {
        Ok(mac) if mac[0] & 1 == 0 && mac != [0; 6] => Ok(mac),
        Ok(_) => Err(invalid(
            field,
            format!("{field}: {m} is not a unicast MAC address"),
        )),
        Err(_) => Err(invalid(
            field,
            format!("{field}: invalid MAC address {m:?}"),
        )),
    }
}

/// IpcMode, PidMode or UTSMode as far as they can be read (for records
/// written before the modes were checked): host, container:<id>, else private.
pub(crate) fn sharing_of(v: &Option<String>) -> Sharing {
    match mode(v) {
        Mode::Plain("host") => Sharing::Host,
        Mode::Container(t) if !t.is_empty() => Sharing::Container(t.to_string()),
        _ => Sharing::Private,
    }
}

/// IpcMode, PidMode or UTSMode: `allowed` plain modes mean private.
fn sharing(v: &Option<String>, field: &str, allowed: &[&str], container: bool) -> Result<Sharing> {
    match mode(v) {
        Mode::Plain("host") => Ok(Sharing::Host),
        Mode::Plain(p) if p.is_empty() || allowed.contains(&p) => Ok(Sharing::Private),
        Mode::Container(t) if container && !t.is_empty() => Ok(Sharing::Container(t.to_string())),
        _ => Err(invalid(
            field,
            format!(
                "{field} {:?} is not supported by silo (use {}host{})",
                v.as_deref().unwrap_or(""),
                allowed.iter().map(|a| format!("{a}, ")).collect::<String>(),
                if container {
                    " or container:<name>"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// Rejects what silo cannot honour (400 naming the field) and returns
/// Docker-style warnings. Runs before anything is created.
pub(crate) fn validate(body: &ContainerCreateBody) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let hc = body.host_config.clone().unwrap_or_default();
    network_mode(&hc, body.networking_config.as_ref())?;
    if matches!(mode(&hc.network_mode), Mode::Container(_))
        && body.hostname.as_deref().is_some_and(|h| !h.is_empty())
    {
        return Err(invalid(
            "Config.Hostname",
            "conflicting options: hostname and the network mode",
        ));
    }
    for port in body.exposed_ports.iter().flatten() {
        check_port(port, "Config.ExposedPorts")?;
    }
    let publishes = hc.publish_all_ports == Some(true)
        || hc
            .port_bindings
            .iter()
            .flatten()
            .any(|(_, b)| b.as_ref().is_some_and(|b| !b.is_empty()));
    if publishes && hc.network_mode.as_deref() == Some("host") {
        warnings.push("Published ports are discarded when using host network mode".to_string());
    }
    ports(&hc, &[], &[])?;
    dns(&hc)?;
    extra_hosts(&hc)?;
    sharing(
        &hc.ipc_mode,
        "HostConfig.IpcMode",
        &["private", "shareable"],
        true,
    )?;
    sharing(&hc.pid_mode, "HostConfig.PidMode", &["private"], true)?;
    sharing(&hc.uts_mode, "HostConfig.UTSMode", &[], false)?;
    let unsupported: [(&str, bool); 5] = [
        ("HostConfig.DeviceRequests", given(&hc.device_requests)),
        ("HostConfig.CgroupParent", given(&hc.cgroup_parent)),
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
            return Err(invalid(
                field,
                format!("{field} is not supported by silo yet"),
            ));
        }
    }
    if let Some(rt) = hc.runtime.as_deref() {
        if !matches!(rt, "" | "silo" | "runc") {
            return Err(invalid(
                "HostConfig.Runtime",
                format!("HostConfig.Runtime: unknown runtime {rt:?} (only \"silo\")"),
            ));
        }
    }
    restart_policy(&hc)?;
    crate::health::validate(body.healthcheck.as_ref())?;
    if let Some(m) = hc.memory {
        if m != 0 && m < 6 * 1024 * 1024 {
            return Err(invalid(
                "HostConfig.Memory",
                "HostConfig.Memory: minimum memory limit allowed is 6MB",
            ));
        }
    }
    if hc.nano_cpus.unwrap_or(0) != 0
        && (hc.cpu_quota.unwrap_or(0) != 0 || hc.cpu_period.unwrap_or(0) != 0)
    {
        return Err(invalid("HostConfig.NanoCpus", "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set (HostConfig.NanoCpus)"));
    }
    if let Some(s) = body.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        crate::signal(s)?;
    }
    let caps = caps(&hc)?;
    security_opts(&hc, &caps)?;
    Ok(warnings)
}

/// RestartPolicy: no, always, unless-stopped, on-failure[:max].
pub(crate) fn restart_policy(hc: &HostConfig) -> Result<RestartPolicy> {
    use RestartPolicyNameEnum as R;
    let Some(rp) = &hc.restart_policy else {
        return Ok(RestartPolicy::No);
    };
    let name = rp.name.unwrap_or(R::EMPTY);
    if hc.auto_remove == Some(true) && !matches!(name, R::EMPTY | R::NO) {
        return Err(invalid(
            "HostConfig.RestartPolicy",
            "conflicting options: cannot specify both --restart and --rm (HostConfig.RestartPolicy)",
        ));
    }
    let max = rp.maximum_retry_count.unwrap_or(0);
    if max != 0 && name != R::ON_FAILURE {
        return Err(invalid(
            "HostConfig.RestartPolicy.MaximumRetryCount",
            "HostConfig.RestartPolicy.MaximumRetryCount: only allowed with on-failure",
        ));
    }
    if max < 0 {
        return Err(invalid(
            "HostConfig.RestartPolicy.MaximumRetryCount",
            "HostConfig.RestartPolicy.MaximumRetryCount: must not be negative",
        ));
    }
    Ok(match name {
        R::ALWAYS => RestartPolicy::Always,
        R::UNLESS_STOPPED => RestartPolicy::UnlessStopped,
        R::ON_FAILURE => RestartPolicy::OnFailure {
            max_retries: u32::try_from(max).unwrap_or(u32::MAX),
        },
        _ => RestartPolicy::No,
    })
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

/// The cgroup resources from HostConfig (also used by update).
pub(crate) fn resources(hc: &HostConfig) -> Result<silo_oci::Resources> {
    use silo_oci::{Cpu, DeviceCgroup, Memory, Pids, Resources};
    let privileged = hc.privileged == Some(true);
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
            return Err(invalid("HostConfig.MemorySwap", "HostConfig.MemorySwap: minimum memoryswap limit should be larger than memory limit"));
        }
    }
    if mem.swap.is_some() && mem.limit.is_none() {
        return Err(invalid("HostConfig.MemorySwap", "HostConfig.MemorySwap: you should always set the memory limit when using a memoryswap limit"));
    }
    if let Some(sw) = hc.memory_swappiness.filter(|s| *s >= 0) {
        if sw > 100 {
            return Err(invalid(
                "HostConfig.MemorySwappiness",
                format!("HostConfig.MemorySwappiness: {sw} is not in [0, 100]"),
            ));
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
            return Err(invalid(
                "HostConfig.NanoCpus",
                "HostConfig.NanoCpus: must not be negative",
            ));
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
            return Err(invalid(
                "HostConfig.CpuShares",
                "HostConfig.CpuShares: must not be negative",
            ));
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
            return Err(invalid(
                "HostConfig.BlkioWeight",
                format!("HostConfig.BlkioWeight: {w} is not in [10, 1000]"),
            ));
        }
        r.block_io = Some(silo_oci::BlockIo {
            weight: Some(w),
            ..Default::default()
        });
    }
    Ok(r)
}

/// The mounts, in Docker's order: Binds, Mounts, Tmpfs, then anonymous
/// volumes for Config.Volumes at paths no other mount covers.
pub(crate) fn mounts(body: &ContainerCreateBody) -> Result<Vec<MountRequest>> {
    let hc = body.host_config.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let claim = |targets: &mut Vec<String>, dst: &str, field: &str| -> Result<()> {
        if !dst.starts_with('/') {
            return Err(invalid(
                field,
                format!("{field}: invalid mount destination {dst:?}: it must be an absolute path"),
            ));
        }
        if dst == "/" {
            return Err(invalid(
                field,
                format!("{field}: invalid mount destination \"/\""),
            ));
        }
        if targets.iter().any(|t| t == dst) {
            return Err(invalid(
                field,
                format!("{field}: duplicate mount point: {dst}"),
            ));
        }
        targets.push(dst.to_string());
        Ok(())
    };
    for b in hc.binds.iter().flatten() {
        let field = "HostConfig.Binds";
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => {
                return Err(invalid(
                    field,
                    format!("{field}: invalid volume specification: {b:?}"),
                ))
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
                    return Err(invalid(
                        field,
                        format!("{field}: invalid mode {o:?} in {b:?}"),
                    ))
                }
            }
        }
        claim(&mut targets, dst, field)?;
        if src.starts_with('/') {
            // Docker's -v creates a missing host directory.
            out.push(MountRequest::Bind {
                source: src.to_string(),
                destination: dst.to_string(),
                readonly: !rw,
                propagation,
                create_source: true,
                mode: opts.to_string(),
            });
        } else {
            if src.is_empty() {
                return Err(invalid(field, format!("{field}: empty source in {b:?}")));
            }
            out.push(MountRequest::Volume {
                name: Some(src.to_string()),
                destination: dst.to_string(),
                readonly: !rw,
            });
        }
    }
    for m in hc.mounts.iter().flatten() {
        let dst = m.target.clone().unwrap_or_default();
        claim(&mut targets, &dst, "HostConfig.Mounts.Target")?;
        refuse_mount_options(m)?;
        let readonly = m.read_only == Some(true);
        match m.typ {
            Some(MountType::BIND) => {
                let src = m.source.clone().unwrap_or_default();
                if !src.starts_with('/') {
                    return Err(invalid(
                        "HostConfig.Mounts.Source",
                        format!("HostConfig.Mounts.Source: invalid bind source {src:?}: it must be an absolute path"),
                    ));
                }
                let bo = m.bind_options.clone().unwrap_or_default();
                let propagation = bo
                    .propagation
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rprivate".into());
                out.push(MountRequest::Bind {
                    source: src,
                    destination: dst,
                    readonly,
                    propagation,
                    create_source: bo.create_mountpoint == Some(true),
                    mode: String::new(),
                });
            }
            Some(MountType::VOLUME) => out.push(MountRequest::Volume {
                name: m.source.clone().filter(|s| !s.is_empty()),
                destination: dst,
                readonly,
            }),
            Some(MountType::TMPFS) => {
                let mut opts = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
                if let Some(t) = &m.tmpfs_options {
                    if let Some(sz) = t.size_bytes.filter(|s| *s > 0) {
                        opts.push(format!("size={sz}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m > 0) {
                        opts.push(format!("mode={mode:o}"));
                    }
                }
                if readonly {
                    opts.push("ro".into());
                }
                out.push(MountRequest::Tmpfs {
                    destination: dst,
                    options: opts,
                });
            }
            other => {
                return Err(invalid(
                    "HostConfig.Mounts.Type",
                    format!(
                        "HostConfig.Mounts.Type: mount type {:?} is not supported by silo",
                        other.map(|t| t.to_string()).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    let mut tmpfs: Vec<(&String, &String)> = hc.tmpfs.iter().flatten().collect();
    tmpfs.sort();
    for (dst, opts) in tmpfs {
        let field = "HostConfig.Tmpfs";
        claim(&mut targets, dst, field)?;
        let mut o = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
        for x in opts.split(',').filter(|x| !x.is_empty()) {
            if let Some(sz) = x.strip_prefix("size=") {
                let bytes = silo_units::parse_size(sz).map_err(|_| {
                    invalid(field, format!("{field}: invalid size {sz:?} for {dst}"))
                })?;
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
        out.push(MountRequest::Tmpfs {
            destination: dst.clone(),
            options: o,
        });
    }
    let mut vols: Vec<String> = body.volumes.clone().unwrap_or_default();
    vols.sort();
    for dst in vols {
        if targets.contains(&dst) {
            continue;
        }
        claim(&mut targets, &dst, "Config.Volumes")?;
        out.push(MountRequest::Volume {
            name: None,
            destination: dst,
            readonly: false,
        });
    }
    Ok(out)
}

/// The process: Entrypoint + Cmd (request over image; a request
/// Entrypoint drops the image's Cmd), environment with Docker's
/// defaults, working directory, limits, capabilities.
pub(crate) fn process(
    body: &ContainerCreateBody,
    image: &ImageDefaults,
    hostname: &str,
) -> Result<ProcessConfig> {
    let hc = body.host_config.clone().unwrap_or_default();
    let req_cmd = body.cmd.clone().filter(|c| !c.is_empty());
    let (entrypoint, cmd) = match body.entrypoint.clone() {
        Some(ep) if !(ep.len() == 1 && ep[0].is_empty()) => (ep, req_cmd.unwrap_or_default()),
        Some(_) => (Vec::new(), req_cmd.unwrap_or_default()),
        None => (
            image.entrypoint.clone(),
            req_cmd.unwrap_or_else(|| image.cmd.clone()),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(invalid("Config.Cmd", "no command specified (Config.Cmd and Config.Entrypoint are empty, and the image has none)"));
    }
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
    let cwd = body
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(invalid(
            "Config.WorkingDir",
            format!("Config.WorkingDir: the working directory {cwd:?} is invalid, it needs to be an absolute path"),
        ));
    }
    let mut rlimits = Vec::new();
    for u in hc.ulimits.iter().flatten() {
        let field = "HostConfig.Ulimits";
        let name = u.name.clone().unwrap_or_default();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                field,
                format!("{field}: invalid ulimit name {name:?}"),
            ));
        }
        let soft = u.soft.unwrap_or(0);
        let hard = u.hard.unwrap_or(soft);
        if soft < -1 || hard < -1 || (hard >= 0 && soft > hard) {
            return Err(invalid(
                field,
                format!("{field}: {name}: soft limit {soft} must not exceed hard limit {hard}"),
            ));
        }
        let v = |x: i64| if x < 0 { u64::MAX } else { x as u64 };
        rlimits.push(silo_oci::Rlimit {
            typ: format!("RLIMIT_{}", name.to_ascii_uppercase()),
            soft: v(soft),
            hard: v(hard),
        });
    }
    let oom_score_adj = match hc.oom_score_adj {
        Some(v) if !(-1000..=1000).contains(&v) => {
            return Err(invalid(
                "HostConfig.OomScoreAdj",
                format!("HostConfig.OomScoreAdj: {v} is out of range [-1000, 1000]"),
            ))
        }
        Some(0) | None => None,
        Some(v) => Some(v as i32),
    };
    let caps = caps(&hc)?;
    let sec = security_opts(&hc, &caps)?;
    Ok(ProcessConfig {
        args,
        env,
        cwd,
        user: body
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| image.user.clone()),
        groups: hc.group_add.clone().unwrap_or_default(),
        terminal: tty,
        stdin: body.open_stdin == Some(true),
        capabilities: caps,
        no_new_privileges: sec.no_new_privileges,
        rlimits,
        oom_score_adj,
    })
}

/// The whole translation of a (validated, healthcheck-merged) request.
pub(crate) fn config(
    body: &ContainerCreateBody,
    image: &silo_storage::Image,
    image_name: &str,
    hostname: &str,
) -> Result<ContainerConfig> {
    let hc = body.host_config.clone().unwrap_or_default();
    let defaults = ImageDefaults::of(image);
    let process = process(body, &defaults, hostname)?;
    let shm_size = match hc.shm_size {
        Some(s) if s < 0 => {
            return Err(invalid(
                "HostConfig.ShmSize",
                "HostConfig.ShmSize: must not be negative",
            ))
        }
        Some(s) => s as u64,
        None => 0,
    };
    let sec = security_opts(&hc, &process.capabilities)?;
    let mut sysctls = std::collections::BTreeMap::new();
    for (k, v) in hc.sysctls.iter().flatten() {
        sysctls.insert(k.clone(), v.clone());
    }
    if hc.network_mode.as_deref() == Some("host") {
        if let Some(k) = sysctls.keys().find(|k| k.starts_with("net.")) {
            return Err(invalid(
                "HostConfig.Sysctls",
                format!("HostConfig.Sysctls: {k} cannot be set with the host network namespace"),
            ));
        }
    }
    let stop_signal = match body.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(crate::signal(s)?),
        None => None,
    };
    Ok(ContainerConfig {
        image: ImageRef {
            name: image_name.to_string(),
            id: image.id.clone(),
        },
        process,
        hostname: hostname.to_string(),
        domainname: body.domainname.clone().unwrap_or_default(),
        mounts: mounts(body)?,
        devices: devices(&hc)?,
        shm_size,
        resources: {
            let mut r = resources(&hc)?;
            r.devices.extend(device_cgroup_rules(&hc)?);
            r
        },
        cgroup_parent: None,
        security: SecurityConfig {
            privileged: hc.privileged == Some(true),
            seccomp: sec.seccomp,
            readonly_rootfs: hc.readonly_rootfs == Some(true),
            sysctls,
            masked_paths: None,
            readonly_paths: None,
        },
        namespaces: NamespaceConfig {
            network: network_mode(&hc, body.networking_config.as_ref())?,
            ipc: sharing(
                &hc.ipc_mode,
                "HostConfig.IpcMode",
                &["private", "shareable"],
                true,
            )?,
            pid: sharing(&hc.pid_mode, "HostConfig.PidMode", &["private"], true)?,
            uts: sharing(&hc.uts_mode, "HostConfig.UTSMode", &[], false)?,
        },
        pod: None,
        init: hc.init == Some(true),
        auto_remove: hc.auto_remove == Some(true),
        restart: restart_policy(&hc)?,
        health: crate::health::policy(body),
        stop_signal,
        stop_timeout: body.stop_timeout,
        labels: body
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        storage: storage_opts(&hc)?,
        log: log_config(&hc)?,
        links: links(&hc, body.networking_config.as_ref())?,
        ports: if hc.network_mode.as_deref() == Some("host") {
            Vec::new()
        } else {
            let image_exposed: Vec<String> = image
                .config
                .config
                .exposed_ports
                .iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            ports(
                &hc,
                body.exposed_ports.as_deref().unwrap_or(&[]),
                &image_exposed,
            )?
        },
        dns: dns(&hc)?,
        extra_hosts: extra_hosts(&hc)?,
    })
}

/// A port key (`80`, `80/udp`) as (port, protocol); ranges are refused
/// here (the docker CLI sends one key per port).
fn port_key(key: &str, field: &str) -> Result<(u16, Protocol)> {
    let (num, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = num.parse::<u16>().ok().filter(|p| *p > 0);
    match (port, proto.parse::<Protocol>()) {
        (Some(p), Ok(proto)) => Ok((p, proto)),
        _ => Err(invalid(
            field,
            format!("{field}: invalid port {key:?}: want a port from 1 to 65535 with an optional /tcp, /udp or /sctp"),
        )),
    }
}

/// `HostConfig.PortBindings` and `PublishAllPorts` (`-p`, `-P`) as the
/// ports to publish: a binding without a host port gets a free one, a
/// host port range (`8000-8010`) the first free port of it, and `-P` a
/// free port for every exposed port (the container's and the image's)
/// that has no binding.
pub(crate) fn ports(
    hc: &HostConfig,
    exposed: &[String],
    image_exposed: &[String],
) -> Result<Vec<PortRequest>> {
    const FIELD: &str = "HostConfig.PortBindings";
    let mut out = Vec::new();
    let mut bound = Vec::new();
    let mut keys: Vec<(&String, &Option<Vec<PortBinding>>)> =
        hc.port_bindings.iter().flatten().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, bindings) in keys {
        let (container_port, protocol) = port_key(key, FIELD)?;
        for b in bindings.iter().flatten() {
            let ip = b.host_ip.as_deref().unwrap_or("");
            let host_ip = match ip {
                "" | "0.0.0.0" => None,
                ip => match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(v4)) => Some(v4),
                    Ok(std::net::IpAddr::V6(_)) => {
                        return Err(invalid(
                            FIELD,
                            format!("{FIELD} ({key}): host address {ip}: publishing on IPv6 addresses is not supported by silo yet"),
                        ))
                    }
                    Err(_) => {
                        return Err(invalid(
                            FIELD,
                            format!("{FIELD} ({key}): invalid host address {ip:?}"),
                        ))
                    }
                },
            };
            let hp = b.host_port.as_deref().unwrap_or("");
            let num = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
            let (first, last) = match hp.split_once('-') {
                _ if hp.is_empty() => (0, 0),
                Some((a, b)) => match (num(a), num(b)) {
                    (Some(a), Some(b)) if a <= b => (a, b),
                    _ => {
                        return Err(invalid(
                            FIELD,
                            format!("{FIELD} ({key}): invalid host port range {hp:?}"),
                        ))
                    }
                },
                None => match num(hp) {
                    Some(p) => (p, p),
                    None => {
                        return Err(invalid(
                            FIELD,
                            format!("{FIELD} ({key}): invalid host port {hp:?} (1-65535)"),
                        ))
                    }
                },
            };
            out.push(PortRequest {
                protocol,
                host_ip,
                host_first: first,
                host_last: last,
                container_port,
            });
            bound.push((container_port, protocol));
        }
    }
    if hc.publish_all_ports == Some(true) {
        let mut all: Vec<(u16, Protocol)> = Vec::new();
        for key in exposed.iter().chain(image_exposed) {
            let k = port_key(key, "Config.ExposedPorts")?;
            if !all.contains(&k) && !bound.contains(&k) {
                all.push(k);
            }
        }
        all.sort();
        out.extend(
            all.into_iter()
                .map(|(container_port, protocol)| PortRequest {
                    protocol,
                    host_ip: None,
                    host_first: 0,
                    host_last: 0,
                    container_port,
                }),
        );
    }
    Ok(out)
}

/// `HostConfig.Dns`, `DnsSearch`, `DnsOptions`.
pub(crate) fn dns(hc: &HostConfig) -> Result<silo_engine::model::DnsConfig> {
    let mut servers = Vec::new();
    for d in hc.dns.iter().flatten() {
        servers.push(d.parse().map_err(|_| {
            invalid(
                "HostConfig.Dns",
                format!("HostConfig.Dns: {d:?} is not an IP address"),
            )
        })?);
    }
    let search: Vec<String> = hc.dns_search.clone().unwrap_or_default();
    if let Some(bad) = search
        .iter()
        .find(|d| d.is_empty() || d.len() > 255 || d.contains(char::is_whitespace))
    {
        return Err(invalid(
            "HostConfig.DnsSearch",
            format!("HostConfig.DnsSearch: {bad:?} is not a domain"),
        ));
    }
    let options: Vec<String> = hc.dns_options.clone().unwrap_or_default();
    if let Some(bad) = options
        .iter()
        .find(|o| o.is_empty() || o.contains(char::is_whitespace))
    {
        return Err(invalid(
            "HostConfig.DnsOptions",
            format!("HostConfig.DnsOptions: {bad:?} is not a resolver option"),
        ));
    }
    Ok(silo_engine::model::DnsConfig {
        servers,
        search,
        options,
    })
}

/// `HostConfig.ExtraHosts` (`--add-host NAME:IP`, `NAME:host-gateway`).
pub(crate) fn extra_hosts(hc: &HostConfig) -> Result<Vec<(String, String)>> {
    const FIELD: &str = "HostConfig.ExtraHosts";
    hc.extra_hosts
        .iter()
        .flatten()
        .map(|e| {
            let (name, addr) =
                e.split_once(':')
                    .or_else(|| e.split_once('='))
                    .ok_or_else(|| {
                        invalid(
                            FIELD,
                            format!("{FIELD}: invalid extra host {e:?}: want NAME:IP"),
                        )
                    })?;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            if name.is_empty()
                || name.contains(char::is_whitespace)
                || addr != "host-gateway" && addr.parse::<std::net::IpAddr>().is_err()
            {
                return Err(invalid(
                    FIELD,
                    format!("{FIELD}: invalid extra host {e:?}: want NAME:IP or NAME:host-gateway"),
                ));
            }
            Ok((name.to_string(), addr.to_string()))
        })
        .collect()
}

/// `HostConfig.Devices` (`--device /dev/x[:/dev/y[:rwm]]`): each host
/// path must be a character or block device; silo grants a device all of
/// rwm, so narrower permissions are refused rather than ignored.
pub(crate) fn devices(hc: &HostConfig) -> Result<Vec<silo_oci::Device>> {
    const FIELD: &str = "HostConfig.Devices";
    let mut out = Vec::new();
    for d in hc.devices.iter().flatten() {
        let host = d.path_on_host.clone().unwrap_or_default();
        let inside = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        let perms = d
            .cgroup_permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(FIELD, format!("invalid device mode: {perms}")));
        }
        if perms.len() != 3 || !"rwm".chars().all(|c| perms.contains(c)) {
            return Err(invalid(
                FIELD,
                format!(
                    "device {host}: permissions {perms:?} are not supported by silo yet (only rwm)"
                ),
            ));
        }
        if !host.starts_with('/') || !inside.starts_with('/') {
            return Err(invalid(
                FIELD,
                format!("device {host}:{inside}: both paths must be absolute"),
            ));
        }
        out.push(silo_engine::host_device(&host, &inside).map_err(|e| invalid(FIELD, e))?);
    }
    Ok(out)
}

/// `HostConfig.DeviceCgroupRules` (`--device-cgroup-rule 'c 1:3 rwm'`) as
/// device cgroup allow rules.
pub(crate) fn device_cgroup_rules(hc: &HostConfig) -> Result<Vec<silo_oci::DeviceCgroup>> {
    const FIELD: &str = "HostConfig.DeviceCgroupRules";
    let bad = |r: &str| invalid(FIELD, format!("invalid device cgroup rule format: '{r}'"));
    let mut out = Vec::new();
    for r in hc.device_cgroup_rules.iter().flatten() {
        let parts: Vec<&str> = r.split_whitespace().collect();
        let [typ, numbers, access] = parts.as_slice() else {
            return Err(bad(r));
        };
        if !matches!(*typ, "a" | "b" | "c")
            || access.is_empty()
            || !access.chars().all(|c| "rwm".contains(c))
        {
            return Err(bad(r));
        }
        let (major, minor) = numbers.split_once(':').ok_or_else(|| bad(r))?;
        let num = |s: &str| -> Result<Option<i64>> {
            if s == "*" {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| bad(r))
            }
        };
        out.push(silo_oci::DeviceCgroup {
            allow: true,
            typ: Some(typ.to_string()),
            major: num(major)?,
            minor: num(minor)?,
            access: Some(access.to_string()),
        });
    }
    Ok(out)
}

/// The parts of a `HostConfig.Mounts` entry silo does not honour yet,
/// refused (never accepted and ignored).
fn refuse_mount_options(m: &bollard_stubs::models::Mount) -> Result<()> {
    let no = |what: &str| {
        Err(invalid(
            "HostConfig.Mounts",
            format!("HostConfig.Mounts: {what} is not supported by silo yet"),
        ))
    };
    if let Some(b) = &m.bind_options {
        if b.non_recursive == Some(true) {
            return no("BindOptions.NonRecursive");
        }
        if b.read_only_non_recursive == Some(true) || b.read_only_force_recursive == Some(true) {
            return no("BindOptions.ReadOnlyNonRecursive/ReadOnlyForceRecursive");
        }
        if m.typ != Some(MountType::BIND) {
            return no("BindOptions on a mount that is not a bind");
        }
    }
    if let Some(v) = &m.volume_options {
        if m.typ != Some(MountType::VOLUME) {
            return no("VolumeOptions on a mount that is not a volume");
        }
        if v.subpath.as_deref().is_some_and(|s| !s.is_empty()) {
            return no("VolumeOptions.Subpath");
        }
        if v.labels.as_ref().is_some_and(|l| !l.is_empty()) {
            return no("VolumeOptions.Labels (create the volume with its labels first)");
        }
        if let Some(d) = &v.driver_config {
            if d.name
                .as_deref()
                .is_some_and(|n| !n.is_empty() && n != "local")
                || d.options.as_ref().is_some_and(|o| !o.is_empty())
            {
                return no("VolumeOptions.DriverConfig (only the local driver, without options)");
            }
        }
    }
    if m.image_options.is_some() {
        return no("ImageOptions");
    }
    if let Some(t) = &m.tmpfs_options {
        if m.typ != Some(MountType::TMPFS) {
            return no("TmpfsOptions on a mount that is not a tmpfs");
        }
        if t.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return no("TmpfsOptions.Options");
        }
    }
    Ok(())
}

/// Docker's log driver and options as the engine's log policy: `json-file`
/// (the default) and `local` (kept in the same format, with `local`'s
/// default limits: 20 MB, 5 files) honour `max-size` and `max-file`;
/// `none` logs nothing. What silo cannot honour is refused, with dockerd's
/// message where dockerd has one.
pub(crate) fn log_config(hc: &HostConfig) -> Result<silo_engine::LogConfig> {
    const FIELD: &str = "HostConfig.LogConfig";
    let lc = hc.log_config.clone().unwrap_or_default();
    let driver = lc
        .typ
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("json-file");
    let opts = lc.config.unwrap_or_default();
    let mut out = silo_engine::LogConfig::default();
    match driver {
        "json-file" => {}
        "local" => {
            out.max_bytes = Some(20 << 20);
            out.max_files = 5;
        }
        "none" => {
            if let Some(k) = opts.keys().min() {
                return Err(invalid(
                    FIELD,
                    format!("unknown log opt '{k}' for none log driver"),
                ));
            }
            out.enabled = false;
            return Ok(out);
        }
        other => {
            return Err(invalid(
                FIELD,
                format!("logger: no log driver named '{other}' is registered"),
            ))
        }
    }
    let mut keys: Vec<&String> = opts.keys().collect();
    keys.sort();
    for k in keys {
        let v = opts[k].as_str();
        match k.as_str() {
            "max-size" => {
                let n = silo_units::parse_size(v).map_err(|e| {
                    invalid(FIELD, format!("invalid max-size {v:?} for {driver}: {e}"))
                })?;
                // -1 is dockerd's "unlimited".
                out.max_bytes = u64::try_from(n).ok().filter(|n| *n > 0);
            }
            "max-file" => {
                out.max_files = v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    invalid(FIELD, format!("max-file cannot be less than 1 (got {v:?})"))
                })?;
            }
            "compress" => match v {
                "false" | "0" => {}
                "true" | "1" => {
                    return Err(invalid(
                        FIELD,
                        "log opt 'compress': silo does not compress rotated logs yet; set compress=false",
                    ))
                }
                _ => return Err(invalid(FIELD, format!("invalid value for compress: {v:?}"))),
            },
            "labels" | "labels-regex" | "env" | "env-regex" | "tag" if driver == "json-file" => {
                return Err(invalid(
                    FIELD,
                    format!("log opt '{k}' is not supported by silo yet"),
                ))
            }
            _ => {
                return Err(invalid(
                    FIELD,
                    format!("unknown log opt '{k}' for {driver} log driver"),
                ))
            }
        }
    }
    if out.max_files > 1 && out.max_bytes.is_none() && opts.contains_key("max-file") {
        return Err(invalid(
            FIELD,
            "max-file can only be used together with max-size",
        ));
    }
    Ok(out)
}

impl Docker {
    /// `POST /containers/create`.
    pub fn create_container(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let warnings = validate(&body)?;
        let image_ref = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| invalid("Config.Image", "Config.Image: no image specified"))?;
        let image = self.engine.image(&image_ref).map_err(|_| {
            let shown = silo_storage::normalize_reference(&image_ref).unwrap_or(image_ref.clone());
            silo_engine::Error::not_found(silo_engine::Kind::Image, shown)
        })?;
        self.check_ipc_donor(&body)?;
        // The image's HEALTHCHECK fills in what the user left unset.
        let body = ContainerCreateBody {
            healthcheck: crate::health::merge(
                body.healthcheck,
                image.config.config.healthcheck.as_ref(),
            ),
            ..body
        };
        if body.host_config.as_ref().and_then(|h| h.init) == Some(true)
            && self.engine.config().init_binary.is_none()
        {
            return Err(invalid(
                "HostConfig.Init",
                "HostConfig.Init: no init binary: install Debian's tini package or start silod with --init-path",
            ));
        }
        let id = silo_sys::id::random_id();
        let hostname = body
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id.chars().take(12).collect());
        let mut config = config(&body, &image, &image_ref, &hostname)?;
        let inherited = self.volumes_from(&body, &config.mounts)?;
        config.mounts.extend(inherited);
        let created = self.engine.create(CreateRequest {
            id: Some(id),
            name: name.map(str::to_string),
            config,
            extensions: crate::extension(&body)?,
        })?;
        Ok(ContainerCreateResponse {
            id: created.id,
            warnings,
        })
    }

    /// `HostConfig.VolumesFrom` (`container[:ro|:rw]`): the volumes and
    /// binds of those containers, at the same destinations, read-only when
    /// they were or when `:ro` says so (`:rw` makes them writable).
    /// Destinations the container mounts itself keep its own.
    fn volumes_from(
        &self,
        body: &ContainerCreateBody,
        own: &[MountRequest],
    ) -> Result<Vec<MountRequest>> {
        const FIELD: &str = "HostConfig.VolumesFrom";
        let hc = body.host_config.clone().unwrap_or_default();
        let dest = |m: &MountRequest| -> String {
            match m {
                MountRequest::Bind { destination, .. }
                | MountRequest::Volume { destination, .. }
                | MountRequest::Tmpfs { destination, .. } => {
                    destination.trim_end_matches('/').to_string()
                }
            }
        };
        let mut taken: Vec<String> = own.iter().map(dest).collect();
        let mut out = Vec::new();
        for spec in hc.volumes_from.iter().flatten() {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m)),
                Some((_, m))
                    if !m.is_empty() && !m.contains('/') && spec.matches(':').count() == 1 =>
                {
                    return Err(invalid(
                        FIELD,
                        format!("{FIELD}: invalid mode {m:?} in {spec:?} (ro or rw)"),
                    ))
                }
                _ => (spec.as_str(), None),
            };
            let donor = self.engine.container(name)?;
            for m in &donor.mounts {
                let readonly = match mode {
                    Some("ro") => true,
                    Some(_) => false,
                    None => m.readonly,
                };
                let req = match m.kind {
                    silo_engine::MountKind::Volume => MountRequest::Volume {
                        name: m.name.clone(),
                        destination: m.destination.clone(),
                        readonly,
                    },
                    silo_engine::MountKind::Bind => MountRequest::Bind {
                        source: m.source.clone(),
                        destination: m.destination.clone(),
                        readonly,
                        propagation: m.propagation.clone(),
                        create_source: false,
                        mode: m.mode.clone(),
                    },
                    // A tmpfs is the donor's own memory: Docker does not share it either.
                    silo_engine::MountKind::Tmpfs => continue,
                };
                let d = dest(&req);
                if !taken.contains(&d) {
                    taken.push(d);
                    out.push(req);
                }
            }
        }
        Ok(out)
    }

    /// `IpcMode: container:<name>` needs a donor that made its IPC
    /// namespace shareable, as in Docker.
    fn check_ipc_donor(&self, body: &ContainerCreateBody) -> Result<()> {
        let hc = body.host_config.clone().unwrap_or_default();
        if let Mode::Container(t) = mode(&hc.ipc_mode) {
            let donor = self.engine.container(t)?;
            let donor_mode = crate::body_of(&donor)
                .host_config
                .and_then(|h| h.ipc_mode)
                .unwrap_or_default();
            if donor_mode != "shareable" && donor_mode != "host" {
                return Err(invalid(
                    "HostConfig.IpcMode",
                    format!("HostConfig.IpcMode: non-shareable IPC (hint: use IpcMode:shareable for the donor container {t})"),
                ));
            }
        }
        Ok(())
    }
}

/// A Go duration in nanoseconds as a [`Duration`] (0 and below: `default`).
pub(crate) fn nanos(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// `HostConfig.StorageOpt`: `size` gives the container a sandbox disk of
/// that size; no other option exists in silo.
fn storage_opts(hc: &HostConfig) -> Result<silo_engine::StorageConfig> {
    let mut out = silo_engine::StorageConfig::default();
    for (k, v) in hc.storage_opt.iter().flatten() {
        match k.to_ascii_lowercase().as_str() {
            "size" => {
                let n = silo_units::parse_size(v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        invalid(
                            "HostConfig.StorageOpt",
                            format!(
                                "invalid storage option size {v:?}: want a size such as 2G or 512m"
                            ),
                        )
                    })?;
                out.disk_size = Some(n as u64);
            }
            other => {
                return Err(invalid(
                    "HostConfig.StorageOpt",
                    format!("storage option {other:?} is not supported (only size)"),
                ))
            }
        }
    }
    Ok(out)
}

/// `HostConfig.Links`: "name:alias" or "name" (the alias is the name); a
/// leading "/" and Docker's "/container/alias" form are accepted.
/// The docker CLI puts `--link` of a container on a user network into
/// that network's endpoint settings: those count too.
fn links(
    hc: &HostConfig,
    net: Option<&bollard_stubs::models::NetworkingConfig>,
) -> Result<Vec<silo_engine::Link>> {
    let mut out: Vec<silo_engine::Link> = Vec::new();
    let from_endpoints = net
        .and_then(|n| n.endpoints_config.as_ref())
        .into_iter()
        .flat_map(|e| e.values())
        .flat_map(|st| st.links.iter().flatten());
    for l in hc.links.iter().flatten().chain(from_endpoints) {
        let (name, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
        let name = name.trim_start_matches('/');
        let alias = alias.rsplit('/').next().unwrap_or(alias);
        if name.is_empty() || alias.is_empty() {
            return Err(invalid(
                "HostConfig.Links",
                format!("invalid link {l:?}: want NAME:ALIAS"),
            ));
        }
        let link = silo_engine::Link {
            container: name.to_string(),
            alias: alias.to_string(),
        };
        if !out.contains(&link) {
            out.push(link);
        }
    }
    Ok(out)
}

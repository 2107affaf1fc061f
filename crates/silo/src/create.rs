//! `silo create` and `silo run`: turning docker's flags into a
//! ContainerCreateBody, then (for run) attach, start and wait.

use crate::api::App;
use crate::http::enc;
use crate::stream;
use crate::units::{parse_cpus, parse_size, UnitError};
use crate::Exit;
use anyhow::{Context, Result};
use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, HealthConfig, HostConfig, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use clap::{ArgAction, Args};
use std::collections::HashMap;

#[derive(Args, Debug, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Bind mount a volume (name:/path, /host:/path[:ro], or /path)
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Security options (seccomp=unconfined|<profile.json>, no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Restart policy (no, always, on-failure[:max-retries], unless-stopped)
    #[arg(long)]
    pub restart: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Storage driver options (size=SIZE: a sandbox disk of that size)
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Connect a container to a network (none, host, default)
    #[arg(long = "network", visible_alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto], ranges allowed)
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to free host ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip, host:host-gateway)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// IPv4 address on the network given with --network
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address on the network given with --network
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add a network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// Container MAC address (e.g. 02:42:ac:11:00:02)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Add a link to another container (name[:alias])
    #[arg(long)]
    pub link: Vec<String>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Sysctl options (name=value)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Set meta data on a container (key=value)
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", allow_negative_numbers = true)]
    pub health_retries: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", allow_hyphen_values = true)]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn key_value(flag: &'static str, s: &str) -> Result<(String, String), UnitError> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| UnitError::Flag {
            flag,
            value: s.to_string(),
            detail: "expected key=value".into(),
        })
}

fn parse_restart(s: &str) -> Result<RestartPolicy, UnitError> {
    let bad = |detail: &str| UnitError::Flag {
        flag: "--restart",
        value: s.to_string(),
        detail: detail.to_string(),
    };
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.parse::<i64>()
                    .map_err(|_| bad("max-retries must be a number"))?,
            ),
        ),
        None => (s, None),
    };
    let name = match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => return Err(bad("expected no, always, on-failure[:N] or unless-stopped")),
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(bad("a maximum restart count is only valid with on-failure"));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

fn parse_ulimit(s: &str) -> Result<ResourcesUlimits, UnitError> {
    let bad = |detail: &str| UnitError::Flag {
        flag: "--ulimit",
        value: s.to_string(),
        detail: detail.to_string(),
    };
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected name=soft[:hard]"))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let soft: i64 = soft
        .parse()
        .map_err(|_| bad("soft limit is not a number"))?;
    let hard: i64 = hard
        .parse()
        .map_err(|_| bad("hard limit is not a number"))?;
    if soft > hard {
        return Err(bad("soft limit is above the hard limit"));
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// `[ip:][hostPort:]containerPort[/proto]` → (container "port/proto", binding).
fn parse_publish(s: &str) -> Result<Vec<(String, PortBinding)>, UnitError> {
    let bad = |detail: &str| UnitError::Flag {
        flag: "--publish",
        value: s.to_string(),
        detail: detail.to_string(),
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad("protocol must be tcp, udp or sctp"));
    }
    // An IPv6 host address comes in brackets: [::1]:8080:80.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(r) => match r.split_once("]:") {
            Some((ip, rest)) => (ip, rest),
            None => return Err(bad("unclosed [ in the host address")),
        },
        None => ("", spec),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match (ip, parts.as_slice()) {
        ("", [c]) => ("", "", *c),
        ("", [h, c]) => ("", *h, *c),
        ("", [i, h, c]) => (*i, *h, *c),
        (ip, [h, c]) => (ip, *h, *c),
        _ => return Err(bad("expected [ip:][hostPort:]containerPort[/proto]")),
    };
    // A port or a range of ports (first-last).
    let range = |p: &str, what: &str| -> Result<(u16, u16), UnitError> {
        let num = |x: &str| x.parse::<u16>().ok().filter(|n| *n > 0);
        let r = match p.split_once('-') {
            Some((a, b)) => num(a).zip(num(b)).filter(|(a, b)| a <= b),
            None => num(p).map(|n| (n, n)),
        };
        r.ok_or_else(|| bad(&format!("invalid {what}: {p}")))
    };
    let (c0, c1) = range(ctr, "containerPort")?;
    let binding = |host_port: String| PortBinding {
        host_ip: Some(ip.to_string()),
        host_port: Some(host_port),
    };
    if host.is_empty() {
        return Ok((c0..=c1)
            .map(|c| (format!("{c}/{proto}"), binding(String::new())))
            .collect());
    }
    let (h0, h1) = range(host, "hostPort")?;
    if c0 == c1 {
        // One container port, a host port or a range to pick one from.
        return Ok(vec![(format!("{c0}/{proto}"), binding(host.to_string()))]);
    }
    if h1 - h0 != c1 - c0 {
        return Err(bad("the host and container port ranges must be as long"));
    }
    Ok((c0..=c1)
        .zip(h0..=h1)
        .map(|(c, h)| (format!("{c}/{proto}"), binding(h.to_string())))
        .collect())
}

/// A duration flag in nanoseconds (Go's syntax, as docker parses it).
fn duration_flag(flag: &str, value: &Option<String>) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) => silo_units::parse_go_duration(v).map_err(|_| {
            anyhow::anyhow!(
                "invalid argument {v:?} for \"{flag}\" flag: time: invalid duration {v:?}"
            )
        }),
    }
}

/// `Config.Healthcheck` from the --health-* flags, with docker's rules:
/// --no-healthcheck sends Test ["NONE"] and conflicts with every
/// --health-* setting; otherwise any non-zero setting sends a healthcheck
/// (a missing command inherits the image's test, zero values its other
/// settings), and negative values are refused.
fn healthcheck(a: &RunArgs) -> Result<Option<HealthConfig>> {
    let cmd = a.health_cmd.clone().unwrap_or_default();
    let interval = duration_flag("--health-interval", &a.health_interval)?;
    let timeout = duration_flag("--health-timeout", &a.health_timeout)?;
    let start_period = duration_flag("--health-start-period", &a.health_start_period)?;
    let start_interval = duration_flag("--health-start-interval", &a.health_start_interval)?;
    let retries = a.health_retries.unwrap_or(0);
    let any = !cmd.is_empty()
        || interval != 0
        || timeout != 0
        || start_period != 0
        || retries != 0
        || start_interval != 0;
    if a.no_healthcheck {
        if any {
            anyhow::bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    if !any {
        return Ok(None);
    }
    for (flag, v) in [
        ("--health-interval", interval),
        ("--health-timeout", timeout),
        ("--health-retries", retries),
        ("--health-start-period", start_period),
        ("--health-start-interval", start_interval),
    ] {
        if v < 0 {
            anyhow::bail!("{flag} cannot be negative");
        }
    }
    let set = |v: i64| (v != 0).then_some(v);
    Ok(Some(HealthConfig {
        test: (!cmd.is_empty()).then(|| vec!["CMD-SHELL".into(), cmd]),
        interval: set(interval),
        timeout: set(timeout),
        start_period: set(start_period),
        start_interval: set(start_interval),
        retries: set(retries),
    }))
}

/// The resource flags `run`, `create` and `update` share.
#[derive(Args, Debug, Clone, Default)]
pub struct ResourceArgs {
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
}

impl ResourceArgs {
    /// Sets the HostConfig fields of the flags given (others stay None).
    pub fn apply(&self, hc: &mut HostConfig) -> Result<()> {
        if let Some(m) = &self.memory {
            hc.memory = Some(parse_size(m).map_err(|e| {
                anyhow::anyhow!("invalid argument {m:?} for \"-m, --memory\" flag: {e}")
            })?);
        }
        if let Some(c) = &self.cpus {
            hc.nano_cpus = Some(parse_cpus(c)?);
        }
        hc.cpu_shares = self.cpu_shares;
        hc.cpuset_cpus = self.cpuset_cpus.clone();
        hc.pids_limit = self.pids_limit;
        Ok(())
    }
}

/// Builds the create request from the flags; every bad value is reported
/// before anything is sent to the daemon.
pub fn build_body(a: &RunArgs) -> Result<ContainerCreateBody> {
    let mut hc = HostConfig::default();
    a.resources.apply(&mut hc)?;
    let mut binds = Vec::new();
    let mut anon = Vec::new();
    for v in &a.volume {
        if v.contains(':') {
            binds.push(v.clone());
        } else if v.starts_with('/') {
            anon.push(v.clone());
        } else {
            anyhow::bail!("invalid volume spec {v:?}: expected name:/path, /host:/path or /path");
        }
    }
    if !binds.is_empty() {
        hc.binds = Some(binds);
    }
    if !a.tmpfs.is_empty() {
        let mut m = HashMap::new();
        for t in &a.tmpfs {
            let (p, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
            if !p.starts_with('/') {
                anyhow::bail!("invalid --tmpfs {t:?}: the path must be absolute");
            }
            m.insert(p.to_string(), o.to_string());
        }
        hc.tmpfs = Some(m);
    }
    if !a.cap_add.is_empty() {
        hc.cap_add = Some(a.cap_add.clone());
    }
    if !a.cap_drop.is_empty() {
        hc.cap_drop = Some(a.cap_drop.clone());
    }
    hc.privileged = a.privileged.then_some(true);
    hc.readonly_rootfs = a.read_only.then_some(true);
    if !a.security_opt.is_empty() {
        let mut out = Vec::new();
        for o in &a.security_opt {
            // Like the docker CLI, send the profile's contents, not its path.
            match o.split_once(['=', ':']) {
                Some(("seccomp", p)) if p != "unconfined" => {
                    let body = std::fs::read_to_string(p).with_context(|| {
                        format!("opening seccomp profile {p:?} (--security-opt)")
                    })?;
                    out.push(format!("seccomp={body}"));
                }
                _ => out.push(o.clone()),
            }
        }
        hc.security_opt = Some(out);
    }
    if let Some(r) = &a.restart {
        hc.restart_policy = Some(parse_restart(r)?);
    }
    if a.rm {
        if hc
            .restart_policy
            .as_ref()
            .is_some_and(|p| !matches!(p.name, Some(RestartPolicyNameEnum::NO) | None))
        {
            anyhow::bail!("conflicting options: cannot specify both --restart and --rm");
        }
        hc.auto_remove = Some(true);
    }
    hc.init = a.init.then_some(true);
    if !a.storage_opt.is_empty() {
        let mut m = HashMap::new();
        for o in &a.storage_opt {
            let Some((k, v)) = o.split_once('=') else {
                anyhow::bail!("invalid --storage-opt {o:?}: want key=value (size=2G)");
            };
            m.insert(k.to_string(), v.to_string());
        }
        hc.storage_opt = Some(m);
    }
    hc.network_mode = a.network.clone();
    let mut exposed = Vec::new();
    if !a.publish.is_empty() {
        let mut pm: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &a.publish {
            for (port, b) in parse_publish(p)? {
                exposed.push(port.clone());
                pm.entry(port)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(b);
            }
        }
        hc.port_bindings = Some(pm);
    }
    for e in &a.expose {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        exposed.push(format!("{port}/{proto}"));
    }
    hc.publish_all_ports = a.publish_all.then_some(true);
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    hc.dns = list(&a.dns);
    hc.dns_search = list(&a.dns_search);
    hc.dns_options = list(&a.dns_option);
    hc.extra_hosts = list(&a.add_host);
    hc.links = list(&a.link);
    if !a.ulimit.is_empty() {
        hc.ulimits = Some(
            a.ulimit
                .iter()
                .map(|u| parse_ulimit(u))
                .collect::<Result<_, _>>()?,
        );
    }
    if !a.sysctl.is_empty() {
        hc.sysctls = Some(
            a.sysctl
                .iter()
                .map(|s| key_value("--sysctl", s))
                .collect::<Result<_, _>>()?,
        );
    }
    let env: Vec<String> = a
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                // `-e NAME` passes the local value through, or nothing when unset.
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let labels: HashMap<String, String> = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let healthcheck = healthcheck(a)?;
    let attach = !a.detach;
    Ok(ContainerCreateBody {
        image: Some(a.image.clone()),
        cmd: (!a.command.is_empty()).then(|| a.command.clone()),
        entrypoint: a.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                vec![String::new()]
            } else {
                vec![e.clone()]
            }
        }),
        env: (!env.is_empty()).then_some(env),
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: Some(a.tty),
        open_stdin: Some(a.interactive),
        stdin_once: Some(a.interactive && attach),
        attach_stdin: Some(a.interactive && attach),
        attach_stdout: Some(attach),
        attach_stderr: Some(attach),
        labels: (!labels.is_empty()).then_some(labels),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        healthcheck,
        volumes: (!anon.is_empty()).then_some(anon),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        networking_config: endpoint_config(a)?,
        host_config: Some(hc),
        ..Default::default()
    })
}

/// `--ip` and `--network-alias` for the network of `--network`, which
/// must then name a user network (as docker requires).
fn endpoint_config(a: &RunArgs) -> Result<Option<bollard_stubs::models::NetworkingConfig>> {
    if a.ip.is_none() && a.ip6.is_none() && a.network_alias.is_empty() && a.mac_address.is_none() {
        return Ok(None);
    }
    let user_net = a.ip.is_some() || a.ip6.is_some() || !a.network_alias.is_empty();
    let net = match a.network.as_deref() {
        Some(n)
            if !matches!(n, "" | "default" | "bridge" | "nat" | "none" | "host")
                && !n.starts_with("container:") =>
        {
            n
        }
        None | Some("" | "default" | "bridge" | "nat") if !user_net => "default",
        _ => anyhow::bail!(
            "--ip and --network-alias need --network with a user-defined network, --mac-address a network of the container's own"
        ),
    };
    let settings = bollard_stubs::models::EndpointSettings {
        mac_address: a.mac_address.clone(),
        aliases: (!a.network_alias.is_empty()).then(|| a.network_alias.clone()),
        ipam_config: (a.ip.is_some() || a.ip6.is_some()).then(|| {
            bollard_stubs::models::EndpointIpamConfig {
                ipv4_address: a.ip.clone(),
                ipv6_address: a.ip6.clone(),
                ..Default::default()
            }
        }),
        ..Default::default()
    };
    Ok(Some(bollard_stubs::models::NetworkingConfig {
        endpoints_config: Some([(net.to_string(), settings)].into()),
    }))
}

fn do_create(app: &App, a: &RunArgs) -> Result<String> {
    let body = build_body(a)?;
    let path = match &a.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_string(),
    };
    let resp: ContainerCreateResponse = app.post(&path, Some(&body))?;
    for w in &resp.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(resp.id)
}

pub fn create(app: &App, a: RunArgs) -> Result<()> {
    let id = do_create(app, &a)?;
    println!("{id}");
    Ok(())
}

/// How `run` ends when the start failed, by docker's rule read from the
/// daemon's message: 127 when the command was not found, 126 when it could
/// not be executed, else 125 (an error of the daemon's).
pub fn start_failure(e: anyhow::Error) -> anyhow::Error {
    let Some(crate::http::HttpError::Api { message, .. }) = e.downcast_ref() else {
        return e;
    };
    let m = message.to_ascii_lowercase();
    let code = if m.contains("executable file not found") || m.contains("no such file or directory")
    {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        125
    };
    eprintln!("Error response from daemon: {message}");
    crate::Exit(code).into()
}

pub fn run(app: &App, a: RunArgs) -> Result<()> {
    // -d with --rm is allowed, as by docker: the daemon removes the
    // container when it exits.
    let id = do_create(app, &a)?;
    if a.detach {
        app.post_empty(&format!("/containers/{id}/start"))
            .map_err(start_failure)?;
        println!("{id}");
        return Ok(());
    }
    let code = stream::attach_start_wait(
        app,
        &id,
        stream::Attach {
            stdin: a.interactive,
            tty: a.tty,
            start: true,
            wait_condition: Some(if a.rm { "removed" } else { "next-exit" }),
        },
    )?;
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn args(v: &[&str]) -> RunArgs {
        let mut all = vec!["silo"];
        all.extend_from_slice(v);
        T::try_parse_from(all).expect("parse").a
    }

    #[test]
    fn flags_map_to_the_create_body() {
        let a = args(&[
            "--rm",
            "-e",
            "A=1",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "--cap-drop",
            "ALL",
            "--read-only",
            "--network",
            "none",
            "--ulimit",
            "nofile=10:20",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "-l",
            "k=v",
            "-v",
            "data:/data",
            "-v",
            "/anon",
            "--tmpfs",
            "/run:size=1m",
            "-h",
            "box",
            "-w",
            "/tmp",
            "-u",
            "1000",
            "--restart",
            "no",
            "busybox",
            "echo",
            "-n",
            "hi",
        ]);
        let b = serde_json::to_value(build_body(&a).expect("body")).expect("json");
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], serde_json::json!(["echo", "-n", "hi"]));
        assert_eq!(b["Env"], serde_json::json!(["A=1"]));
        assert_eq!(b["Hostname"], "box");
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "1000");
        assert_eq!(b["Labels"]["k"], "v");
        let hc = &b["HostConfig"];
        assert_eq!(hc["Memory"], 64 << 20);
        assert_eq!(hc["NanoCpus"], 500_000_000);
        assert_eq!(hc["PidsLimit"], 20);
        assert_eq!(hc["AutoRemove"], true);
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(hc["NetworkMode"], "none");
        assert_eq!(hc["Ulimits"][0]["Soft"], 10);
        assert_eq!(hc["Ulimits"][0]["Hard"], 20);
        assert_eq!(hc["Sysctls"]["net.ipv4.ip_forward"], "1");
        assert_eq!(hc["Binds"], serde_json::json!(["data:/data"]));
        assert_eq!(hc["Tmpfs"]["/run"], "size=1m");
        assert_eq!(hc["RestartPolicy"]["Name"], "no");
        assert!(b["Volumes"].get("/anon").is_some(), "{}", b["Volumes"]);
    }

    #[test]
    fn bad_values_are_rejected_before_sending() {
        let err = build_body(&args(&["-m", "lots", "busybox"])).expect_err("bad memory");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("\"lots\"") && msg.contains("--memory"),
            "{msg}"
        );
        assert!(build_body(&args(&["-p", "80:http", "busybox"])).is_err());
        assert!(build_body(&args(&["-p", "abc", "busybox"])).is_err());
        assert!(build_body(&args(&["--restart", "sometimes", "busybox"])).is_err());
        assert!(build_body(&args(&["--rm", "--restart", "always", "busybox"])).is_err());
        assert!(build_body(&args(&["--ulimit", "nofile=20:10", "busybox"])).is_err());
        assert!(build_body(&args(&["--sysctl", "novalue", "busybox"])).is_err());
        assert!(build_body(&args(&["--cpus", "x", "busybox"])).is_err());
    }

    /// The `Healthcheck` the flags send (JSON null when none).
    fn health(v: &[&str]) -> serde_json::Value {
        let mut all = v.to_vec();
        all.push("busybox");
        let b = build_body(&args(&all)).expect("body");
        serde_json::to_value(&b).expect("json")["Healthcheck"].clone()
    }

    fn health_err(v: &[&str]) -> String {
        let mut all = v.to_vec();
        all.push("busybox");
        format!("{:#}", build_body(&args(&all)).expect_err("an error"))
    }

    #[test]
    fn health_flags_map_like_dockers() {
        use serde_json::json;
        assert_eq!(health(&[]), serde_json::Value::Null);
        assert_eq!(
            health(&[
                "--health-cmd",
                "curl -f localhost || exit 1",
                "--health-interval",
                "1m30s",
                "--health-timeout",
                "200ms",
                "--health-start-period",
                "1.5s",
                "--health-start-interval",
                "100ms",
                "--health-retries",
                "4",
            ]),
            json!({
                "Test": ["CMD-SHELL", "curl -f localhost || exit 1"],
                "Interval": 90_000_000_000i64,
                "Timeout": 200_000_000,
                "StartPeriod": 1_500_000_000,
                "StartInterval": 100_000_000,
                "Retries": 4,
            })
        );
        // Settings without a command keep the image's test (no Test sent).
        assert_eq!(
            health(&["--health-timeout", "5s"]),
            json!({"Timeout": 5_000_000_000i64})
        );
        assert_eq!(
            health(&["--health-start-period=2m"])["StartPeriod"],
            120_000_000_000i64
        );
        // Zero values are docker's "not set".
        assert_eq!(
            health(&["--health-interval", "0s"]),
            serde_json::Value::Null
        );
        assert_eq!(health(&["--no-healthcheck"]), json!({"Test": ["NONE"]}));
        assert_eq!(
            health(&["--no-healthcheck", "--health-retries", "0"]),
            json!({"Test": ["NONE"]})
        );
    }

    #[test]
    fn bad_health_flags_are_docker_errors() {
        for conflict in [
            &["--no-healthcheck", "--health-cmd", "true"][..],
            &["--no-healthcheck", "--health-interval", "1s"],
            &["--no-healthcheck", "--health-timeout", "1s"],
            &["--no-healthcheck", "--health-start-period", "1s"],
            &["--no-healthcheck", "--health-start-interval", "1s"],
            &["--no-healthcheck", "--health-retries", "2"],
        ] {
            assert_eq!(
                health_err(conflict),
                "--no-healthcheck conflicts with --health-* options",
                "{conflict:?}"
            );
        }
        assert_eq!(
            health_err(&["--health-timeout", "10"]),
            "invalid argument \"10\" for \"--health-timeout\" flag: time: invalid duration \"10\""
        );
        assert!(health_err(&["--health-start-period", "soon"]).contains("--health-start-period"));
        assert!(health_err(&["--health-start-interval", "1x"]).contains("--health-start-interval"));
        assert!(health_err(&["--health-interval", "1y"]).contains("--health-interval"));
        assert_eq!(
            health_err(&["--health-timeout", "-1s"]),
            "--health-timeout cannot be negative"
        );
        assert_eq!(
            health_err(&["--health-start-period", "-5m"]),
            "--health-start-period cannot be negative"
        );
        assert_eq!(
            health_err(&["--health-start-interval", "-1ms"]),
            "--health-start-interval cannot be negative"
        );
        assert_eq!(
            health_err(&["--health-interval", "-1s"]),
            "--health-interval cannot be negative"
        );
        assert_eq!(
            health_err(&["--health-retries", "-1"]),
            "--health-retries cannot be negative"
        );
    }

    #[test]
    fn init_flag() {
        let v =
            |a: &[&str]| serde_json::to_value(build_body(&args(a)).expect("body")).expect("json");
        assert_eq!(v(&["--init", "busybox"])["HostConfig"]["Init"], true);
        assert!(v(&["busybox"])["HostConfig"]
            .get("Init")
            .is_none_or(|i| i.is_null()));
    }

    #[test]
    fn publish_and_entrypoint() {
        let b = build_body(&args(&["-p", "8080:80", "--entrypoint", "", "busybox"])).expect("body");
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(
            v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(v["Entrypoint"], serde_json::json!([""]));
        assert!(v["ExposedPorts"].get("80/tcp").is_some());
    }
}

//! One function per runtime command, each a few calls into the compute
//! service, with runc's output formats.

use crate::cli::{Cli, Command, CreateArgs, ExecArgs, Format, UpdateArgs};
use crate::foreground;
use crate::log::Logger;
use anyhow::{anyhow, bail, Context, Result};
use silo_compute::{ComputeSystem, CreateOptions, ExecOptions, Host};
use silo_oci::{Process, Resources};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn host(cli: &Cli) -> Result<Host> {
    Ok(Host::detect(&cli.root, cli.systemd_cgroup)?)
}

pub fn dispatch(cli: &Cli, log: &Logger) -> Result<i32> {
    let Some(cmd) = &cli.command else {
        bail!("no command given; see `silo-runtime --help`");
    };
    if let Command::Spec { bundle, .. } = cmd {
        return spec(bundle).map(|_| 0);
    }
    if let Command::Features = cmd {
        println!("{}", serde_json::to_string_pretty(&features())?);
        return Ok(0);
    }
    let host = host(cli)?;
    log.debug(&format!("command {cmd:?}"));
    match cmd {
        Command::Create(args) => {
            create(&host, args, true)?;
            Ok(0)
        }
        Command::Run {
            create: args,
            detach,
            keep,
        } => run(&host, args, *detach, *keep),
        Command::Start { id } => {
            silo_compute::open(&host, id)?.start()?;
            Ok(0)
        }
        Command::State { id } => {
            let sys = silo_compute::open(&host, id)?;
            println!("{}", serde_json::to_string_pretty(&sys.state())?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            silo_compute::open(&host, id)?.kill(sig, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => match silo_compute::open(&host, id) {
            Ok(sys) => {
                sys.delete(*force)?;
                Ok(0)
            }
            Err(silo_compute::OpError::NotFound(_)) if *force => Ok(0),
            Err(e) => Err(e.into()),
        },
        Command::Pause { id } => {
            silo_compute::open(&host, id)?.pause()?;
            Ok(0)
        }
        Command::Resume { id } => {
            silo_compute::open(&host, id)?.resume()?;
            Ok(0)
        }
        Command::Exec(args) => exec(&host, args),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&host, id, *format, ps_args).map(|_| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let sys = silo_compute::open(&host, id)?;
            let interval = parse_duration(interval)?;
            if *stats {
                // runc's --stats: one stats object, then exit.
                let ev = silo_compute::Event {
                    kind: "stats".into(),
                    id: id.clone(),
                    data: Some(serde_json::to_value(sys.stats()?)?),
                };
                println!("{}", serde_json::to_string(&ev)?);
                return Ok(0);
            }
            let mut out = std::io::stdout();
            sys.watch(interval, true, |ev| {
                serde_json::to_writer(&mut out, ev).is_ok()
                    && out.write_all(b"\n").is_ok()
                    && out.flush().is_ok()
            })?;
            Ok(0)
        }
        Command::Update(args) => update(&host, args, log).map(|_| 0),
        Command::List { format, quiet } => list(&host, *format, *quiet).map(|_| 0),
        Command::Spec { .. } | Command::Features => unreachable!("handled above"),
    }
}

fn create_opts(args: &CreateArgs, wait_for_start: bool) -> Result<CreateOptions> {
    let console = match &args.console_socket {
        Some(p) => Some(
            silo_compute::connect_console(p)
                .with_context(|| format!("--console-socket {}", p.display()))?,
        ),
        None => None,
    };
    Ok(CreateOptions {
        bundle: args.bundle.clone(),
        pid_file: args.pid_file.clone(),
        console,
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        wait_for_start,
    })
}

fn create(host: &Host, args: &CreateArgs, wait: bool) -> Result<ComputeSystem> {
    Ok(silo_compute::create(
        host,
        &args.id,
        create_opts(args, wait)?,
    )?)
}

/// Whether the bundle asks for a terminal; a cheap look at the raw JSON,
/// since the full, checked parse happens once, in create.
fn wants_terminal(bundle: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Proc {
        #[serde(default)]
        terminal: bool,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        process: Option<Proc>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Doc>(&b).ok())
        .and_then(|d| d.process)
        .is_some_and(|p| p.terminal)
}

fn run(host: &Host, args: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let mut opts = create_opts(args, false)?;
    let mut ours = None;
    if opts.console.is_none() && !detach && wants_terminal(&args.bundle) {
        let (mine, theirs) = foreground::console_pair()?;
        opts.console = Some(theirs);
        ours = Some(mine);
    }
    let mut sys = silo_compute::create(host, &args.id, opts)?;
    if detach {
        return Ok(0);
    }
    let master = match &ours {
        Some(sock) => Some(foreground::recv_fd(sock.as_raw_fd())?),
        None => None,
    };
    drop(ours);
    let code = foreground::wait(sys.pid(), master)?;
    sys.mark_stopped()?;
    if !keep {
        sys.delete(true)?;
    }
    Ok(code)
}

fn exec_process(sys: &ComputeSystem, args: &ExecArgs) -> Result<Process> {
    if let Some(path) = &args.process {
        let bytes = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let p: Process = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner()))?;
        return Ok(p);
    }
    if args.command.is_empty() {
        bail!("exec: no command given (pass arguments or --process FILE)");
    }
    let mut p = sys.record.spec.process.clone().unwrap_or_default();
    p.args = args.command.clone();
    p.terminal = args.tty;
    p.console_size = None;
    if let Some(cwd) = &args.cwd {
        p.cwd = cwd.clone();
    }
    for e in &args.env {
        let key = e.split('=').next().unwrap_or("");
        p.env.retain(|x| x.split('=').next() != Some(key));
        p.env.push(e.clone());
    }
    if let Some(user) = &args.user {
        let mut parts = user.splitn(2, ':');
        let uid = parts.next().unwrap_or("");
        p.user.uid = uid
            .parse()
            .map_err(|_| anyhow!("--user {user:?}: uid must be a number"))?;
        if let Some(gid) = parts.next() {
            p.user.gid = gid
                .parse()
                .map_err(|_| anyhow!("--user {user:?}: gid must be a number"))?;
        }
    }
    if !args.additional_gids.is_empty() {
        p.user.additional_gids = args.additional_gids.clone();
    }
    if !args.cap.is_empty() {
        let caps = p.capabilities.get_or_insert_with(Default::default);
        for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted] {
            let v = set.get_or_insert_with(Vec::new);
            for c in &args.cap {
                if !v.contains(c) {
                    v.push(c.clone());
                }
            }
        }
    }
    if args.no_new_privs {
        p.no_new_privileges = true;
    }
    Ok(p)
}

fn exec(host: &Host, args: &ExecArgs) -> Result<i32> {
    let sys = silo_compute::open(host, &args.id)?;
    let process = exec_process(&sys, args)?;
    let mut console: Option<OwnedFd> = None;
    let mut ours = None;
    if process.terminal {
        match &args.console_socket {
            Some(p) => {
                console = Some(
                    silo_compute::connect_console(p)
                        .with_context(|| format!("--console-socket {}", p.display()))?,
                )
            }
            None if args.detach => {
                bail!("exec: --tty with --detach needs --console-socket")
            }
            None => {
                let (mine, theirs) = foreground::console_pair()?;
                console = Some(theirs);
                ours = Some(mine);
            }
        }
    }
    let pid = sys.exec(
        &process,
        ExecOptions {
            pid_file: args.pid_file.clone(),
            console,
            preserve_fds: args.preserve_fds,
        },
    )?;
    if args.detach {
        return Ok(0);
    }
    let master = match &ours {
        Some(sock) => Some(foreground::recv_fd(sock.as_raw_fd())?),
        None => None,
    };
    Ok(foreground::wait(pid, master)?)
}

fn ps(host: &Host, id: &str, format: Format, ps_args: &[String]) -> Result<()> {
    let sys = silo_compute::open(host, id)?;
    let pids = sys.processes()?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("ps output has no PID column"))?;
    println!("{header}");
    for line in lines {
        let pid: Option<i32> = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

fn list(host: &Host, format: Format, quiet: bool) -> Result<()> {
    let systems = silo_compute::list(host);
    if quiet {
        for s in &systems {
            println!("{}", s.id());
        }
        return Ok(());
    }
    let states: Vec<_> = systems.iter().map(|s| s.state()).collect();
    if format == Format::Json {
        println!("{}", serde_json::to_string(&states)?);
        return Ok(());
    }
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for s in &states {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.clone(),
            s.created.clone().unwrap_or_default(),
            s.owner.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<width$}", width = w + 3))
            .collect();
        println!("{}", line.concat().trim_end());
    }
    Ok(())
}

fn update(host: &Host, args: &UpdateArgs, log: &Logger) -> Result<()> {
    let mut sys = silo_compute::open(host, &args.id)?;
    let mut res: Resources = match &args.resources {
        Some(p) => {
            let bytes = if p.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b)?;
                b
            } else {
                std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?
            };
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow!("--resources: field `{}`: {}", e.path(), e.inner()))?
        }
        None => Resources::default(),
    };
    let mem = |s: &Option<String>, flag: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|v| parse_size(v).map_err(|e| anyhow!("--{flag} {v:?}: {e}")))
            .transpose()
    };
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let m = res.memory.get_or_insert_with(Default::default);
        if let Some(v) = mem(&args.memory, "memory")? {
            m.limit = Some(v);
        }
        if let Some(v) = mem(&args.memory_reservation, "memory-reservation")? {
            m.reservation = Some(v);
        }
        if let Some(v) = mem(&args.memory_swap, "memory-swap")? {
            m.swap = Some(v);
        }
    }
    if args.cpu_period.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_share.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpu_idle.is_some()
    {
        let c = res.cpu.get_or_insert_with(Default::default);
        c.period = args.cpu_period.or(c.period);
        c.quota = args.cpu_quota.or(c.quota);
        c.shares = args.cpu_share.or(c.shares);
        c.realtime_period = args.cpu_rt_period.or(c.realtime_period);
        c.realtime_runtime = args.cpu_rt_runtime.or(c.realtime_runtime);
        c.idle = args.cpu_idle.or(c.idle);
        if let Some(v) = &args.cpuset_cpus {
            c.cpus = Some(v.clone());
        }
        if let Some(v) = &args.cpuset_mems {
            c.mems = Some(v.clone());
        }
    }
    if let Some(l) = args.pids_limit {
        res.pids = Some(silo_oci::Pids { limit: l });
    }
    if let Some(w) = args.blkio_weight {
        res.block_io.get_or_insert_with(Default::default).weight = Some(w);
    }
    if args.kernel_memory.is_some() || args.kernel_memory_tcp.is_some() {
        log.warn("--kernel-memory is deprecated by the kernel and ignored");
    }
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        bail!("--l3-cache-schema/--mem-bw-schema: Intel RDT is not supported on this host");
    }
    for w in sys.update(&res)? {
        log.warn(&w);
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// Parses sizes like 1024, 64k, 100m, 1g (docker's binary units, as runc
/// takes them), or -1.
pub fn parse_size(s: &str) -> Result<i64, String> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    silo_units::parse_size(s).map_err(|e| match e.problem() {
        silo_units::Problem::Negative => "must not be negative".to_string(),
        _ => "not a size (use bytes or a k/m/g suffix)".to_string(),
    })
}

/// Parses a positive Go duration like 5s, 500ms, 1m30s (what runc's
/// `--interval` takes), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || anyhow!("--interval {s:?}: not a duration (use e.g. 5s or 500ms)");
    let bare_seconds = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let ns = match bare_seconds {
        true => silo_units::parse_go_duration(&format!("{s}s")),
        false => silo_units::parse_go_duration(s),
    }
    .map_err(|_| bad())?;
    match u64::try_from(ns) {
        Ok(ns) if ns > 0 => Ok(Duration::from_nanos(ns)),
        _ => Err(bad()),
    }
}

/// Parses a signal given as a number, `TERM`, or `SIGTERM` (any case),
/// including `RTMIN+n` and `RTMAX-n`: [`silo_sys::signal::parse`].
pub fn parse_signal(s: &str) -> Result<i32> {
    Ok(silo_sys::signal::parse(s)?)
}

fn spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{}: file exists; remove it first", path.display());
    }
    let mut spec = silo_oci::default_spec();
    let caps: Vec<String> = silo_oci::DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(linux) = spec.linux.as_mut() {
        linux.seccomp = Some(silo_seccomp::docker_default(&caps));
    }
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn features() -> serde_json::Value {
    let namespaces: Vec<&str> = silo_oci::NamespaceType::ALL
        .iter()
        .map(|n| n.name())
        .collect();
    serde_json::json!({
        "ociVersionMin": silo_oci::OCI_VERSION_MIN,
        "ociVersionMax": silo_oci::OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "nosymfollow", "private", "rbind", "relatime",
            "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": namespaces,
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.opencontainers.runc.version": env!("CARGO_PKG_VERSION"),
            "io.github.silo.runtime": "silo-runtime"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        let e = parse_signal("SIGFOO").unwrap_err().to_string();
        assert!(e.contains("SIGFOO"), "{e}");
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("100m").unwrap(), 100 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_size("-5m").unwrap_err(), "must not be negative");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        for not_positive in ["0", "0s", "-1s", "0.1ns"] {
            let e = parse_duration(not_positive).unwrap_err().to_string();
            assert!(e.contains(&format!("{not_positive:?}")), "{e}");
        }
    }
}

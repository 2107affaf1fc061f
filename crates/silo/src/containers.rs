//! Container verbs other than create/run: lifecycle, listing, inspect,
//! logs, attach, exec, top, stats, cp, export and prune.

use crate::api::App;
use crate::cli::{
    AttachArgs, CpArgs, ExecArgs, InspectArgs, KillArgs, LogsArgs, PruneArgs, PsArgs, RmArgs,
    StartArgs, StatsArgs, StopArgs, UpdateArgs,
};
use crate::http::{enc, Body};
use crate::stream::{self, Attach};
use crate::template::{tabulate, Template};
use crate::units::{self, build_filters, human_duration, human_size, now_unix, parse_since};
use crate::Exit;
use anyhow::{bail, Context, Result};
use bollard_stubs::models::{
    ContainerSummary, ContainerTopResponse, ExecConfig, HostConfig, IdResponse,
};
use serde_json::{json, Value};
use std::io::{self, BufRead, Read, Write};

/// Runs `f` for each name, printing the name on success and the daemon's
/// error otherwise, like docker; fails at the end if any failed.
pub(crate) fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                failed = true;
                match e.downcast_ref::<crate::http::HttpError>() {
                    Some(crate::http::HttpError::Api { message, .. }) => {
                        eprintln!("Error response from daemon: {message}")
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub fn start(app: &App, a: StartArgs) -> Result<()> {
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let id = &a.containers[0];
        let v: Value = app.get(&format!("/containers/{}/json", enc(id)))?;
        let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
        let code = stream::attach_start_wait(
            app,
            &enc(id),
            Attach {
                stdin: a.interactive,
                tty,
                start: true,
                wait_condition: Some("next-exit"),
            },
        )?;
        if code != 0 {
            return Err(Exit(code).into());
        }
        return Ok(());
    }
    each(&a.containers, |n| {
        app.post_empty(&format!("/containers/{}/start", enc(n)))
    })
}

pub fn stop(app: &App, a: StopArgs, restart: bool) -> Result<()> {
    let verb = if restart { "restart" } else { "stop" };
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    each(&a.containers, |n| {
        app.post_empty(&format!("/containers/{}/{verb}{q}", enc(n)))
    })
}

pub fn kill(app: &App, a: KillArgs) -> Result<()> {
    let q = a
        .signal
        .as_ref()
        .map(|s| format!("?signal={}", enc(s)))
        .unwrap_or_default();
    each(&a.containers, |n| {
        app.post_empty(&format!("/containers/{}/kill{q}", enc(n)))
    })
}

pub fn simple(app: &App, names: &[String], verb: &str) -> Result<()> {
    each(names, |n| {
        app.post_empty(&format!("/containers/{}/{verb}", enc(n)))
    })
}

pub fn wait(app: &App, names: &[String]) -> Result<()> {
    let mut failed = false;
    for n in names {
        match app.post::<(), Value>(&format!("/containers/{}/wait", enc(n)), None) {
            Ok(v) => println!("{}", v["StatusCode"].as_i64().unwrap_or(0)),
            Err(e) => {
                failed = true;
                eprintln!("Error response from daemon: {e:#}");
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub fn rm(app: &App, a: RmArgs) -> Result<()> {
    let q = format!("?force={}&v={}", a.force, a.volumes);
    each(&a.containers, |n| {
        app.delete(&format!("/containers/{}{q}", enc(n)))
            .map(|_| ())
    })
}

pub fn rename(app: &App, from: &str, to: &str) -> Result<()> {
    app.post_empty(&format!(
        "/containers/{}/rename?name={}",
        enc(from),
        enc(to)
    ))
}

pub fn update(app: &App, a: UpdateArgs) -> Result<()> {
    let mut hc = HostConfig::default();
    a.resources.apply(&mut hc)?;
    // Only the fields given (HostConfig leaves out the ones that are None).
    let mut body = match serde_json::to_value(&hc)? {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(r) = &a.restart {
        let (name, n) = r.split_once(':').unwrap_or((r.as_str(), "0"));
        let n: i64 = n
            .parse()
            .with_context(|| format!("invalid --restart {r:?}"))?;
        body.insert(
            "RestartPolicy".into(),
            json!({"Name": name, "MaximumRetryCount": n}),
        );
    }
    if body.is_empty() {
        bail!("you must provide one or more flags when using this command");
    }
    let body = Value::Object(body);
    each(&a.containers, |n| {
        let v: Value = app.post(&format!("/containers/{}/update", enc(n)), Some(&body))?;
        if let Some(ws) = v["Warnings"].as_array() {
            for w in ws {
                eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
            }
        }
        Ok(())
    })
}

fn short_id(id: &str, no_trunc: bool) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// The docker-ps template context of one container (field names as docker's).
pub fn ps_row(c: &ContainerSummary, no_trunc: bool, now: i64) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let command = c.command.clone().unwrap_or_default();
    let command = if no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let created = c.created.unwrap_or(0);
    let names: Vec<String> = c
        .names
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| no_trunc || !n.contains('/'))
        .collect();
    let mut labels: Vec<String> = c
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let ports: Vec<String> = c
        .ports
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            match p.public_port {
                Some(pp) => format!(
                    "{}:{pp}->{}/{proto}",
                    p.ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                    p.private_port
                ),
                None => format!("{}/{proto}", p.private_port),
            }
        })
        .collect();
    let image = c.image.clone().unwrap_or_default();
    let image = if !no_trunc && image.starts_with("sha256:") {
        short_id(&image, false)
    } else {
        image
    };
    json!({
        "ID": short_id(&id, no_trunc),
        "Image": image,
        "Command": format!("\"{command}\""),
        "CreatedAt": units::format_unix(created),
        "RunningFor": format!("{} ago", human_duration(now - created)),
        "Status": c.status.clone().unwrap_or_default(),
        "State": c.state.map(|s| s.to_string()).unwrap_or_default(),
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Ports": ports.join(", "),
        "Size": c.size_rw.map(|s| human_size(s as f64)).unwrap_or_default(),
        "Mounts": c.mounts.clone().unwrap_or_default().iter().map(|m| m.name.clone().or(m.source.clone()).unwrap_or_default()).collect::<Vec<_>>().join(","),
        "Networks": "",
        "LocalVolumes": "0",
    })
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Size", "SIZE"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

/// Prints rows through a `--format` template, or a default table template.
pub fn print_formatted(
    rows: &[Value],
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
) -> Result<()> {
    let fmt = format.unwrap_or(default_table);
    let t = Template::parse(fmt)?;
    let mut out = Vec::new();
    if t.table {
        out.push(t.render_header(headers));
    }
    for r in rows {
        out.push(t.render(r)?);
    }
    let text = if t.table {
        tabulate(&out)
    } else {
        out.iter().map(|l| format!("{l}\n")).collect()
    };
    io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

pub fn ps(app: &App, a: PsArgs) -> Result<()> {
    let mut q = vec![format!("all={}", a.all || a.last.is_some() || a.latest)];
    if let Some(n) = a.last {
        q.push(format!("limit={n}"));
    } else if a.latest {
        q.push("limit=1".into());
    }
    if a.size {
        q.push("size=true".into());
    }
    if let Some(f) = build_filters(&a.filter)? {
        q.push(format!("filters={}", enc(&f)));
    }
    let list: Vec<ContainerSummary> = app.get(&format!("/containers/json?{}", q.join("&")))?;
    let now = now_unix();
    if a.quiet {
        for c in &list {
            println!(
                "{}",
                short_id(c.id.as_deref().unwrap_or_default(), a.no_trunc)
            );
        }
        return Ok(());
    }
    let rows: Vec<Value> = list.iter().map(|c| ps_row(c, a.no_trunc, now)).collect();
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    print_formatted(&rows, a.format.as_deref(), default, PS_HEADERS)
}

/// Prints inspected objects: a JSON array (4-space indent, like docker) or one template line each.
pub fn print_inspect(items: &[Value], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) => {
            let t = Template::parse(f)?;
            for v in items {
                println!("{}", t.render(v)?);
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&items, &mut ser)?;
            buf.push(b'\n');
            io::stdout().write_all(&buf)?;
        }
    }
    Ok(())
}

pub fn inspect(app: &App, a: InspectArgs) -> Result<()> {
    let mut items = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let kind = a.kind.as_deref();
        let tries: Vec<String> = match kind {
            Some("container") => vec![format!("/containers/{}/json?size={}", enc(n), a.size)],
            Some("image") => vec![format!("/images/{}/json", enc(n))],
            Some("volume") => vec![format!("/volumes/{}", enc(n))],
            Some(other) => bail!("{other:?} is not a valid value for --type"),
            None => vec![
                format!("/containers/{}/json?size={}", enc(n), a.size),
                format!("/images/{}/json", enc(n)),
            ],
        };
        let mut found = None;
        for path in &tries {
            match app.get::<Value>(path) {
                Ok(v) => {
                    found = Some(v);
                    break;
                }
                Err(e) if stream::is_not_found(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        match found {
            Some(v) => items.push(v),
            None => {
                failed = true;
                eprintln!("Error: No such object: {n}");
            }
        }
    }
    print_inspect(&items, a.format.as_deref())?;
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub fn logs(app: &App, a: LogsArgs) -> Result<()> {
    let mut q = vec![
        "stdout=1".to_string(),
        "stderr=1".to_string(),
        format!("follow={}", a.follow),
        format!("timestamps={}", a.timestamps),
    ];
    if let Some(t) = &a.tail {
        if t != "all" && t.parse::<i64>().is_err() {
            bail!("invalid value {t:?} for --tail: expected a number or \"all\"");
        }
        q.push(format!("tail={}", enc(t)));
    }
    let now = now_unix();
    if let Some(s) = &a.since {
        q.push(format!("since={}", parse_since(s, now)?));
    }
    if let Some(s) = &a.until {
        q.push(format!("until={}", parse_since(s, now)?));
    }
    let id = enc(&a.container);
    let resp = app.stream("GET", &format!("/containers/{id}/logs?{}", q.join("&")))?;
    let ctype = resp.header("Content-Type").unwrap_or_default().to_string();
    let tty = if ctype.contains("multiplexed") {
        false
    } else if ctype.contains("raw-stream") {
        true
    } else {
        let v: Value = app.get(&format!("/containers/{id}/json"))?;
        v["Config"]["Tty"].as_bool().unwrap_or(false)
    };
    if tty {
        let mut r = resp;
        io::copy(&mut r, &mut io::stdout().lock())?;
    } else {
        stream::demux(resp, &mut io::stdout().lock(), &mut io::stderr().lock())?;
    }
    Ok(())
}

pub fn attach(app: &App, a: AttachArgs) -> Result<()> {
    let id = enc(&a.container);
    let v: Value = app.get(&format!("/containers/{id}/json"))?;
    if !v["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && v["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let code = stream::attach_start_wait(
        app,
        &id,
        Attach {
            stdin,
            tty,
            start: false,
            wait_condition: None,
        },
    )?;
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

pub fn exec(app: &App, a: ExecArgs) -> Result<()> {
    let attach = !a.detach;
    let cfg = ExecConfig {
        attach_stdin: Some(a.interactive && attach),
        attach_stdout: Some(attach),
        attach_stderr: Some(attach),
        tty: Some(a.tty),
        env: (!a.env.is_empty()).then(|| a.env.clone()),
        cmd: Some(a.command.clone()),
        privileged: Some(a.privileged),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
        ..Default::default()
    };
    let created: IdResponse = app.post(
        &format!("/containers/{}/exec", enc(&a.container)),
        Some(&cfg),
    )?;
    if a.detach {
        let body = json!({"Detach": true, "Tty": a.tty});
        app.post_raw(&format!("/exec/{}/start", created.id), Some(&body))?;
        return Ok(());
    }
    let code = stream::exec_attached(app, &created.id, a.interactive, a.tty)?;
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

pub fn top(app: &App, container: &str, ps_args: &[String]) -> Result<()> {
    let q = if ps_args.is_empty() {
        String::new()
    } else {
        format!("?ps_args={}", enc(&ps_args.join(" ")))
    };
    let t: ContainerTopResponse = app.get(&format!("/containers/{}/top{q}", enc(container)))?;
    let mut rows = vec![t.titles.unwrap_or_default().join("\t")];
    for p in t.processes.unwrap_or_default() {
        rows.push(p.join("\t"));
    }
    print!("{}", tabulate(&rows));
    Ok(())
}

/// One `docker stats` row from a stats document.
pub fn stats_row(v: &Value, no_trunc: bool) -> Value {
    let cpu_delta = v["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_f64()
        .unwrap_or(0.0)
        - v["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_f64()
            .unwrap_or(0.0);
    let sys_delta = v["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0)
        - v["precpu_stats"]["system_cpu_usage"]
            .as_f64()
            .unwrap_or(0.0);
    let ncpu = v["cpu_stats"]["online_cpus"]
        .as_f64()
        .filter(|n| *n > 0.0)
        .unwrap_or(1.0);
    let cpu = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * ncpu * 100.0
    } else {
        0.0
    };
    let usage = v["memory_stats"]["usage"].as_f64().unwrap_or(0.0);
    let cache = v["memory_stats"]["stats"]["inactive_file"]
        .as_f64()
        .or_else(|| v["memory_stats"]["stats"]["total_inactive_file"].as_f64())
        .unwrap_or(0.0);
    let mem = (usage - cache).max(0.0);
    let limit = v["memory_stats"]["limit"].as_f64().unwrap_or(0.0);
    let memp = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = v["networks"].as_object() {
        for n in nets.values() {
            rx += n["rx_bytes"].as_f64().unwrap_or(0.0);
            tx += n["tx_bytes"].as_f64().unwrap_or(0.0);
        }
    }
    let (mut br, mut bw) = (0.0, 0.0);
    if let Some(list) = v["blkio_stats"]["io_service_bytes_recursive"].as_array() {
        for e in list {
            match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => br += e["value"].as_f64().unwrap_or(0.0),
                Some("write") => bw += e["value"].as_f64().unwrap_or(0.0),
                _ => {}
            }
        }
    }
    let id = v["id"].as_str().unwrap_or_default();
    json!({
        "Container": short_id(id, no_trunc),
        "ID": short_id(id, no_trunc),
        "Name": v["name"].as_str().unwrap_or_default().trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", units::bytes_size(mem), units::bytes_size(limit)),
        "MemPerc": format!("{memp:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(br), human_size(bw)),
        "PIDs": v["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];
const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub fn stats(app: &App, a: StatsArgs) -> Result<()> {
    let names: Vec<String> = if a.containers.is_empty() {
        let list: Vec<ContainerSummary> = app.get(&format!("/containers/json?all={}", a.all))?;
        list.into_iter().filter_map(|c| c.id).collect()
    } else {
        a.containers.clone()
    };
    loop {
        let mut rows = Vec::new();
        for n in &names {
            let v: Value = app.get(&format!("/containers/{}/stats?stream=false", enc(n)))?;
            rows.push(stats_row(&v, a.no_trunc));
        }
        if !a.no_stream {
            // Clear the screen and home the cursor, like docker's live view.
            print!("\x1b[2J\x1b[H");
        }
        print_formatted(&rows, a.format.as_deref(), STATS_TABLE, STATS_HEADERS)?;
        if a.no_stream {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1000));
    }
}

/// Splits "container:/path" (a leading '.' or '/' means a local path).
fn split_cp(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':').filter(|(c, _)| !c.is_empty())
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The stat document of a path in a container (from HEAD /archive).
fn stat_path(app: &App, id: &str, path: &str) -> Result<Option<Value>> {
    match app.client.request(
        "HEAD",
        &format!("/containers/{}/archive?path={}", enc(id), enc(path)),
        Body::Empty,
    ) {
        Ok(resp) => Ok(resp
            .header("X-Docker-Container-Path-Stat")
            .and_then(decode_base64)
            .and_then(|b| serde_json::from_slice(&b).ok())),
        Err(crate::http::HttpError::Api { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn run_tar(args: &[&str], input: Option<&mut dyn Read>) -> Result<std::process::Child> {
    let mut cmd = std::process::Command::new("tar");
    cmd.args(args);
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    } else {
        cmd.stdout(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().context("running tar (is it installed?)")?;
    if let Some(r) = input {
        let mut stdin = child.stdin.take().context("tar stdin")?;
        io::copy(r, &mut stdin).context("feeding tar")?;
    }
    Ok(child)
}

pub fn cp(app: &App, a: CpArgs) -> Result<()> {
    match (split_cp(&a.src), split_cp(&a.dest)) {
        (Some((ctr, path)), None) => {
            let mut resp = app.stream(
                "GET",
                &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
            )?;
            if a.dest == "-" {
                io::copy(&mut resp, &mut io::stdout().lock())?;
                return Ok(());
            }
            let dest = std::path::Path::new(&a.dest);
            let base = std::path::Path::new(path.trim_end_matches('/'))
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let (dir, rename) = if dest.is_dir() {
                (dest.to_path_buf(), None)
            } else {
                let parent = dest
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let name = dest
                    .file_name()
                    .with_context(|| format!("bad destination path {:?}", a.dest))?;
                (parent.to_path_buf(), Some(name.to_string_lossy().to_string()))
            };
            let dir_s = dir.to_string_lossy().to_string();
            let mut args = vec!["-x", "-C", dir_s.as_str(), "-f", "-"];
            let transform;
            if let Some(name) = &rename {
                if *name != base && !base.is_empty() {
                    transform = format!("s,^{base},{name},");
                    args.push("--transform");
                    args.push(&transform);
                }
            }
            let mut child = run_tar(&args, Some(&mut resp))?;
            let st = child.wait()?;
            if !st.success() {
                bail!("extracting into {dir_s:?} failed (tar {st})");
            }
            Ok(())
        }
        (None, Some((ctr, path))) => {
            let tar_bytes = if a.src == "-" {
                let mut v = Vec::new();
                io::stdin().read_to_end(&mut v)?;
                (v, path.to_string())
            } else {
                let src = std::path::Path::new(&a.src);
                if !src.exists() {
                    bail!("could not find the file {} in the local filesystem", a.src);
                }
                let parent = src
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."))
                    .to_string_lossy()
                    .to_string();
                let base = src
                    .file_name()
                    .context("source has no file name")?
                    .to_string_lossy()
                    .to_string();
                let target = stat_path(app, ctr, path)?;
                let is_dir = target
                    .as_ref()
                    .and_then(|t| t["mode"].as_u64())
                    .is_some_and(|m| m & (1 << 31) != 0);
                let (dest_dir, transform) = if is_dir {
                    (path.to_string(), None)
                } else {
                    let p = std::path::Path::new(path);
                    let dd = p
                        .parent()
                        .map(|x| x.to_string_lossy().to_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "/".into());
                    let name = p
                        .file_name()
                        .context("destination has no file name")?
                        .to_string_lossy()
                        .to_string();
                    (dd, (name != base).then(|| format!("s,^{base},{name},")))
                };
                let mut args = vec!["-c", "-C", parent.as_str()];
                if let Some(t) = &transform {
                    args.push("--transform");
                    args.push(t);
                }
                args.push("-f");
                args.push("-");
                args.push(&base);
                let child = run_tar(&args, None)?;
                let out = child.wait_with_output()?;
                if !out.status.success() {
                    bail!("archiving {:?} failed (tar {})", a.src, out.status);
                }
                (out.stdout, dest_dir)
            };
            app.client.call(
                "PUT",
                &format!("/containers/{}/archive?path={}", enc(ctr), enc(&tar_bytes.1)),
                Body::Bytes(&tar_bytes.0, "application/x-tar"),
            )?;
            Ok(())
        }
        _ => bail!("copying between containers or between local paths is not supported; one of SRC and DEST must be CONTAINER:PATH"),
    }
}

pub fn export(app: &App, container: &str, output: Option<&str>) -> Result<()> {
    let mut resp = app.stream("GET", &format!("/containers/{}/export", enc(container)))?;
    match output {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("creating the export file {path:?}"))?;
            io::copy(&mut resp, &mut f)?;
        }
        None => {
            if rustix::termios::isatty(io::stdout()) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            io::copy(&mut resp, &mut io::stdout().lock())?;
        }
    }
    Ok(())
}

/// Asks "Are you sure...?" unless forced; true to go on.
pub fn confirm(warning: &str, force: bool) -> bool {
    if force {
        return true;
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes")
}

pub fn prune(app: &App, a: PruneArgs) -> Result<()> {
    if !confirm("WARNING! This will remove all stopped containers.", a.force) {
        return Ok(());
    }
    let q = build_filters(&a.filter)?
        .map(|f| format!("?filters={}", enc(&f)))
        .unwrap_or_default();
    let v: Value = app.post::<(), Value>(&format!("/containers/prune{q}"), None)?;
    print_pruned(&v, "ContainersDeleted", "Containers", |i| {
        vec![i.as_str().unwrap_or_default().to_string()]
    });
    Ok(())
}

/// Prints a prune answer as docker does: the `heading` list from
/// `v[key]` (each entry as `lines` renders it), then the space reclaimed.
pub(crate) fn print_pruned(
    v: &Value,
    key: &str,
    heading: &str,
    lines: impl Fn(&Value) -> Vec<String>,
) {
    if let Some(list) = v[key].as_array().filter(|l| !l.is_empty()) {
        println!("Deleted {heading}:");
        for line in list.iter().flat_map(&lines) {
            println!("{line}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
}

/// `silo port`: the published ports of a running container, as docker
/// prints them (`80/tcp -> 0.0.0.0:8080`), from inspect's
/// `NetworkSettings.Ports`.
pub fn port(app: &App, container: &str, port: Option<&str>) -> Result<()> {
    let v: serde_json::Value = app.get(&format!("/containers/{}/json", enc(container)))?;
    let want = port.map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    if let Some(map) = v["NetworkSettings"]["Ports"].as_object() {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            if want.as_ref().is_some_and(|w| w != k) {
                continue;
            }
            for b in map[k].as_array().into_iter().flatten() {
                let addr = format!(
                    "{}:{}",
                    b["HostIp"].as_str().unwrap_or(""),
                    b["HostPort"].as_str().unwrap_or("")
                );
                lines.push(if want.is_some() {
                    addr
                } else {
                    format!("{k} -> {addr}")
                });
            }
        }
    }
    if lines.is_empty() {
        if let Some(w) = want {
            anyhow::bail!("no public port '{w}' published for {container}");
        }
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_row_fields() {
        let c: ContainerSummary = serde_json::from_value(json!({
            "Id": "0123456789abcdef0123", "Names": ["/web"], "Image": "busybox",
            "Command": "sh -c 'while true; do sleep 1; done'", "Created": 1000,
            "Status": "Up 5 seconds", "State": "running", "Labels": {"b": "2", "a": "1"}
        }))
        .expect("summary");
        let r = ps_row(&c, false, 1010);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Names"], "web");
        assert_eq!(r["Command"], "\"sh -c 'while true; …\"");
        assert_eq!(r["RunningFor"], "10 seconds ago");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["State"], "running");
        let full = ps_row(&c, true, 1010);
        assert_eq!(full["ID"], "0123456789abcdef0123");
    }

    #[test]
    fn base64_and_cp_split() {
        assert_eq!(
            decode_base64("eyJtb2RlIjoxfQ==").expect("b64"),
            b"{\"mode\":1}"
        );
        assert_eq!(split_cp("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(split_cp("./a:b"), None);
        assert_eq!(split_cp("/tmp/x"), None);
    }

    #[test]
    fn stats_row_math() {
        let v = json!({
            "id": "abcdef0123456789", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 2097152, "limit": 8388608, "stats": {"inactive_file": 1048576}},
            "pids_stats": {"current": 3}
        });
        let r = stats_row(&v, false);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "1MiB / 8MiB");
        assert_eq!(r["MemPerc"], "12.50%");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["Name"], "web");
    }
}

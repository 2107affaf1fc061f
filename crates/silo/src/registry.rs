//! Registry and archive verbs: pull, push (with progress bars of our own),
//! login and logout (credentials kept in the docker client's config.json,
//! so `silo` and `docker` share them), save, load, commit and history.

use crate::api::App;
use crate::containers::print_formatted;
use crate::http::{enc, Body};
use crate::units::{human_duration, human_size, now_unix};
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG|@DIGEST]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub reference: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Registry (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

/// Docker Hub's key in config.json.
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// The docker client's config.json (`$DOCKER_CONFIG` or ~/.docker).
fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

fn read_config() -> Result<Value> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn write_config(v: &Value) -> Result<()> {
    let p = config_path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = serde_json::to_vec_pretty(v)?;
    silo_sys::fs::write_atomic(&p, &bytes, silo_sys::fs::Durability::Durable)
        .with_context(|| format!("writing {}", p.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", p.display()))?;
    Ok(())
}

/// The config.json key of the registry a reference names.
fn registry_key(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    let has_domain = reference.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_domain || first == "docker.io" || first == "index.docker.io" {
        HUB_KEY.to_string()
    } else {
        first.to_string()
    }
}

/// The normalized config.json key of a `login` server argument.
fn server_key(server: Option<&str>) -> String {
    match server.map(|s| s.trim_end_matches('/')) {
        None
        | Some(
            "docker.io" | "index.docker.io" | "https://index.docker.io/v1" | "registry-1.docker.io",
        ) => HUB_KEY.to_string(),
        Some(s) => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string(),
    }
}

/// The `X-Registry-Auth` value for a registry key, from config.json.
fn auth_header(key: &str) -> Result<String> {
    let cfg = read_config()?;
    let entry = &cfg["auths"][key];
    let auth = entry["auth"].as_str().unwrap_or("");
    let (user, pass) = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
        .unwrap_or_default();
    let body = json!({ "username": user, "password": pass, "serveraddress": key });
    Ok(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&body)?))
}

/// Draws a pull or push progress stream: on a terminal one line per layer,
/// redrawn in place; otherwise each layer's state changes, one per line.
fn render(resp: crate::http::Response, quiet: bool) -> Result<()> {
    let tty = !quiet && rustix::termios::isatty(io::stderr());
    let mut order: Vec<String> = Vec::new();
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    let mut last_status: BTreeMap<String, String> = BTreeMap::new();
    let mut drawn = 0usize;
    let mut err = io::stderr();
    for line in io::BufReader::new(resp).lines() {
        let line = line.context("reading the progress stream")?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).context("decoding the progress stream")?;
        if let Some(e) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            bail!(crate::http::HttpError::Api {
                status: 500,
                message: e.to_string()
            });
        }
        let status = v["status"].as_str().unwrap_or("").to_string();
        let Some(id) = v["id"]
            .as_str()
            .filter(|_| v.get("progressDetail").is_some())
        else {
            if !quiet && !status.is_empty() {
                println!("{status}");
            }
            continue;
        };
        let id = id.to_string();
        let text = match (
            v["progressDetail"]["current"].as_u64(),
            v["progressDetail"]["total"].as_u64(),
        ) {
            (Some(c), Some(t)) if t > 0 => {
                let width = 30u64;
                let filled = (c.min(t) * width / t) as usize;
                format!(
                    "{id}: {status} [{}{}] {}/{}",
                    "=".repeat(filled),
                    " ".repeat(width as usize - filled),
                    human_size(c as f64),
                    human_size(t as f64)
                )
            }
            _ => format!("{id}: {status}"),
        };
        if !order.contains(&id) {
            order.push(id.clone());
        }
        if tty {
            lines.insert(id, text);
            if drawn > 0 {
                write!(err, "\x1b[{drawn}A")?;
            }
            for k in &order {
                writeln!(
                    err,
                    "\x1b[2K{}",
                    lines.get(k).map(String::as_str).unwrap_or("")
                )?;
            }
            drawn = order.len();
        } else if !quiet && last_status.get(&id) != Some(&status) {
            println!("{id}: {status}");
            last_status.insert(id, status);
        }
    }
    Ok(())
}

pub fn pull(app: &App, a: PullArgs) -> Result<()> {
    let (name, tag) = split_reference(&a.reference);
    let mut path = format!("/images/create?fromImage={}&tag={}", enc(&name), enc(&tag));
    if let Some(p) = &a.platform {
        path.push_str(&format!("&platform={}", enc(p)));
    }
    let auth = auth_header(&registry_key(&a.reference))?;
    let resp =
        app.client
            .request_with("POST", &path, Body::Empty, &[("X-Registry-Auth", &auth)])?;
    render(resp, a.quiet)?;
    if a.quiet {
        println!("{}", a.reference);
    }
    Ok(())
}

/// "name:tag" → ("name", "tag"); "name@sha256:…" → ("name", "sha256:…");
/// "name" → ("name", "latest").
fn split_reference(r: &str) -> (String, String) {
    if let Some((n, d)) = r.split_once('@') {
        return (n.to_string(), d.to_string());
    }
    let slash = r.rfind('/').unwrap_or(0);
    match r.rfind(':') {
        Some(i) if i > slash => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), "latest".to_string()),
    }
}

pub fn push(app: &App, a: PushArgs) -> Result<()> {
    let (name, tag) = split_reference(&a.reference);
    let path = format!("/images/{}/push?tag={}", enc(&name), enc(&tag));
    let auth = auth_header(&registry_key(&a.reference))?;
    let resp =
        app.client
            .request_with("POST", &path, Body::Empty, &[("X-Registry-Auth", &auth)])?;
    render(resp, a.quiet)
}

pub fn login(app: &App, a: LoginArgs) -> Result<()> {
    let key = server_key(a.server.as_deref());
    let Some(user) = a.username else {
        bail!("login: --username is required (silo login does not prompt)");
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("login: --password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("login: give --password or --password-stdin"),
    };
    let body = json!({ "username": user, "password": password, "serveraddress": key });
    let answer: Value = app.post("/auth", Some(&body))?;
    let mut cfg = read_config()?;
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    cfg["auths"][&key] = json!({ "auth": auth });
    write_config(&cfg)?;
    println!("{}", answer["Status"].as_str().unwrap_or("Login Succeeded"));
    Ok(())
}

pub fn logout(server: Option<String>) -> Result<()> {
    let key = server_key(server.as_deref());
    let mut cfg = read_config()?;
    let removed = cfg["auths"]
        .as_object_mut()
        .and_then(|m| m.remove(&key))
        .is_some();
    if removed {
        write_config(&cfg)?;
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

pub fn save(app: &App, a: SaveArgs) -> Result<()> {
    if a.output.is_none() && rustix::termios::isatty(io::stdout()) {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let q: Vec<String> = a
        .images
        .iter()
        .map(|n| format!("names={}", enc(n)))
        .collect();
    let mut resp = app.stream("GET", &format!("/images/get?{}", q.join("&")))?;
    match &a.output {
        Some(path) => {
            // Into a temporary name first: a failed save leaves no file.
            let tmp = format!("{path}.silo-partial");
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {tmp}"))?;
            let copied = io::copy(&mut resp, &mut f).and_then(|_| f.sync_all());
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).context("writing the archive");
            }
            std::fs::rename(&tmp, path).with_context(|| format!("renaming to {path}"))?;
        }
        None => {
            io::copy(&mut resp, &mut io::stdout().lock()).context("writing the archive")?;
        }
    }
    Ok(())
}

pub fn load(app: &App, a: LoadArgs) -> Result<()> {
    let mut input: Box<dyn Read> = match &a.input {
        Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("opening {p}"))?),
        None => {
            if rustix::termios::isatty(io::stdin()) {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(io::stdin())
        }
    };
    let path = format!("/images/load?quiet={}", u8::from(a.quiet));
    let body = app
        .client
        .call("POST", &path, Body::Stream(&mut input, "application/x-tar"))?;
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let v = v.context("decoding the load answer")?;
        if let Some(e) = v["errorDetail"]["message"].as_str() {
            bail!("{e}");
        }
        if let Some(s) = v["stream"].as_str() {
            print!("{s}");
        }
    }
    Ok(())
}

pub fn commit(app: &App, a: CommitArgs) -> Result<()> {
    let mut q = vec![
        format!("container={}", enc(&a.container)),
        format!("pause={}", a.pause),
    ];
    if let Some(r) = &a.reference {
        let (name, tag) = split_reference(r);
        q.push(format!("repo={}", enc(&name)));
        q.push(format!("tag={}", enc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push(format!("comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push(format!("author={}", enc(au)));
    }
    for c in &a.change {
        q.push(format!("changes={}", enc(c)));
    }
    let v: Value = app.post(&format!("/commit?{}", q.join("&")), None::<&()>)?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(())
}

pub fn history(app: &App, a: HistoryArgs) -> Result<()> {
    let items: Vec<Value> = app.get(&format!("/images/{}/history", enc(&a.image)))?;
    if a.quiet {
        for i in &items {
            let id = i["Id"].as_str().unwrap_or("");
            println!(
                "{}",
                if a.no_trunc {
                    id.to_string()
                } else {
                    short_id(id)
                }
            );
        }
        return Ok(());
    }
    let now = now_unix();
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            let id = i["Id"].as_str().unwrap_or("");
            let by = i["CreatedBy"].as_str().unwrap_or("");
            let by = if a.no_trunc || by.chars().count() <= 45 {
                by.to_string()
            } else {
                format!("{}…", by.chars().take(44).collect::<String>())
            };
            json!({
                "ID": if a.no_trunc { id.to_string() } else { short_id(id) },
                "CreatedSince": format!("{} ago", human_duration(now - i["Created"].as_i64().unwrap_or(now))),
                "CreatedBy": by,
                "Size": human_size(i["Size"].as_f64().unwrap_or(0.0)),
                "Comment": i["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    print_formatted(
        &rows,
        a.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )
}

/// `silo sandbox attach|detach|export`.
pub fn sandbox(app: &App, cmd: crate::cli::SandboxCmd) -> Result<()> {
    use crate::cli::SandboxCmd as S;
    let absolute = |p: &str| -> Result<String> {
        let abs = std::path::absolute(p).with_context(|| format!("resolving {p}"))?;
        Ok(abs.to_string_lossy().into_owned())
    };
    match cmd {
        S::Attach { container, dir } => {
            let path = format!(
                "/silo/sandbox/{}/attach?path={}",
                enc(&container),
                enc(&absolute(&dir)?)
            );
            app.post_empty(&path)?;
            println!("{dir}");
        }
        S::Detach { dir } => {
            app.post_empty(&format!(
                "/silo/sandbox/detach?path={}",
                enc(&absolute(&dir)?)
            ))?;
        }
        S::Export {
            container,
            file,
            format,
        } => {
            let path = format!(
                "/silo/sandbox/{}/export?format={}",
                enc(&container),
                enc(&format)
            );
            let mut resp = app.stream("GET", &path)?;
            let tmp = format!("{file}.silo-partial");
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {tmp}"))?;
            if let Err(e) = io::copy(&mut resp, &mut f).and_then(|_| f.sync_all()) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).context("writing the disk image");
            }
            std::fs::rename(&tmp, &file).with_context(|| format!("renaming to {file}"))?;
        }
    }
    Ok(())
}

fn short_id(id: &str) -> String {
    match id.strip_prefix("sha256:") {
        Some(h) => h.chars().take(12).collect(),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_are_dockers() {
        assert_eq!(registry_key("busybox"), HUB_KEY);
        assert_eq!(registry_key("me/app:1"), HUB_KEY);
        assert_eq!(registry_key("127.0.0.1:5000/a:1"), "127.0.0.1:5000");
        assert_eq!(server_key(None), HUB_KEY);
        assert_eq!(server_key(Some("http://127.0.0.1:5000/")), "127.0.0.1:5000");
        assert_eq!(
            split_reference("a/b@sha256:x"),
            ("a/b".into(), "sha256:x".into())
        );
        assert_eq!(split_reference("h:5/a"), ("h:5/a".into(), "latest".into()));
    }
}

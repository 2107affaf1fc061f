//! Image and volume verbs: import (with progress), images, image
//! inspect/tag/rm/prune, and volume create/ls/inspect/rm/prune.

use crate::api::App;
use crate::containers::{confirm, each, print_formatted, print_inspect, print_pruned};
use crate::http::{enc, Body};
use crate::units::{build_filters, human_duration, human_size, now_unix};
use crate::Exit;
use anyhow::{bail, Context, Result};
use bollard_stubs::models::{ImageSummary, VolumeListResponse};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// A tarball file, or - for stdin
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template subset
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show only images of this repository[:tag]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create {
        /// Volume driver name
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume
        #[arg(long)]
        label: Vec<String>,
        /// Set driver specific options
        #[arg(short, long)]
        opt: Vec<String>,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused local volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

/// Counts the bytes read and draws a spinner line on stderr when it is a terminal.
struct Progress<R> {
    inner: R,
    total: Option<u64>,
    done: u64,
    tty: bool,
    last: Instant,
    tick: usize,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.tty && (n == 0 || self.last.elapsed().as_millis() >= 100) {
            self.last = Instant::now();
            self.tick += 1;
            let spin = ['|', '/', '-', '\\'][self.tick % 4];
            let line = match self.total {
                Some(t) if t > 0 => format!(
                    "\r{spin} Importing {} / {} ({:.0}%)",
                    human_size(self.done as f64),
                    human_size(t as f64),
                    self.done as f64 * 100.0 / t as f64
                ),
                _ => format!("\r{spin} Importing {}", human_size(self.done as f64)),
            };
            let mut e = io::stderr().lock();
            let _ = e.write_all(line.as_bytes());
            let _ = e.flush();
        }
        Ok(n)
    }
}

fn split_ref(r: &str) -> (String, String) {
    // A ':' after the last '/' separates the tag (a registry port has a '/' after it).
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), "latest".to_string()),
    }
}

pub fn import(app: &App, a: ImportArgs) -> Result<()> {
    let mut q = vec!["fromSrc=-".to_string()];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_ref(r);
        q.push(format!("repo={}", enc(&repo)));
        q.push(format!("tag={}", enc(&tag)));
    }
    for c in &a.change {
        q.push(format!("changes={}", enc(c)));
    }
    if let Some(m) = &a.message {
        q.push(format!("message={}", enc(m)));
    }
    let path = format!("/images/create?{}", q.join("&"));
    let tty = rustix::termios::isatty(io::stderr());
    let (reader, total): (Box<dyn Read>, Option<u64>) = if a.file == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = std::fs::File::open(&a.file)
            .with_context(|| format!("opening the tarball {:?}", a.file))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let mut progress = Progress {
        inner: reader,
        total,
        done: 0,
        tty,
        last: Instant::now(),
        tick: 0,
    };
    let result = app.client.call(
        "POST",
        &path,
        Body::Stream(&mut progress, "application/x-tar"),
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    let body = result?;
    // The answer is a stream of JSON progress messages; the last status is the image id.
    let mut id = None;
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let v = v.context("decoding the import progress")?;
        if let Some(e) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            bail!(crate::http::HttpError::Api {
                status: 500,
                message: e.to_string()
            });
        }
        if let Some(s) = v["status"].as_str() {
            id = Some(s.to_string());
        }
    }
    println!("{}", id.unwrap_or_default());
    Ok(())
}

/// `silo build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); may be repeated
    #[arg(short = 't', long = "tag")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: DIR/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Set metadata on the image (key=value)
    #[arg(long)]
    pub label: Vec<String>,
    /// The stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Network of the RUN steps (default, none, host or a network's name)
    #[arg(long)]
    pub network: Option<String>,
    /// Print only the image ID
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context
    pub dir: String,
}

/// A tar of the context directory (in memory; `.dockerignore` is applied
/// by silod).
fn context_tar(dir: &std::path::Path, dockerfile: Option<(&str, &[u8])>) -> Result<Vec<u8>> {
    let mut t = tar::Builder::new(Vec::new());
    t.follow_symlinks(false);
    t.mode(tar::HeaderMode::Deterministic);
    t.append_dir_all(".", dir)
        .with_context(|| format!("reading the build context {}", dir.display()))?;
    if let Some((name, data)) = dockerfile {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, data)?;
    }
    Ok(t.into_inner()?)
}

/// `silo build`: sends the context, shows each step as it runs.
pub fn build(app: &App, a: BuildArgs) -> Result<()> {
    let dir = std::path::Path::new(&a.dir);
    if !dir.is_dir() {
        bail!(
            "unable to prepare context: path {:?} is not a directory",
            a.dir
        );
    }
    let mut q = vec!["rm=1".to_string()];
    for t in &a.tag {
        q.push(format!("t={}", enc(t)));
    }
    // A Dockerfile outside the context travels inside it, under a name of
    // its own (as the docker CLI does).
    let outside;
    let mut extra = None;
    if let Some(f) = &a.file {
        let p = std::path::Path::new(f);
        let inside = p
            .canonicalize()
            .ok()
            .zip(dir.canonicalize().ok())
            .and_then(|(p, d)| {
                p.strip_prefix(&d)
                    .ok()
                    .map(|r| r.to_string_lossy().into_owned())
            });
        match inside {
            Some(rel) => q.push(format!("dockerfile={}", enc(&rel))),
            None => {
                outside =
                    std::fs::read(p).with_context(|| format!("reading the Dockerfile {f:?}"))?;
                let name = ".silo-dockerfile";
                extra = Some((name, outside.as_slice()));
                q.push(format!("dockerfile={name}"));
            }
        }
    }
    let mut args = serde_json::Map::new();
    for b in &a.build_arg {
        let (k, v) = match b.split_once('=') {
            Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
            None => (
                b.clone(),
                std::env::var(b).map(Value::String).unwrap_or(Value::Null),
            ),
        };
        args.insert(k, v);
    }
    if !args.is_empty() {
        q.push(format!(
            "buildargs={}",
            enc(&Value::Object(args).to_string())
        ));
    }
    let mut labels = serde_json::Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    if !labels.is_empty() {
        q.push(format!(
            "labels={}",
            enc(&Value::Object(labels).to_string())
        ));
    }
    if let Some(t) = &a.target {
        q.push(format!("target={}", enc(t)));
    }
    if a.no_cache {
        q.push("nocache=1".into());
    }
    if let Some(n) = &a.network {
        q.push(format!("networkmode={}", enc(n)));
    }
    if a.quiet {
        q.push("q=1".into());
    }
    let tar = context_tar(dir, extra)?;
    let resp = app.client.request(
        "POST",
        &format!("/build?{}", q.join("&")),
        Body::Bytes(&tar, "application/x-tar"),
    )?;
    let mut id = None;
    for v in
        serde_json::Deserializer::from_reader(std::io::BufReader::new(resp)).into_iter::<Value>()
    {
        let v = v.context("decoding the build stream")?;
        if let Some(e) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            bail!(crate::http::HttpError::Api {
                status: 500,
                message: e.to_string()
            });
        }
        if let Some(s) = v["stream"].as_str() {
            if !a.quiet {
                print!("{s}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            }
        }
        if let Some(i) = v["aux"]["ID"].as_str() {
            id = Some(i.to_string());
        }
    }
    if a.quiet {
        println!("{}", id.unwrap_or_default());
    }
    Ok(())
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Digest", "DIGEST"),
];

fn image_rows(list: &[ImageSummary], no_trunc: bool, now: i64) -> Vec<Value> {
    let mut rows = Vec::new();
    for i in list {
        let id = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
        let id = if no_trunc {
            i.id.clone()
        } else {
            id.chars().take(12).collect()
        };
        let tags = if i.repo_tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            i.repo_tags.clone()
        };
        for t in tags {
            let (repo, tag) = split_ref(&t);
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id,
                "Digest": "<none>",
                "CreatedSince": format!("{} ago", human_duration(now - i.created)),
                "CreatedAt": crate::units::format_unix(i.created),
                "Size": human_size(i.size as f64),
                "Containers": i.containers.to_string(),
            }));
        }
    }
    rows
}

pub fn images(app: &App, a: ImagesArgs) -> Result<()> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![format!("all={}", a.all)];
    if let Some(f) = build_filters(&filters)? {
        q.push(format!("filters={}", enc(&f)));
    }
    let list: Vec<ImageSummary> = app.get(&format!("/images/json?{}", q.join("&")))?;
    let rows = image_rows(&list, a.no_trunc, now_unix());
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    print_formatted(
        &rows,
        a.format.as_deref(),
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        IMAGE_HEADERS,
    )
}

pub fn tag(app: &App, source: &str, target: &str) -> Result<()> {
    let (repo, tag) = split_ref(target);
    app.post_empty(&format!(
        "/images/{}/tag?repo={}&tag={}",
        enc(source),
        enc(&repo),
        enc(&tag)
    ))
}

pub fn rmi(app: &App, a: RmiArgs) -> Result<()> {
    let mut failed = false;
    for n in &a.images {
        match app.delete(&format!(
            "/images/{}?force={}&noprune={}",
            enc(n),
            a.force,
            a.no_prune
        )) {
            Ok(body) => {
                let items: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                for i in items {
                    if let Some(u) = i["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => match e.downcast_ref::<crate::http::HttpError>() {
                Some(crate::http::HttpError::Api { message, .. }) => {
                    failed = true;
                    eprintln!("Error response from daemon: {message}");
                }
                _ => return Err(e),
            },
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub fn image_cmd(app: &App, cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Ls(a) => images(app, a),
        ImageCmd::Inspect { format, images } => {
            let mut items = Vec::new();
            for i in &images {
                items.push(app.get::<Value>(&format!("/images/{}/json", enc(i)))?);
            }
            print_inspect(&items, format.as_deref())
        }
        ImageCmd::Tag { source, target } => tag(app, &source, &target),
        ImageCmd::Rm(a) => rmi(app, a),
        ImageCmd::Import(a) => import(app, a),
        ImageCmd::Prune { all, force, filter } => {
            let warn = if all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            };
            if !confirm(warn, force) {
                return Ok(());
            }
            let mut filter = filter;
            filter.push(format!("dangling={}", !all));
            let f = build_filters(&filter)?.unwrap_or_default();
            let v: Value =
                app.post::<(), Value>(&format!("/images/prune?filters={}", enc(&f)), None)?;
            print_pruned(&v, "ImagesDeleted", "Images", |i| {
                let untagged = i["Untagged"].as_str().map(|u| format!("untagged: {u}"));
                let deleted = i["Deleted"].as_str().map(|d| format!("deleted: {d}"));
                untagged.into_iter().chain(deleted).collect()
            });
            Ok(())
        }
    }
}

fn kv_map(items: &[String], flag: &str) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i.as_str(), ""));
        if k.is_empty() {
            bail!("invalid {flag} value {i:?}: expected key=value");
        }
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

pub fn volume_cmd(app: &App, cmd: VolumeCmd) -> Result<()> {
    match cmd {
        VolumeCmd::Create {
            driver,
            label,
            opt,
            name,
        } => {
            let body = json!({
                "Name": name.unwrap_or_default(),
                "Driver": driver,
                "Labels": kv_map(&label, "--label")?,
                "DriverOpts": kv_map(&opt, "--opt")?,
            });
            let v: Value = app.post("/volumes/create", Some(&body))?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(())
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let q = build_filters(&filter)?
                .map(|f| format!("?filters={}", enc(&f)))
                .unwrap_or_default();
            let list: VolumeListResponse = app.get(&format!("/volumes{q}"))?;
            for w in list.warnings.unwrap_or_default() {
                eprintln!("WARNING: {w}");
            }
            let vols = list.volumes.unwrap_or_default();
            if quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
                return Ok(());
            }
            let rows: Vec<Value> = vols
                .iter()
                .map(|v| {
                    let mut labels: Vec<String> =
                        v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    labels.sort();
                    json!({
                        "Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
                        "Scope": v.scope.map(|s| s.to_string()).unwrap_or_else(|| "local".into()),
                        "Labels": labels.join(","),
                    })
                })
                .collect();
            print_formatted(
                &rows,
                format.as_deref(),
                "table {{.Driver}}\t{{.Name}}",
                &[
                    ("Name", "VOLUME NAME"),
                    ("Driver", "DRIVER"),
                    ("Mountpoint", "MOUNTPOINT"),
                    ("Scope", "SCOPE"),
                    ("Labels", "LABELS"),
                ],
            )
        }
        VolumeCmd::Inspect { format, volumes } => {
            let mut items = Vec::new();
            for v in &volumes {
                items.push(app.get::<Value>(&format!("/volumes/{}", enc(v)))?);
            }
            print_inspect(&items, format.as_deref())
        }
        VolumeCmd::Rm { force, volumes } => each(&volumes, |v| {
            app.delete(&format!("/volumes/{}?force={force}", enc(v)))
                .map(|_| ())
        }),
        VolumeCmd::Prune { all, force, filter } => {
            if !confirm("WARNING! This will remove anonymous local volumes not used by at least one container.", force) {
                return Ok(());
            }
            let mut filter = filter;
            if all {
                filter.push("all=true".into());
            }
            let q = build_filters(&filter)?
                .map(|f| format!("?filters={}", enc(&f)))
                .unwrap_or_default();
            let v: Value = app.post::<(), Value>(&format!("/volumes/prune{q}"), None)?;
            print_pruned(&v, "VolumesDeleted", "Volumes", |i| {
                vec![i.as_str().unwrap_or_default().to_string()]
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(split_ref("busybox:1.36"), ("busybox".into(), "1.36".into()));
        assert_eq!(
            split_ref("reg:5000/app"),
            ("reg:5000/app".into(), "latest".into())
        );
    }

    #[test]
    fn progress_counts_bytes() {
        let data = vec![0u8; 5000];
        let mut p = Progress {
            inner: &data[..],
            total: Some(5000),
            done: 0,
            tty: false,
            last: Instant::now(),
            tick: 0,
        };
        let mut sink = Vec::new();
        io::copy(&mut p, &mut sink).expect("copy");
        assert_eq!(p.done, 5000);
    }
}

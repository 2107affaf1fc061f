//! The classic builder over the engine core: each instruction of each stage
//! makes an image from the one before. Instructions that only change the
//! config make a layerless image; COPY, ADD and WORKDIR make a layer from a
//! tar the builder writes itself (no container needed); RUN runs a
//! container from the previous image on the default network and commits
//! it. A step whose parent image, instruction and (for COPY and ADD)
//! content checksum match an earlier build's is taken from the cache.
//! Intermediate containers are removed, also when a step fails.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use silo_engine::{Engine, ImageRef, NetworkMode, ProcessConfig, WaitCondition};
use silo_storage::{ContainerConfig as ImageDefaults, Empty, History, ImageConfig, RootFs};

use crate::context::{Context, Kind};
use crate::expand::expand;
use crate::ignore::Ignore;
use crate::parse::{pairs, parse, words, Args, Dockerfile, Instruction};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The build context: an uncompressed tar file, indexed, never unpacked.
    pub context_tar: PathBuf,
    /// The Dockerfile's path inside the context ("Dockerfile").
    pub dockerfile: String,
    /// "repo:tag" names for the result.
    pub tags: Vec<String>,
    /// `--build-arg` values (a value of None takes the environment's).
    pub build_args: BTreeMap<String, Option<String>>,
    /// Labels added to the final image.
    pub labels: BTreeMap<String, String>,
    /// The stage to stop at.
    pub target: Option<String>,
    pub no_cache: bool,
    /// The network of RUN steps.
    pub network: NetworkMode,
    /// `--add-host` entries for RUN steps.
    pub extra_hosts: Vec<(String, String)>,
    /// Keep the containers of successful RUN steps (Docker's `rm=false`);
    /// a failed step's container is always removed.
    pub keep_containers: bool,
    /// Pull every FROM image first (`--pull`); a missing one is pulled
    /// in any case.
    pub pull: bool,
    /// `--cache-from` images: when given, they are the only cache (as with
    /// the classic builder): a RUN or COPY step reuses a source's layer
    /// when the source's history and layers begin as the build's do and
    /// its next history entry is the step.
    pub cache_from: Vec<String>,
}

/// What a build reports as it goes (the front end turns it into its
/// stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Step N/M : INSTRUCTION`.
    Step {
        n: usize,
        total: usize,
        text: String,
    },
    /// The step's result came from the cache.
    Cached,
    /// Output of a RUN step.
    Output(Vec<u8>),
    /// The step's image (short id).
    Made(String),
    /// An intermediate container was removed.
    Removed(String),
}

/// A build that failed; the message names the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] crate::parse::ParseError),
    #[error("Dockerfile line {line}: {message}")]
    Step { line: usize, message: String },
    #[error("the Dockerfile {0:?} cannot be read: {1}")]
    Dockerfile(String, std::io::Error),
    #[error("{0}")]
    Other(String),
}

fn step_err(i: &Instruction, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        line: i.line,
        message: message.into(),
    }
}

/// The state of one stage.
#[derive(Debug, Clone)]
struct Stage {
    name: Option<String>,
    /// The current image (None: FROM scratch and nothing made yet).
    image: Option<String>,
    config: ImageConfig,
    /// ARGs declared in the stage, with their values.
    args: BTreeMap<String, String>,
}

fn now() -> String {
    silo_units::now_rfc3339()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// The PATH a build's images get when their base has none (Docker's).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An empty image config (FROM scratch).
fn scratch() -> ImageConfig {
    ImageConfig {
        architecture: match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .to_string(),
        os: "linux".into(),
        created: None,
        author: None,
        config: ImageDefaults::default(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        },
        history: Vec::new(),
    }
}

/// The builder's cache: `<storage>/build-cache/<key>` holds an image id.
struct Cache {
    dir: PathBuf,
}

impl Cache {
    fn get(&self, engine: &Engine, key: &str) -> Option<String> {
        let id = std::fs::read_to_string(self.dir.join(key)).ok()?;
        engine.image(id.trim()).ok().map(|i| i.id)
    }

    fn put(&self, key: &str, id: &str) {
        let _ = std::fs::create_dir_all(&self.dir);
        let tmp = self.dir.join(format!(".{key}.tmp"));
        if std::fs::write(&tmp, id).is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(key));
        }
    }
}

/// Runs a build; returns the final image's id.
pub fn build(
    engine: &Engine,
    req: &BuildRequest,
    out: &mut dyn FnMut(Event),
) -> Result<String, BuildError> {
    let df_name = if req.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        req.dockerfile.as_str()
    };
    let ctx = Context::open(&req.context_tar).map_err(|e| BuildError::Other(e.to_string()))?;
    let df_rel = rel_path(df_name)
        .map_err(|e| BuildError::Dockerfile(df_name.to_string(), std::io::Error::other(e)))?;
    let text = ctx.read_to_string(&df_rel).ok_or_else(|| {
        BuildError::Dockerfile(
            df_name.to_string(),
            std::io::Error::other("no such file in the build context"),
        )
    })?;
    let df = parse(&text)?;
    let ignore = ctx
        .read_to_string(".dockerignore")
        .map(|t| Ignore::parse(&t))
        .unwrap_or_default();
    let mut b = Builder {
        engine,
        req,
        df: &df,
        ctx,
        ignore,
        cache: Cache {
            dir: engine.storage().root().join("build-cache"),
        },
        stages: Vec::new(),
        global_args: BTreeMap::new(),
        used_args: Vec::new(),
        made: Vec::new(),
        sources: req
            .cache_from
            .iter()
            .filter_map(|r| engine.image(r).ok().map(|i| i.config))
            .collect(),
    };
    for r in &req.cache_from {
        if engine.image(r).is_err() {
            out(Event::Output(
                format!("[Warning] cache-from image {r} is not here; it is not used\n")
                    .into_bytes(),
            ));
        }
    }
    let result = b.run(out);
    if result.is_err() {
        // A failed build leaves no image of its own behind (cached steps
        // of earlier builds stay).
        for id in b.made.iter().rev() {
            let _ = engine.remove_image(id, false);
        }
    }
    result
}

/// A context path, normalized, refusing `..` that leaves the context.
fn rel_path(rel: &str) -> Result<String, String> {
    let mut out: Vec<&str> = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(format!("{rel}: forbidden path outside the build context"));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

struct Builder<'a> {
    engine: &'a Engine,
    req: &'a BuildRequest,
    df: &'a Dockerfile,
    ctx: Context,
    ignore: Ignore,
    cache: Cache,
    stages: Vec<Stage>,
    /// ARGs before the first FROM.
    global_args: BTreeMap<String, String>,
    used_args: Vec<String>,
    /// Images this build made (not taken from the cache).
    made: Vec<String>,
    /// The configs of the `--cache-from` images found.
    sources: Vec<ImageConfig>,
}

impl Builder<'_> {
    fn run(&mut self, out: &mut dyn FnMut(Event)) -> Result<String, BuildError> {
        let ins = &self.df.instructions;
        // The instructions up to the target stage's end.
        let mut last = ins.len();
        if let Some(t) = &self.req.target {
            let mut found = false;
            for (k, i) in ins.iter().enumerate() {
                if i.keyword == "FROM" {
                    if found {
                        last = k;
                        break;
                    }
                    found = stage_name(i).is_some_and(|n| n.eq_ignore_ascii_case(t));
                }
            }
            if !found {
                return Err(BuildError::Other(format!(
                    "failed to reach build target {t} in Dockerfile"
                )));
            }
        }
        if !ins.iter().any(|i| i.keyword == "FROM") {
            return Err(BuildError::Other(
                "the Dockerfile has no FROM instruction".into(),
            ));
        }
        let total = last;
        for (k, i) in ins[..last].iter().enumerate() {
            out(Event::Step {
                n: k + 1,
                total,
                text: i.original.clone(),
            });
            self.step(i, out)?;
        }
        let stage = self
            .stages
            .last()
            .ok_or_else(|| BuildError::Other("no stage was built".into()))?
            .clone();
        // --label values go on the final image.
        let mut final_id = match &stage.image {
            Some(id) => id.clone(),
            None => self.commit_config(&stage.config, "")?,
        };
        if !self.req.labels.is_empty() {
            let mut cfg = self.image_config(&final_id)?;
            let labels = cfg.config.labels.get_or_insert_with(Default::default);
            labels.extend(self.req.labels.clone());
            let parent = final_id.clone();
            final_id = self.commit_config(&cfg, "LABEL (build labels)")?;
            let _ = self.engine.storage().set_parent(&final_id, &parent);
        }
        for t in &self.req.tags {
            self.engine
                .tag_image(&final_id, t)
                .map_err(|e| BuildError::Other(format!("tagging {t}: {e}")))?;
        }
        let unused: Vec<&String> = self
            .req
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            out(Event::Output(
                format!("[Warning] One or more build-args {unused:?} were not consumed\n")
                    .into_bytes(),
            ));
        }
        Ok(final_id)
    }

    fn image_config(&self, id: &str) -> Result<ImageConfig, BuildError> {
        self.engine
            .image(id)
            .map(|i| i.config)
            .map_err(|e| BuildError::Other(e.to_string()))
    }

    fn cur(&mut self) -> &mut Stage {
        self.stages.last_mut().expect("a stage exists after FROM")
    }

    /// The variables visible to an instruction: the stage's ARGs, then its
    /// ENV (ENV wins, as in Docker).
    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |k: &str| {
            let Some(s) = self.stages.last() else {
                return self.global_args.get(k).cloned();
            };
            let env = s.config.config.env.iter().flatten().find_map(|e| {
                e.split_once('=')
                    .filter(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            });
            env.or_else(|| s.args.get(k).cloned())
        }
    }

    fn expand(&self, i: &Instruction, s: &str) -> Result<String, BuildError> {
        let get = self.lookup();
        expand(s, self.df.escape, &get).map_err(|e| step_err(i, e.to_string()))
    }

    /// Stores `cfg` as a new layerless image whose history gains
    /// `created_by` (when given); returns its id.
    fn commit_config(&self, cfg: &ImageConfig, created_by: &str) -> Result<String, BuildError> {
        self.store_image(cfg, created_by, true)
    }

    /// Stores `cfg` (whose rootfs already has the new layer) with a
    /// history entry for the layer.
    fn commit_layer(&self, cfg: &ImageConfig, created_by: &str) -> Result<String, BuildError> {
        self.store_image(cfg, created_by, false)
    }

    fn store_image(
        &self,
        cfg: &ImageConfig,
        created_by: &str,
        empty_layer: bool,
    ) -> Result<String, BuildError> {
        let mut cfg = cfg.clone();
        let t = now();
        cfg.created = Some(t.clone());
        if !created_by.is_empty() {
            cfg.history.push(History {
                created: Some(t),
                created_by: Some(created_by.to_string()),
                author: None,
                comment: None,
                empty_layer,
            });
        }
        let bytes = serde_json::to_vec(&cfg).map_err(|e| BuildError::Other(e.to_string()))?;
        self.engine
            .storage()
            .add_image(&bytes, None, None)
            .map(|i| i.id)
            .map_err(|e| BuildError::Other(e.to_string()))
    }

    /// The cache key of a step.
    fn key(&self, parent: &str, what: &str) -> String {
        sha(format!("{parent}\n{what}").as_bytes())
    }

    /// Takes the step from the cache if it can; else makes it with `make`
    /// and records it.
    fn cached(
        &mut self,
        what: &str,
        out: &mut dyn FnMut(Event),
        make: impl FnOnce(&mut Self, &mut dyn FnMut(Event)) -> Result<String, BuildError>,
    ) -> Result<(), BuildError> {
        self.cached_layer(what, None, out, make)
    }

    /// A layer step's layer from a `--cache-from` image, if one matches.
    fn layer_from_sources(&self, created_by: &str) -> Option<String> {
        let cfg = &self.stages.last()?.config;
        let (n, l) = (cfg.history.len(), cfg.rootfs.diff_ids.len());
        self.sources.iter().find_map(|src| {
            let same_history = src.history.len() > n
                && src.history[..n]
                    .iter()
                    .zip(&cfg.history)
                    .all(|(a, b)| a.created_by == b.created_by && a.empty_layer == b.empty_layer);
            let same_layers = src.rootfs.diff_ids.len() > l
                && src.rootfs.diff_ids[..l] == cfg.rootfs.diff_ids[..];
            let next = &src.history.get(n)?;
            (same_history
                && same_layers
                && !next.empty_layer
                && next.created_by.as_deref() == Some(created_by))
            .then(|| src.rootfs.diff_ids[l].clone())
        })
    }

    /// [`Self::cached`] for a step that makes a layer recorded as
    /// `created_by`, which `--cache-from` images may provide.
    fn cached_layer(
        &mut self,
        what: &str,
        created_by: Option<&str>,
        out: &mut dyn FnMut(Event),
        make: impl FnOnce(&mut Self, &mut dyn FnMut(Event)) -> Result<String, BuildError>,
    ) -> Result<(), BuildError> {
        let parent = self
            .stages
            .last()
            .and_then(|s| s.image.clone())
            .unwrap_or_else(|| "scratch".into());
        let key = self.key(&parent, what);
        let hit = if self.req.no_cache {
            None
        } else if !self.req.cache_from.is_empty() {
            match created_by.and_then(|c| self.layer_from_sources(c).map(|d| (c, d))) {
                Some((c, diff_id)) => {
                    let mut cfg = self.stages.last().expect("a stage").config.clone();
                    cfg.rootfs.diff_ids.push(diff_id);
                    let id = self.commit_layer(&cfg, c)?;
                    self.made.push(id.clone());
                    if parent != "scratch" {
                        let _ = self.engine.storage().set_parent(&id, &parent);
                    }
                    Some(id)
                }
                None => None,
            }
        } else {
            self.cache.get(self.engine, &key)
        };
        let id = match hit {
            Some(id) => {
                out(Event::Cached);
                id
            }
            None => {
                let id = make(self, out)?;
                self.made.push(id.clone());
                self.cache.put(&key, &id);
                if parent != "scratch" {
                    let _ = self.engine.storage().set_parent(&id, &parent);
                }
                id
            }
        };
        out(Event::Made(short(&id)));
        let cfg = self.image_config(&id)?;
        let s = self.cur();
        s.image = Some(id);
        s.config = cfg;
        Ok(())
    }

    fn step(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        if i.keyword != "FROM" && i.keyword != "ARG" && self.stages.is_empty() {
            return Err(step_err(i, format!("{} before the first FROM", i.keyword)));
        }
        match i.keyword.as_str() {
            "FROM" => self.from(i, out),
            "ARG" => self.arg(i, out),
            "RUN" => self.run_step(i, out),
            "COPY" | "ADD" => self.copy(i, out),
            "WORKDIR" => self.workdir(i, out),
            _ => self.meta(i, out),
        }
    }

    fn from(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        let Args::Shell(text) = &i.args else {
            return Err(step_err(i, "FROM takes an image name"));
        };
        if let Some(p) = i.flag("platform") {
            let host = silo_oci::image::Platform::host();
            let want = self.expand(i, p)?;
            if !want.is_empty() && !want.starts_with(&format!("{}/{}", host.os, host.architecture))
            {
                return Err(step_err(
                    i,
                    format!(
                        "FROM --platform={want}: this host builds {}/{} only",
                        host.os, host.architecture
                    ),
                ));
            }
        }
        let get = |k: &str| self.global_args.get(k).cloned();
        let text = expand(text, self.df.escape, &get).map_err(|e| step_err(i, e.to_string()))?;
        let ws = words(&text, self.df.escape).map_err(|e| step_err(i, e))?;
        let (image, name) = match ws.as_slice() {
            [img] => (img.clone(), None),
            [img, as_, name] if as_.eq_ignore_ascii_case("as") => {
                (img.clone(), Some(name.to_ascii_lowercase()))
            }
            _ => return Err(step_err(i, "FROM takes IMAGE [AS NAME]")),
        };
        let (id, config) = if image.eq_ignore_ascii_case("scratch") {
            (None, scratch())
        } else if let Some(s) = self
            .stages
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()))
        {
            (s.image.clone(), s.config.clone())
        } else {
            let local = if self.req.pull {
                None
            } else {
                self.engine.image(&image).ok()
            };
            let img = match local {
                Some(img) => img,
                None => {
                    out(Event::Output(format!("Pulling {image}\n").into_bytes()));
                    let req = silo_engine::TransferRequest {
                        reference: image.clone(),
                        credentials: None,
                        platform: None,
                    };
                    match self.engine.pull(&req, &|_| {}) {
                        Ok(img) => img,
                        // --pull with the image at hand: use it (offline).
                        Err(e) => match self.engine.image(&image) {
                            Ok(img) if self.req.pull => img,
                            _ => {
                                return Err(step_err(
                                    i,
                                    format!("FROM {image}: no such image or build stage, and pulling it failed: {e}"),
                                ))
                            }
                        },
                    }
                }
            };
            (Some(img.id.clone()), img.config)
        };
        if let Some(id) = &id {
            out(Event::Made(short(id)));
        }
        let triggers = config.config.on_build.clone().unwrap_or_default();
        let mut config = config;
        config.config.on_build = None;
        // As the classic builder: an image without PATH gets the default.
        let env = config.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        self.stages.push(Stage {
            name,
            image: id,
            config,
            args: BTreeMap::new(),
        });
        // ONBUILD triggers of the base run first.
        for t in triggers {
            let trig = parse(&t)
                .map_err(|e| step_err(i, format!("ONBUILD trigger {t:?}: {e}")))?
                .instructions;
            for mut ti in trig {
                ti.line = i.line;
                if matches!(ti.keyword.as_str(), "FROM" | "ONBUILD" | "MAINTAINER") {
                    return Err(step_err(
                        i,
                        format!("{} is not allowed as an ONBUILD trigger", ti.keyword),
                    ));
                }
                out(Event::Output(
                    format!("# Executing 1 build trigger: {}\n", ti.original).into_bytes(),
                ));
                self.step(&ti, out)?;
            }
        }
        Ok(())
    }

    fn arg(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        let Args::Shell(text) = &i.args else {
            return Err(step_err(i, "ARG takes NAME[=default]"));
        };
        let text = self.expand(i, text)?;
        for w in words(&text, self.df.escape).map_err(|e| step_err(i, e))? {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (w.clone(), None),
            };
            if name.is_empty() {
                return Err(step_err(i, format!("ARG {w:?} has no name")));
            }
            // A build arg without a value (null) is not given: the client
            // fills values from its environment, never silod's.
            let given = self.req.build_args.get(&name).cloned().flatten();
            if given.is_some() {
                self.used_args.push(name.clone());
            }
            let value = given.or(default).or_else(|| {
                // A stage's ARG without a default takes the global one.
                (!self.stages.is_empty())
                    .then(|| self.global_args.get(&name).cloned())
                    .flatten()
            });
            match self.stages.last_mut() {
                None => {
                    if let Some(v) = value {
                        self.global_args.insert(name, v);
                    }
                }
                Some(s) => {
                    s.args.insert(name, value.unwrap_or_default());
                }
            }
        }
        if self.stages.is_empty() {
            return Ok(());
        }
        // In a stage, as the classic builder: a layerless image that
        // records the ARG.
        let cfg = self.stages.last().expect("a stage").config.clone();
        let args: Vec<String> = self
            .stages
            .last()
            .map(|s| s.args.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        let what = format!("ARG {} {}", i.original, args.join(" "));
        let created_by = format!("/bin/sh -c #(nop)  {}", i.original);
        self.cached(&what, out, |b, _| b.commit_config(&cfg, &created_by))
    }

    /// The environment of a RUN: the image's ENV plus the stage's ARGs.
    fn run_env(&self) -> Vec<String> {
        let s = self.stages.last().expect("a stage");
        let mut env: Vec<String> = s.config.config.env.clone().unwrap_or_default();
        for (k, v) in &s.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }

    fn shell(&self) -> Vec<String> {
        self.stages
            .last()
            .and_then(|s| s.config.config.shell.clone())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn run_step(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        if let Some((k, _)) = i.flags.first() {
            return Err(step_err(
                i,
                format!("RUN --{k} is a BuildKit flag; the classic builder has none"),
            ));
        }
        let argv = match &i.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        };
        if argv.is_empty() {
            return Err(step_err(i, "RUN needs a command"));
        }
        let env = self.run_env();
        let args_key: Vec<String> = self
            .stages
            .last()
            .map(|s| s.args.iter().map(|(k, v)| format!("{k}={v}")).collect())
            .unwrap_or_default();
        let what = format!(
            "RUN {}\n{}",
            serde_json::to_string(&argv).unwrap_or_default(),
            args_key.join("\n")
        );
        let created_by = argv.join(" ");
        self.cached_layer(&what, Some(&created_by), out, |b, out| {
            b.run_container(i, argv, env, out)
        })
    }

    /// Runs `argv` in a container from the current image, commits it and
    /// removes it (also when it fails).
    fn run_container(
        &mut self,
        i: &Instruction,
        argv: Vec<String>,
        env: Vec<String>,
        out: &mut dyn FnMut(Event),
    ) -> Result<String, BuildError> {
        let s = self.stages.last().expect("a stage").clone();
        let Some(image) = s.image.clone() else {
            return Err(step_err(
                i,
                "RUN in an empty image (FROM scratch with nothing copied in)",
            ));
        };
        let cc = &s.config.config;
        let config = silo_engine::ContainerConfig {
            image: ImageRef {
                name: image.clone(),
                id: image.clone(),
            },
            process: ProcessConfig {
                args: argv.clone(),
                env,
                cwd: cc
                    .working_dir
                    .clone()
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| "/".into()),
                user: cc.user.clone().unwrap_or_default(),
                capabilities: silo_oci::DEFAULT_CAPS
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                ..Default::default()
            },
            namespaces: silo_engine::NamespaceConfig {
                network: self.req.network.clone(),
                ..Default::default()
            },
            extra_hosts: self.req.extra_hosts.clone(),
            ..Default::default()
        };
        let created = self
            .engine
            .create(silo_engine::CreateRequest {
                id: None,
                name: None,
                config,
                extensions: Default::default(),
            })
            .map_err(|e| step_err(i, e.to_string()))?;
        let id = created.id.clone();
        let result = (|| {
            self.engine
                .start(&id)
                .map_err(|e| step_err(i, e.to_string()))?;
            let logs = self
                .engine
                .logs(
                    &id,
                    silo_engine::LogOptions {
                        follow: true,
                        stdout: true,
                        stderr: true,
                        ..Default::default()
                    },
                )
                .map_err(|e| step_err(i, e.to_string()))?;
            for chunk in logs {
                out(Event::Output(chunk.bytes));
            }
            let w = self
                .engine
                .wait(&id, WaitCondition::NotRunning)
                .map_err(|e| step_err(i, e.to_string()))?;
            if let Some(e) = w.error {
                return Err(step_err(i, e));
            }
            if w.exit_code != 0 {
                return Err(step_err(
                    i,
                    format!(
                        "The command '{}' returned a non-zero code: {}",
                        argv.join(" "),
                        w.exit_code
                    ),
                ));
            }
            let spec = silo_storage::CommitSpec {
                config: s.config.config.clone(),
                created_by: Some(argv.join(" ")),
                ..Default::default()
            };
            self.engine
                .commit(&id, &silo_engine::CommitRequest { spec, pause: false })
                .map(|img| img.id)
                .map_err(|e| step_err(i, e.to_string()))
        })();
        if self.req.keep_containers && result.is_ok() {
            return result;
        }
        match self.engine.remove(&id, true, true) {
            Ok(()) => out(Event::Removed(short(&id))),
            Err(e) => out(Event::Output(
                format!("removing intermediate container {}: {e}\n", short(&id)).into_bytes(),
            )),
        }
        result
    }

    fn workdir(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        let Args::Shell(text) = &i.args else {
            return Err(step_err(i, "WORKDIR takes a path"));
        };
        let dir = self.expand(i, text)?;
        let base = self
            .stages
            .last()
            .and_then(|s| s.config.config.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        let abs = if dir.starts_with('/') {
            dir
        } else {
            format!("{}/{}", base.trim_end_matches('/'), dir)
        };
        let abs = normalize_abs(&abs);
        let cfg_now = self.stages.last().expect("a stage").config.clone();
        let made_at = self.resolve_in_image(&cfg_now, &abs);
        let what = format!("WORKDIR {abs}");
        self.cached(&what, out, |b, _| {
            let mut cfg = b.stages.last().expect("a stage").config.clone();
            cfg.config.working_dir = Some(abs.clone());
            // The directory is made (as a layer) when no layer has it.
            if b.lower_meta(&cfg, &made_at).is_none() {
                let mut layer = LayerTar::new(b, &cfg).map_err(|e| step_err(i, e))?;
                layer
                    .dir_chain(&made_at, 0o755, 0, 0)
                    .map_err(|e| step_err(i, e))?;
                let (diff_id, lease) = layer.finish().map_err(|e| step_err(i, e))?;
                cfg.rootfs.diff_ids.push(diff_id);
                let id = b.commit_layer(&cfg, &format!("WORKDIR {abs}"))?;
                drop(lease);
                return Ok(id);
            }
            b.commit_config(&cfg, &format!("/bin/sh -c #(nop) WORKDIR {abs}"))
        })
    }

    /// What `abs` is in the image's layers (topmost copy; a whiteout hides
    /// it): its metadata.
    fn lower_entry(&self, cfg: &ImageConfig, abs: &str) -> Option<(std::fs::Metadata, PathBuf)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let rel = abs.trim_start_matches('/');
        if rel.is_empty() {
            return None;
        }
        for d in cfg.rootfs.diff_ids.iter().rev() {
            let p = self.engine.storage().layer_path(d).join(rel);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None;
                }
                return Some((m, p));
            }
        }
        None
    }

    /// `abs` with the image's symbolic links on the way resolved inside
    /// the image (`/bin` → `/usr/bin` on merged-/usr images), so a layer
    /// never puts a directory over a link.
    fn resolve_in_image(&self, cfg: &ImageConfig, abs: &str) -> String {
        let mut todo: Vec<String> = abs
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .rev()
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let here = format!("/{}", done.join("/"));
            let Some((m, path)) = self.lower_entry(cfg, &here) else {
                continue;
            };
            if !m.file_type().is_symlink() || hops >= 40 {
                continue;
            }
            hops += 1;
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            for t in target.split('/').filter(|c| !c.is_empty()).rev() {
                todo.push(t.to_string());
            }
        }
        format!("/{}", done.join("/"))
    }

    /// Whether `abs` is a directory in the image.
    fn lower_is_dir(&self, cfg: &ImageConfig, abs: &str) -> bool {
        self.lower_entry(cfg, abs).is_some_and(|(m, _)| m.is_dir())
    }

    /// A file of the image (the topmost layer's copy), as text.
    fn image_file(&self, cfg: &ImageConfig, abs: &str) -> Option<String> {
        let (m, path) = self.lower_entry(cfg, abs)?;
        m.is_file()
            .then(|| std::fs::read_to_string(path).ok())
            .flatten()
    }

    /// `--chown` USER[:GROUP], each a number or a name in the image's
    /// /etc/passwd and /etc/group; a user alone takes its primary group
    /// (a number alone is also the group, as Docker has it).
    fn owner(&self, cfg: &ImageConfig, spec: &str) -> Result<(u32, u32), String> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let field = |file: &str, name: &str, col: usize| -> Result<u32, String> {
            let text = self
                .image_file(cfg, file)
                .ok_or_else(|| format!("{name}: the image has no {file} to look it up in"))?;
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(col).and_then(|v| v.parse().ok()))
                .ok_or_else(|| format!("{name}: no such entry in the image's {file}"))
        };
        let (uid, primary) = match u.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => (field("/etc/passwd", u, 2)?, field("/etc/passwd", u, 3)?),
        };
        let gid = match g {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => field("/etc/group", g, 2)?,
            },
        };
        Ok((uid, gid))
    }

    /// The modification time of `abs` in the image's layers (0 if none).
    fn lower_mtime(&self, cfg: &ImageConfig, abs: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        self.lower_entry(cfg, abs)
            .map_or(0, |(m, _)| u64::try_from(m.mtime()).unwrap_or(0))
    }

    /// The metadata of `abs` in the image's layers: (mode, uid, gid); the
    /// root is root's 0755.
    fn lower_meta(&self, cfg: &ImageConfig, abs: &str) -> Option<(u32, u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        if abs.trim_start_matches('/').is_empty() {
            return Some((0o755, 0, 0));
        }
        self.lower_entry(cfg, abs)
            .map(|(m, _)| (m.mode() & 0o7777, m.uid(), m.gid()))
    }

    fn copy(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        let is_add = i.keyword == "ADD";
        for (k, _) in &i.flags {
            if !matches!(k.as_str(), "from" | "chown" | "chmod") || (is_add && k == "from") {
                return Err(step_err(i, format!("{} does not take --{k}", i.keyword)));
            }
        }
        let items: Vec<String> = match &i.args {
            Args::Exec(v) => v
                .iter()
                .map(|a| self.expand(i, a))
                .collect::<Result<_, _>>()?,
            Args::Shell(s) => {
                let t = self.expand(i, s)?;
                words(&t, self.df.escape).map_err(|e| step_err(i, e))?
            }
        };
        if items.len() < 2 {
            return Err(step_err(
                i,
                format!(
                    "{} requires at least two arguments: source(s) and destination",
                    i.keyword
                ),
            ));
        }
        let (srcs, dest) = items.split_at(items.len() - 1);
        let dest = dest[0].clone();
        let workdir = self
            .stages
            .last()
            .and_then(|s| s.config.config.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest)
        };
        let cfg_now = self.stages.last().expect("a stage").config.clone();
        let dest_abs = self.resolve_in_image(&cfg_now, &normalize_abs(&dest_abs));
        // Copying onto a directory of the image copies into it (Docker's).
        let dest_is_dir = dest.ends_with('/')
            || srcs.len() > 1
            || dest == "."
            || dest.ends_with("/.")
            || self.lower_is_dir(&cfg_now, &dest_abs);
        let (uid, gid) = match i.flag("chown") {
            None => (0, 0),
            Some(c) => {
                let c = self.expand(i, c)?;
                let cfg = self.stages.last().expect("a stage").config.clone();
                self.owner(&cfg, &c)
                    .map_err(|e| step_err(i, format!("--chown={c}: {e}")))?
            }
        };
        let chmod = match i.flag("chmod") {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| step_err(i, format!("--chmod={m}: not an octal mode")))?,
            ),
        };
        // Gather the sources: from the context, or from a stage or image.
        let from = i.flag("from").map(|f| self.expand(i, f)).transpose()?;
        let mut files: Vec<Source> = Vec::new();
        let mut checksum = Sha256::new();
        let mut keep = Vec::new();
        match &from {
            None => {
                for src in srcs {
                    if src.contains("://") {
                        return Err(step_err(i, format!("{} {src}: remote URLs are not supported (this host has no internet access; download the file into the context)", i.keyword)));
                    }
                    let matched = self.context_glob(src).map_err(|e| step_err(i, e))?;
                    if matched.is_empty() {
                        return Err(step_err(i, format!("{} failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist", i.keyword)));
                    }
                    for rel in matched {
                        files.push(Source { rel });
                    }
                }
            }
            Some(stage) => {
                let image = match self
                    .stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(stage.to_ascii_lowercase().as_str()))
                {
                    Some(s) => s.image.clone().ok_or_else(|| {
                        step_err(i, format!("--from={stage}: the stage is empty"))
                    })?,
                    None => match stage.parse::<usize>().ok().and_then(|n| self.stages.get(n)) {
                        Some(s) => s.image.clone().ok_or_else(|| {
                            step_err(i, format!("--from={stage}: the stage is empty"))
                        })?,
                        None => self.engine.image(stage).map(|img| img.id).map_err(|_| {
                            step_err(i, format!("--from={stage}: no such stage or image"))
                        })?,
                    },
                };
                for src in srcs {
                    let tar = self
                        .tar_from_image(&image, src)
                        .map_err(|e| step_err(i, e))?;
                    hash_tar(&mut checksum, &tar).map_err(|e| step_err(i, e))?;
                    keep.push((src.clone(), tar));
                }
            }
        }
        for f in &files {
            hash_path(&self.ctx, &mut checksum, &f.rel).map_err(|e| step_err(i, e))?;
        }
        let sum = hex(&checksum.finalize());
        let what = format!(
            "{} {}:{sum} {dest_abs} {uid}:{gid} {chmod:?} {dest_is_dir}",
            i.keyword,
            from.as_deref().unwrap_or("context")
        );
        let is_dir = |b: &Self, rel: &str| b.ctx.get(rel).is_some_and(|e| e.kind == Kind::Dir);
        let single_file_src = files.len() == 1 && !is_dir(self, &files[0].rel);
        let created_by = format!(
            "{} {}:{} in {dest_abs}",
            i.keyword,
            if from.is_some() { "stage" } else { "file" },
            &sum[..12]
        );
        let cb = created_by.clone();
        self.cached_layer(&what, Some(&cb), out, |b, _| {
            let mut cfg = b.stages.last().expect("a stage").config.clone();
            let mut layer = LayerTar::new(b, &cfg).map_err(|e| step_err(i, e))?;
            let opts = CopyOpts { uid, gid, chmod };
            for f in &files {
                let rel = f.rel.as_str();
                let dir = is_dir(b, rel);
                let target = if dest_is_dir || dir || !single_file_src {
                    if dir {
                        dest_abs.clone()
                    } else {
                        let base = rel.rsplit('/').next().unwrap_or(rel);
                        format!("{}/{base}", dest_abs.trim_end_matches('/'))
                    }
                } else {
                    dest_abs.clone()
                };
                if is_add && !dir && is_archive(&b.ctx, rel) {
                    layer
                        .extract_archive(&b.ctx, rel, &dest_abs, &opts)
                        .map_err(|e| step_err(i, e))?;
                } else {
                    layer
                        .add_context(b, rel, &target, &opts)
                        .map_err(|e| step_err(i, e))?;
                }
            }
            for (src, tar) in &keep {
                layer
                    .add_tar(tar, &dest_abs, dest_is_dir, src, &opts)
                    .map_err(|e| step_err(i, e))?;
            }
            let (diff_id, lease) = layer.finish().map_err(|e| step_err(i, e))?;
            cfg.rootfs.diff_ids.push(diff_id);
            let id = b.commit_layer(&cfg, &created_by)?;
            drop(lease);
            Ok(id)
        })
    }

    /// The context paths a COPY source names (a Go glob per element, no
    /// escape from the context, .dockerignore applied).
    fn context_glob(&self, src: &str) -> Result<Vec<String>, String> {
        let clean = rel_path(src)?;
        let parts: Vec<&str> = clean.split('/').filter(|p| !p.is_empty()).collect();
        let mut found = vec![String::new()];
        for part in &parts {
            let mut next = Vec::new();
            for rel in &found {
                match self.ctx.get(rel).map(|e| e.kind) {
                    Some(Kind::Symlink) => {
                        return Err(format!(
                            "{src}: a symbolic link inside the path is not followed"
                        ))
                    }
                    Some(Kind::Dir) => {}
                    _ => continue,
                }
                let wild = part.contains(['*', '?', '[']);
                let names: Vec<String> = if wild {
                    self.ctx
                        .children(rel)
                        .into_iter()
                        .filter(|n| crate::ignore::glob(part, n))
                        .collect()
                } else {
                    vec![part.to_string()]
                };
                for n in names {
                    let r = if rel.is_empty() {
                        n.clone()
                    } else {
                        format!("{rel}/{n}")
                    };
                    if self.ctx.get(&r).is_some() && !self.ignore.excludes(&r) {
                        next.push(r);
                    }
                }
            }
            found = next;
        }
        if parts.is_empty() {
            // COPY . dest: the whole context.
            return Ok(vec![String::new()]);
        }
        Ok(found)
    }

    /// A tar of `path` in image `image` (through a created, never started
    /// container, removed afterwards).
    fn tar_from_image(&self, image: &str, path: &str) -> Result<Vec<u8>, String> {
        let config = silo_engine::ContainerConfig {
            image: ImageRef {
                name: image.to_string(),
                id: image.to_string(),
            },
            process: ProcessConfig {
                args: vec!["true".into()],
                cwd: "/".into(),
                ..Default::default()
            },
            namespaces: silo_engine::NamespaceConfig {
                network: NetworkMode::None,
                ..Default::default()
            },
            ..Default::default()
        };
        let c = self
            .engine
            .create(silo_engine::CreateRequest {
                id: None,
                name: None,
                config,
                extensions: Default::default(),
            })
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let got = self.engine.archive_get(&c.id, path, &mut buf);
        let _ = self.engine.remove(&c.id, true, true);
        got.map_err(|e| format!("--from: {path}: {e}"))?;
        Ok(buf)
    }

    /// Config-only instructions.
    fn meta(&mut self, i: &Instruction, out: &mut dyn FnMut(Event)) -> Result<(), BuildError> {
        let mut cfg = self.stages.last().expect("a stage").config.clone();
        let c = &mut cfg.config;
        let shell = self.shell();
        let text_of = |b: &Self, args: &Args| -> Result<String, BuildError> {
            match args {
                Args::Shell(s) => b.expand(i, s),
                Args::Exec(v) => Ok(serde_json::to_string(v).unwrap_or_default()),
            }
        };
        let cmd_of = |args: &Args| -> Vec<String> {
            match args {
                Args::Exec(v) => v.clone(),
                Args::Shell(s) if s.is_empty() => Vec::new(),
                Args::Shell(s) => {
                    let mut v = shell.clone();
                    v.push(s.clone());
                    v
                }
            }
        };
        match i.keyword.as_str() {
            "ENV" | "LABEL" => {
                let t = text_of(self, &i.args)?;
                let ps = pairs(&t, self.df.escape, true).map_err(|e| step_err(i, e))?;
                for (k, v) in ps {
                    if i.keyword == "ENV" {
                        let env = c.env.get_or_insert_with(Vec::new);
                        env.retain(|e| e.split('=').next() != Some(k.as_str()));
                        env.push(format!("{k}={v}"));
                    } else {
                        c.labels.get_or_insert_with(Default::default).insert(k, v);
                    }
                }
            }
            "MAINTAINER" => cfg.author = Some(text_of(self, &i.args)?),
            "USER" => c.user = Some(text_of(self, &i.args)?),
            "STOPSIGNAL" => c.stop_signal = Some(text_of(self, &i.args)?),
            "EXPOSE" => {
                let t = text_of(self, &i.args)?;
                for p in words(&t, self.df.escape).map_err(|e| step_err(i, e))? {
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let ok = num
                        .split('-')
                        .all(|n| n.parse::<u16>().is_ok_and(|n| n > 0));
                    if !ok || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(step_err(i, format!("EXPOSE {p}: invalid port")));
                    }
                    c.exposed_ports
                        .get_or_insert_with(Default::default)
                        .insert(format!("{num}/{proto}"), Empty {});
                }
            }
            "VOLUME" => {
                let vols = match &i.args {
                    Args::Exec(v) => v.clone(),
                    Args::Shell(s) => {
                        let t = self.expand(i, s)?;
                        words(&t, self.df.escape).map_err(|e| step_err(i, e))?
                    }
                };
                for v in vols {
                    c.volumes
                        .get_or_insert_with(Default::default)
                        .insert(v, Empty {});
                }
            }
            "CMD" => c.cmd = Some(cmd_of(&i.args)),
            "ENTRYPOINT" => {
                c.entrypoint = Some(cmd_of(&i.args));
                // As docker: a new ENTRYPOINT resets an inherited CMD.
                c.cmd = None;
            }
            "SHELL" => match &i.args {
                Args::Exec(v) if !v.is_empty() => c.shell = Some(v.clone()),
                _ => return Err(step_err(i, "SHELL requires a non-empty JSON array")),
            },
            "ONBUILD" => {
                let t = text_of(self, &i.args)?;
                let first = t
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(step_err(
                        i,
                        format!("{first} isn't allowed as an ONBUILD trigger"),
                    ));
                }
                parse(&t).map_err(|e| step_err(i, e.message))?;
                c.on_build.get_or_insert_with(Vec::new).push(t);
            }
            "HEALTHCHECK" => {
                c.healthcheck = Some(healthcheck(i, &shell)?);
            }
            other => return Err(step_err(i, format!("unknown instruction: {other}"))),
        }
        let what = format!(
            "{} {}\n{}\n{}",
            i.keyword,
            i.original,
            serde_json::to_string(&cfg.config).unwrap_or_default(),
            cfg.author.as_deref().unwrap_or("")
        );
        let created_by = format!("/bin/sh -c #(nop) {}", i.original);
        self.cached(&what, out, |b, _| b.commit_config(&cfg, &created_by))
    }
}

/// Build args docker accepts without an ARG.
const PREDEFINED_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn stage_name(i: &Instruction) -> Option<String> {
    let Args::Shell(t) = &i.args else { return None };
    let ws: Vec<&str> = t.split_whitespace().collect();
    match ws.as_slice() {
        [_, a, n] if a.eq_ignore_ascii_case("as") => Some(n.to_string()),
        _ => None,
    }
}

/// An absolute path with `.` and `..` resolved.
fn normalize_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// HEALTHCHECK [--interval=…] CMD … | NONE.
fn healthcheck(
    i: &Instruction,
    shell: &[String],
) -> Result<silo_storage::HealthConfig, BuildError> {
    let dur = |name: &str| -> Result<Option<i64>, BuildError> {
        i.flag(name)
            .map(|v| {
                silo_units::parse_go_duration(v)
                    .map_err(|_| step_err(i, format!("HEALTHCHECK --{name}={v}: not a duration")))
            })
            .transpose()
    };
    for (k, _) in &i.flags {
        if !matches!(
            k.as_str(),
            "interval" | "timeout" | "start-period" | "start-interval" | "retries"
        ) {
            return Err(step_err(i, format!("HEALTHCHECK does not take --{k}")));
        }
    }
    let test = match &i.args {
        Args::Shell(s) if s.trim().eq_ignore_ascii_case("NONE") => vec!["NONE".to_string()],
        Args::Shell(s) => {
            let (word, rest) = s
                .trim()
                .split_once(char::is_whitespace)
                .unwrap_or((s.trim(), ""));
            if !word.eq_ignore_ascii_case("CMD") || rest.trim().is_empty() {
                return Err(step_err(i, "HEALTHCHECK takes CMD <command> or NONE"));
            }
            let rest = rest.trim();
            if rest.starts_with('[') {
                let v: Vec<String> = serde_json::from_str(rest)
                    .map_err(|e| step_err(i, format!("HEALTHCHECK CMD: {e}")))?;
                std::iter::once("CMD".to_string()).chain(v).collect()
            } else {
                let _ = shell;
                vec!["CMD-SHELL".to_string(), rest.to_string()]
            }
        }
        Args::Exec(_) => return Err(step_err(i, "HEALTHCHECK takes CMD <command> or NONE")),
    };
    let retries = i
        .flag("retries")
        .map(|r| {
            r.parse::<i64>()
                .map_err(|_| step_err(i, format!("HEALTHCHECK --retries={r}: not a number")))
        })
        .transpose()?;
    Ok(silo_storage::HealthConfig {
        test: Some(test),
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    })
}

/// A COPY source in the context.
struct Source {
    rel: String,
}

/// Ownership and mode of copied files.
struct CopyOpts {
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
}

/// Hashes a context path (names, modes, contents; not times) into `h`.
fn hash_path(ctx: &Context, h: &mut Sha256, rel: &str) -> Result<(), String> {
    let e = ctx
        .get(rel)
        .ok_or_else(|| format!("{rel}: not in the build context"))?;
    h.update(rel.as_bytes());
    h.update(e.mode.to_le_bytes());
    match e.kind {
        Kind::Symlink => h.update(e.link.as_deref().unwrap_or("").as_bytes()),
        Kind::Dir => {
            for n in ctx.children(rel) {
                let r = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                hash_path(ctx, h, &r)?;
            }
        }
        Kind::File => {
            let mut f = ctx.open_entry(&e).map_err(|e| format!("{rel}: {e}"))?;
            let mut buf = [0u8; 65536];
            loop {
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
    }
    Ok(())
}

/// Hashes a tar's entries (names, types, modes, link targets, contents;
/// not times or owners) into `h`.
fn hash_tar(h: &mut Sha256, tar: &[u8]) -> Result<(), String> {
    let mut a = tar::Archive::new(Cursor::new(tar));
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        h.update(e.path_bytes());
        h.update([e.header().entry_type().as_byte()]);
        h.update(e.header().mode().unwrap_or(0).to_le_bytes());
        if let Some(l) = e.link_name_bytes() {
            h.update(&l);
        }
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        h.update(&buf);
    }
    Ok(())
}

fn is_archive(ctx: &Context, rel: &str) -> bool {
    let Some(e) = ctx.get(rel).filter(|e| e.kind == Kind::File) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(f) = ctx.open_entry(&e) else {
        return false;
    };
    let mut n = 0;
    let mut f = f;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let h = &head[..n];
    let compressed = h.starts_with(&[0x1f, 0x8b]) || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if !compressed {
        return n >= 262 && &h[257..262] == b"ustar";
    }
    // A compressed file is extracted only when a tar is inside (a
    // data.json.gz is copied as it is, as Docker does).
    let Ok(f) = ctx.open_entry(&e) else {
        return false;
    };
    let Ok(mut inner) = silo_storage::decompressed(f) else {
        return false;
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match inner.read(&mut block[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    got >= 262 && &block[257..262] == b"ustar"
}

/// A layer being written as a tar, with the parent directories it needs
/// (their metadata taken from the image below, else root 0755).
struct LayerTar<'a> {
    b: &'a Builder<'a>,
    cfg: ImageConfig,
    tar: tar::Builder<Spool>,
    dirs: Vec<String>,
}

/// A layer's tar on its way to the store: a file (never memory: an ADD
/// of a small gzip can expand to gigabytes) hashed as it is written,
/// deleted when dropped.
struct Spool {
    path: PathBuf,
    file: std::fs::File,
    hash: Sha256,
}

impl std::io::Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl<'a> LayerTar<'a> {
    fn new(b: &'a Builder<'a>, cfg: &ImageConfig) -> Result<LayerTar<'a>, String> {
        let dir = b.engine.storage().root().join("build-contexts");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("layer-{}.tar", silo_sys::id::random_hex(16)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(LayerTar {
            b,
            cfg: cfg.clone(),
            tar: tar::Builder::new(Spool {
                path,
                file,
                hash: Sha256::new(),
            }),
            dirs: Vec::new(),
        })
    }

    /// A header; times come from the source (or the layer below), never
    /// the clock, so the same content makes the same layer (and diffID).
    fn header(
        kind: tar::EntryType,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        mtime: u64,
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_size(size);
        h.set_mtime(mtime);
        h
    }

    /// Entries for every directory on the way to `abs` (included), the
    /// last with `mode`/`uid`/`gid` if it is new.
    fn dir_chain(&mut self, abs: &str, mode: u32, uid: u32, gid: u32) -> Result<(), String> {
        let parts: Vec<&str> = abs.split('/').filter(|p| !p.is_empty()).collect();
        for n in 1..=parts.len() {
            let path = parts[..n].join("/");
            if self.dirs.contains(&path) {
                continue;
            }
            let (m, u, g) =
                self.b
                    .lower_meta(&self.cfg, &format!("/{path}"))
                    .unwrap_or(if n == parts.len() {
                        (mode, uid, gid)
                    } else {
                        (0o755, 0, 0)
                    });
            let mtime = self.b.lower_mtime(&self.cfg, &format!("/{path}"));
            let mut h = Self::header(tar::EntryType::Directory, m, u, g, 0, mtime);
            self.tar
                .append_data(&mut h, format!("{path}/"), std::io::empty())
                .map_err(|e| e.to_string())?;
            self.dirs.push(path);
        }
        Ok(())
    }

    fn parent_of(abs: &str) -> &str {
        abs.rsplit_once('/')
            .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p })
    }

    /// A context file, directory (its contents) or symlink at `target`.
    fn add_context(
        &mut self,
        b: &Builder<'_>,
        rel: &str,
        target: &str,
        o: &CopyOpts,
    ) -> Result<(), String> {
        let e = b
            .ctx
            .get(rel)
            .ok_or_else(|| format!("{rel}: not in the build context"))?;
        if e.kind == Kind::Dir {
            self.dir_chain(target, o.chmod.unwrap_or(e.mode), o.uid, o.gid)?;
            for n in b.ctx.children(rel) {
                let r = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                if b.ignore.excludes(&r) {
                    let is_dir = b.ctx.get(&r).is_some_and(|c| c.kind == Kind::Dir);
                    if !(is_dir && b.ignore.may_include_under(&r)) {
                        continue;
                    }
                }
                let child = format!("{}/{n}", target.trim_end_matches('/'));
                self.add_context(b, &r, &child, o)?;
            }
            return Ok(());
        }
        if !rel.is_empty() && b.ignore.excludes(rel) {
            return Ok(());
        }
        self.dir_chain(Self::parent_of(target), 0o755, 0, 0)?;
        let name = target.trim_start_matches('/').to_string();
        if e.kind == Kind::Symlink {
            let link = e.link.clone().unwrap_or_default();
            let mut h = Self::header(tar::EntryType::Symlink, 0o777, o.uid, o.gid, 0, e.mtime);
            self.tar
                .append_link(&mut h, &name, &link)
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let mode = o.chmod.unwrap_or(e.mode);
        let mut h = Self::header(tar::EntryType::Regular, mode, o.uid, o.gid, e.size, e.mtime);
        let data = b
            .ctx
            .open_entry(&e)
            .map_err(|err| format!("{rel}: {err}"))?;
        self.tar
            .append_data(&mut h, &name, data)
            .map_err(|e| e.to_string())
    }

    /// ADD of a local archive: its entries under `dest`.
    fn extract_archive(
        &mut self,
        ctx: &Context,
        rel: &str,
        dest: &str,
        o: &CopyOpts,
    ) -> Result<(), String> {
        let e = ctx
            .get(rel)
            .ok_or_else(|| format!("{rel}: not in the build context"))?;
        let f = ctx.open_entry(&e).map_err(|e| e.to_string())?;
        // Plain, gzip or zstd, as layers are read.
        let input = silo_storage::decompressed(f).map_err(|e| format!("{rel}: {e}"))?;
        self.dir_chain(dest, 0o755, o.uid, o.gid)?;
        self.rewrite(input, dest, None, o)
    }

    /// A tar from `--from` (top entry named after `src`'s base name).
    fn add_tar(
        &mut self,
        tar: &[u8],
        dest: &str,
        dest_is_dir: bool,
        src: &str,
        o: &CopyOpts,
    ) -> Result<(), String> {
        let base = src
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        // The first entry tells file from directory.
        let mut a = tar::Archive::new(Cursor::new(tar));
        let first_is_dir = a
            .entries()
            .map_err(|e| e.to_string())?
            .next()
            .and_then(|e| e.ok())
            .is_some_and(|e| e.header().entry_type().is_dir());
        let target = if first_is_dir || !dest_is_dir {
            dest.to_string()
        } else {
            format!("{}/{base}", dest.trim_end_matches('/'))
        };
        self.dir_chain(
            if first_is_dir {
                &target
            } else {
                Self::parent_of(&target)
            },
            0o755,
            0,
            0,
        )?;
        self.rewrite(Box::new(Cursor::new(tar.to_vec())), &target, Some(&base), o)
    }

    /// Copies the entries of a tar under `dest`; with `strip`, the entry
    /// named `strip` (or under it) maps to `dest` itself.
    fn rewrite(
        &mut self,
        input: Box<dyn Read + '_>,
        dest: &str,
        strip: Option<&str>,
        o: &CopyOpts,
    ) -> Result<(), String> {
        let mut a = tar::Archive::new(input);
        for e in a.entries().map_err(|e| e.to_string())? {
            let mut e = e.map_err(|e| e.to_string())?;
            let raw = e
                .path()
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            let mut parts: Vec<&str> = raw
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            if parts.contains(&"..") {
                return Err(format!("archive entry {raw:?} leaves its directory"));
            }
            if let Some(s) = strip {
                if parts.first() == Some(&s) {
                    parts.remove(0);
                }
            }
            let name = if parts.is_empty() {
                dest.trim_start_matches('/').to_string()
            } else {
                format!("{}/{}", dest.trim_matches('/'), parts.join("/"))
                    .trim_start_matches('/')
                    .to_string()
            };
            if name.is_empty() {
                continue;
            }
            let mut h = e.header().clone();
            if strip.is_some() || o.uid != 0 || o.gid != 0 {
                h.set_uid(u64::from(o.uid));
                h.set_gid(u64::from(o.gid));
            }
            if let Some(m) = o.chmod {
                if !h.entry_type().is_symlink() {
                    h.set_mode(m);
                }
            }
            let kind = h.entry_type();
            if kind.is_hard_link() {
                // A hard link names an entry of the same archive: it moves
                // under `dest` with it.
                let raw_link = e
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut lparts: Vec<&str> = raw_link
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .collect();
                if lparts.contains(&"..") {
                    return Err(format!("archive link {raw_link:?} leaves its directory"));
                }
                if let Some(st) = strip {
                    if lparts.first() == Some(&st) {
                        lparts.remove(0);
                    }
                }
                let target = format!("{}/{}", dest.trim_matches('/'), lparts.join("/"))
                    .trim_start_matches('/')
                    .to_string();
                self.tar
                    .append_link(&mut h, &name, &target)
                    .map_err(|e| e.to_string())?;
            } else if kind.is_symlink() {
                let link = e
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                self.tar
                    .append_link(&mut h, &name, &link)
                    .map_err(|e| e.to_string())?;
            } else {
                let name = if kind.is_dir() {
                    format!("{name}/")
                } else {
                    name
                };
                self.tar
                    .append_data(&mut h, &name, &mut e)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Stores the layer; returns its diffID and the lease that keeps it
    /// until an image uses it.
    /// A layer the store already has (same bytes) is taken as it is.
    fn finish(self) -> Result<(String, silo_storage::Lease<'a>), String> {
        let mut spool = self.tar.into_inner().map_err(|e| e.to_string())?;
        use std::io::{Seek, Write};
        spool.flush().map_err(|e| e.to_string())?;
        let store = self.b.engine.storage();
        let diff_id = format!("sha256:{}", hex(&spool.hash.clone().finalize()));
        let lease = store.lease(std::slice::from_ref(&diff_id));
        if store.has_layer(&diff_id) {
            return Ok((diff_id, lease));
        }
        drop(lease);
        spool
            .file
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| e.to_string())?;
        let reader = spool.file.try_clone().map_err(|e| e.to_string())?;
        store
            .import_layer(
                std::io::BufReader::new(reader),
                silo_storage::Whiteouts::Overlay,
            )
            .map_err(|e| e.to_string())
    }
}

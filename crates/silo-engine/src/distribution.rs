//! Pull and push: the engine's side of the registry, between silo-registry
//! (HTTP) and silo-storage (content store, layers). A pull resolves the
//! reference (index → the platform's manifest), downloads the layers three
//! at a time into the content store (resuming an interrupted blob with a
//! range request), unpacks them in order as they arrive, and stores the
//! image only when everything is in; a failure leaves no image, no layer
//! and no complete blob behind (a partial blob stays for the retry until the
//! daemon restarts). A push uploads what the registry lacks and then the
//! manifest. Progress goes to a callback in silo's terms; front ends render
//! it (the Docker adapter as Docker's JSON progress stream).

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use silo_oci::image::{media, Descriptor, Index, Manifest, Platform};
use silo_oci::image_config::ImageConfig;
use silo_oci::reference::Reference;
use silo_registry::{Credentials, RegistryError, Repository};

use crate::error::{Error, Result};
use crate::events::{Action, Scope};
use crate::Engine;

/// Layers downloaded at once (Docker's default too).
const PARALLEL_DOWNLOADS: usize = 3;
/// Tries per blob when the connection drops or the registry answers 5xx.
const ATTEMPTS: u32 = 4;

/// What a pull or push is doing, for progress displays. `layer` is the
/// short id (12 hex digits of the blob digest) Docker's bars use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Resolved the reference; `tag` is the tag or digest being pulled.
    Resolving {
        repository: String,
        tag: String,
    },
    LayerQueued {
        layer: String,
    },
    LayerExists {
        layer: String,
    },
    Downloading {
        layer: String,
        current: u64,
        total: u64,
    },
    Retrying {
        layer: String,
        attempt: u32,
        error: String,
    },
    Downloaded {
        layer: String,
    },
    Extracting {
        layer: String,
    },
    Extracted {
        layer: String,
    },
    Preparing {
        layer: String,
    },
    Uploading {
        layer: String,
        current: u64,
        total: u64,
    },
    Uploaded {
        layer: String,
    },
    /// A push found the blob already in the registry.
    Mounted {
        layer: String,
    },
    /// The manifest digest of what was pulled or pushed.
    Digest {
        tag: String,
        digest: String,
        size: u64,
    },
    /// The end: `updated` false when the image was already up to date.
    Done {
        reference: String,
        updated: bool,
    },
}

/// A pull or push request.
#[derive(Debug, Clone, Default)]
pub struct TransferRequest {
    /// "busybox", "127.0.0.1:5000/app:1", "alpine@sha256:…".
    pub reference: String,
    pub credentials: Option<Credentials>,
    /// For a pull: the platform wanted (default: this host's).
    pub platform: Option<Platform>,
}

fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

/// A registry failure as an engine error.
fn registry_error(e: RegistryError) -> Error {
    match e {
        RegistryError::NotFound { .. } => Error::Registry {
            failure: RegistryFailure::NotFound,
            message: e.to_string(),
        },
        RegistryError::Unauthorized { .. } => Error::Registry {
            failure: RegistryFailure::Unauthorized,
            message: e.to_string(),
        },
        RegistryError::Denied { .. } => Error::Registry {
            failure: RegistryFailure::Denied,
            message: e.to_string(),
        },
        other => Error::Registry {
            failure: RegistryFailure::Failed,
            message: other.to_string(),
        },
    }
}

pub use crate::error::RegistryFailure;

/// Refuses writes past `limit` bytes: a registry cannot grow a blob past
/// the size its manifest declared.
struct Limited<'a, W> {
    inner: &'a mut W,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for Limited<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob is larger than the {} bytes its manifest says",
                    self.limit
                ),
            ));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Engine {
    /// Checks credentials against a registry (`docker login`).
    pub fn login(&self, server: &str, credentials: Credentials) -> Result<()> {
        self.registry
            .login(server, credentials)
            .map_err(registry_error)
    }

    /// Pulls an image. `progress` is called from several threads.
    pub fn pull(
        &self,
        req: &TransferRequest,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<silo_storage::Image> {
        let reference = Reference::parse(&req.reference)
            .map_err(|e| Error::invalid("reference", e.to_string()))?
            .with_default_tag();
        let platform = req.platform.clone().unwrap_or_else(Platform::host);
        let mut last_err = None;
        let sources = self
            .registry
            .pull_sources(&reference, req.credentials.clone());
        let n = sources.len();
        for (i, source) in sources.into_iter().enumerate() {
            let mirror = i + 1 < n;
            let attempt = source
                .map_err(registry_error)
                .and_then(|repo| self.pull_from(&repo, &reference, &platform, progress));
            match attempt {
                Ok(img) => return Ok(img),
                // A mirror that fails or lacks the image: try the next source.
                Err(e) if mirror => {
                    tracing::info!("pull {reference}: mirror failed, trying the next source: {e}");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::invalid("reference", "no registry to pull from")))
    }

    fn pull_from(
        &self,
        repo: &Repository<'_>,
        reference: &Reference,
        platform: &Platform,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<silo_storage::Image> {
        let wanted = reference.manifest_ref().to_string();
        let top = repo.manifest(&wanted).map_err(registry_error)?;
        let mut index_blob = None;
        let manifest_blob = if media::is_index(&top.media_type) {
            let index: Index = serde_json::from_slice(&top.bytes)
                .map_err(|e| Error::invalid("manifest", format!("{reference}: bad index: {e}")))?;
            let chosen = index
                .manifests
                .iter()
                .filter(|d| media::is_manifest(&d.media_type))
                .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
                .ok_or_else(|| Error::Registry {
                    failure: RegistryFailure::NotFound,
                    message: format!(
                        "no matching manifest for {platform} in the manifest list entries of {reference}"
                    ),
                })?;
            let m = repo.manifest(&chosen.digest).map_err(registry_error)?;
            index_blob = Some(top);
            m
        } else if media::is_manifest(&top.media_type) {
            top
        } else {
            return Err(Error::invalid(
                "manifest",
                format!(
                    "{reference}: unsupported manifest type {:?}",
                    top.media_type
                ),
            ));
        };
        // Announced once the reference resolved (an unknown tag is an error
        // before any progress, as with dockerd).
        progress(Progress::Resolving {
            repository: reference.path.clone(),
            tag: wanted.clone(),
        });
        let manifest: Manifest = serde_json::from_slice(&manifest_blob.bytes)
            .map_err(|e| Error::invalid("manifest", format!("{reference}: bad manifest: {e}")))?;
        for l in &manifest.layers {
            if !media::is_layer(&l.media_type) {
                return Err(Error::invalid(
                    "manifest",
                    format!(
                        "{reference}: layer {} has unsupported type {:?}",
                        l.digest, l.media_type
                    ),
                ));
            }
        }
        // The config: small, kept in memory until the image is stored.
        let mut config = Vec::new();
        let cfg_desc = &manifest.config;
        if cfg_desc.size > silo_registry::MAX_MANIFEST {
            return Err(Error::invalid(
                "manifest",
                format!(
                    "{reference}: config of {} bytes is too large",
                    cfg_desc.size
                ),
            ));
        }
        repo.blob(
            &cfg_desc.digest,
            0,
            &mut Limited {
                inner: &mut config,
                written: 0,
                limit: cfg_desc.size,
            },
            &mut |_| {},
        )
        .map_err(registry_error)?;
        let actual = silo_oci::image::sha256_digest(&config);
        if actual != cfg_desc.digest {
            return Err(Error::invalid(
                "manifest",
                format!("config {}: content has digest {actual}", cfg_desc.digest),
            ));
        }
        let image_config: ImageConfig = serde_json::from_slice(&config)
            .map_err(|e| Error::invalid("manifest", format!("config {}: {e}", cfg_desc.digest)))?;
        let diff_ids = image_config.rootfs.diff_ids.clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(
                "manifest",
                format!(
                    "{reference}: the manifest lists {} layers, the config {}",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let _lease = self.storage.lease(&diff_ids);
        let mut added_layers = Vec::new();
        let mut fetched_blobs = Vec::new();
        let result = self.fetch_layers(
            repo,
            &manifest.layers,
            &diff_ids,
            progress,
            &mut added_layers,
            &mut fetched_blobs,
        );
        let stored = result.and_then(|()| {
            let repo_name = reference.familiar_repo();
            let digest = index_blob
                .as_ref()
                .map(|i| i.digest.clone())
                .unwrap_or_else(|| manifest_blob.digest.clone());
            for blob in index_blob.iter().chain(std::iter::once(&manifest_blob)) {
                self.storage
                    .write_blob(&blob.bytes, Some(&blob.digest))
                    .map_err(|e| Error::internal("storing the manifest", e))?;
            }
            let before = reference
                .familiar_tagged()
                .and_then(|t| self.storage.image(&t).ok())
                .map(|i| i.id);
            let img = self
                .storage
                .add_image(
                    &config,
                    reference.familiar_tagged().as_deref(),
                    Some(&format!("{repo_name}@{digest}")),
                )
                .map_err(|e| Error::internal("storing the image", e))?;
            progress(Progress::Digest {
                tag: wanted.clone(),
                digest,
                size: manifest_blob.bytes.len() as u64,
            });
            let shown = reference
                .familiar_tagged()
                .unwrap_or_else(|| format!("{repo_name}@{}", reference.manifest_ref()));
            progress(Progress::Done {
                reference: shown.clone(),
                updated: before.as_deref() != Some(img.id.as_str()),
            });
            self.emit_with(
                Scope::Image,
                Action::Pull,
                &shown,
                [("name".to_string(), shown.clone())].into(),
            );
            Ok(img)
        });
        if stored.is_err() {
            drop(_lease);
            for d in &added_layers {
                self.storage.forget_layer(d);
            }
            for b in &fetched_blobs {
                self.storage.discard_blob(b);
            }
        }
        stored
    }

    /// Downloads the layers the store lacks (in parallel) and unpacks them
    /// in order. Records what it added, for clean-up on failure.
    fn fetch_layers(
        &self,
        repo: &Repository<'_>,
        layers: &[Descriptor],
        diff_ids: &[String],
        progress: &(dyn Fn(Progress) + Sync),
        added_layers: &mut Vec<String>,
        fetched_blobs: &mut Vec<String>,
    ) -> Result<()> {
        let mut todo = Vec::new();
        for (i, (l, d)) in layers.iter().zip(diff_ids).enumerate() {
            if self.storage.has_layer(d) {
                progress(Progress::LayerExists {
                    layer: short(&l.digest),
                });
            } else {
                progress(Progress::LayerQueued {
                    layer: short(&l.digest),
                });
                todo.push(i);
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<(usize, Result<bool>)>();
        std::thread::scope(|scope| {
            for _ in 0..PARALLEL_DOWNLOADS.min(todo.len()) {
                let (tx, next, todo) = (tx.clone(), &next, &todo);
                scope.spawn(move || loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    let r = self.fetch_blob(repo, &layers[i], progress);
                    let failed = r.is_err();
                    if tx.send((i, r)).is_err() || failed {
                        // Stop taking work; the others finish theirs.
                        next.store(todo.len(), Ordering::SeqCst);
                        break;
                    }
                });
            }
            drop(tx);
            let mut ready: Vec<Option<Result<bool>>> = (0..layers.len()).map(|_| None).collect();
            let mut outcome = Ok(());
            for &i in &todo {
                while ready[i].is_none() {
                    match rx.recv() {
                        Ok((j, r)) => ready[j] = Some(r),
                        Err(_) => break,
                    }
                }
                let r = match ready[i].take() {
                    Some(r) => r,
                    None => Err(Error::internal(
                        "pulling",
                        io::Error::other("a download thread stopped"),
                    )),
                };
                let step = r.and_then(|fresh| {
                    if fresh {
                        fetched_blobs.push(layers[i].digest.clone());
                    }
                    let layer = short(&layers[i].digest);
                    progress(Progress::Extracting {
                        layer: layer.clone(),
                    });
                    let new = !self.storage.has_layer(&diff_ids[i]);
                    self.storage
                        .add_layer_from_blob(&layers[i], &diff_ids[i])
                        .map_err(|e| Error::invalid("layer", e.to_string()))?;
                    if new {
                        added_layers.push(diff_ids[i].clone());
                    }
                    progress(Progress::Extracted { layer });
                    Ok(())
                });
                if let Err(e) = step {
                    outcome = Err(e);
                    next.store(todo.len(), Ordering::SeqCst);
                    break;
                }
            }
            // Blobs downloaded but not unpacked (after a failure) are
            // cleaned up too.
            for (j, slot) in ready.into_iter().enumerate() {
                if matches!(slot, Some(Ok(true))) {
                    fetched_blobs.push(layers[j].digest.clone());
                }
            }
            for (j, r) in rx.iter() {
                if matches!(r, Ok(true)) {
                    fetched_blobs.push(layers[j].digest.clone());
                }
            }
            outcome
        })
    }

    /// Downloads one blob into the content store, resuming after transient
    /// failures. Returns whether it was downloaded now (not already stored).
    fn fetch_blob(
        &self,
        repo: &Repository<'_>,
        desc: &Descriptor,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<bool> {
        let layer = short(&desc.digest);
        if self.storage.has_blob(&desc.digest) {
            progress(Progress::Downloaded { layer });
            return Ok(false);
        }
        let mut attempt = 1;
        loop {
            let mut ingest = self
                .storage
                .ingest(Some(&desc.digest))
                .map_err(|e| Error::invalid("layer", e.to_string()))?;
            let offset = ingest.offset();
            let mut sink = Limited {
                inner: &mut ingest,
                written: offset,
                limit: desc.size,
            };
            let total = desc.size;
            let mut last = 0u64;
            let got = repo.blob(&desc.digest, offset, &mut sink, &mut |n| {
                // Every 512 KiB (and the end) is enough for a progress bar.
                if n - last >= 512 * 1024 || n == total {
                    last = n;
                    progress(Progress::Downloading {
                        layer: layer.clone(),
                        current: n,
                        total,
                    });
                }
            });
            match got {
                Ok(_) => {
                    ingest
                        .commit(Some(desc.size))
                        .map_err(|e| Error::invalid("layer", e.to_string()))?;
                    progress(Progress::Downloaded { layer });
                    return Ok(true);
                }
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    progress(Progress::Retrying {
                        layer: layer.clone(),
                        attempt,
                        error: e.to_string(),
                    });
                    drop(ingest); // the partial file stays for the resume
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(registry_error(e)),
            }
        }
    }

    /// What a registry has for a reference, without pulling it: the
    /// descriptor of the manifest or index, and the platforms it serves.
    pub fn distribution(&self, req: &TransferRequest) -> Result<(Descriptor, Vec<Platform>)> {
        let reference = Reference::parse(&req.reference)
            .map_err(|e| Error::invalid("reference", e.to_string()))?
            .with_default_tag();
        let repo = self
            .registry
            .repository(&reference, req.credentials.clone(), false)
            .map_err(registry_error)?;
        let top = repo
            .manifest(reference.manifest_ref())
            .map_err(registry_error)?;
        let desc = Descriptor::new(&top.media_type, &top.digest, top.bytes.len() as u64);
        let bad = |e: serde_json::Error| Error::invalid("manifest", format!("{reference}: {e}"));
        let platforms = if media::is_index(&top.media_type) {
            let index: Index = serde_json::from_slice(&top.bytes).map_err(bad)?;
            index
                .manifests
                .into_iter()
                .filter_map(|d| d.platform)
                .collect()
        } else {
            let m: Manifest = serde_json::from_slice(&top.bytes).map_err(bad)?;
            let mut cfg = Vec::new();
            repo.blob(
                &m.config.digest,
                0,
                &mut Limited {
                    inner: &mut cfg,
                    written: 0,
                    limit: silo_registry::MAX_MANIFEST.min(m.config.size),
                },
                &mut |_| {},
            )
            .map_err(registry_error)?;
            let c: ImageConfig = serde_json::from_slice(&cfg).map_err(bad)?;
            vec![Platform {
                architecture: c.architecture,
                os: c.os,
                ..Platform::default()
            }]
        };
        Ok((desc, platforms))
    }

    /// Pushes an image by reference; with no tag, every local tag of the
    /// repository (as `docker push repo` does).
    pub fn push(&self, req: &TransferRequest, progress: &(dyn Fn(Progress) + Sync)) -> Result<()> {
        let reference = Reference::parse(&req.reference)
            .map_err(|e| Error::invalid("reference", e.to_string()))?;
        if reference.digest.is_some() {
            return Err(Error::invalid(
                "reference",
                format!("{}: push takes a tag, not a digest", req.reference),
            ));
        }
        let repo_name = reference.familiar_repo();
        let tags: Vec<String> = match &reference.tag {
            Some(t) => vec![t.clone()],
            None => {
                let mut v: Vec<String> = self
                    .storage
                    .images()
                    .iter()
                    .flat_map(|i| i.repo_tags.clone())
                    .filter_map(|t| {
                        t.rsplit_once(':')
                            .filter(|(r, _)| *r == repo_name)
                            .map(|(_, tag)| tag.to_string())
                    })
                    .collect();
                v.sort();
                v
            }
        };
        if tags.is_empty() {
            return Err(Error::not_found(crate::Kind::Image, req.reference.clone()));
        }
        let repo = self
            .registry
            .repository(&reference, req.credentials.clone(), true)
            .map_err(registry_error)?;
        progress(Progress::Resolving {
            repository: format!("{}/{}", reference.domain, reference.path),
            tag: String::new(),
        });
        for tag in tags {
            let name = format!("{repo_name}:{tag}");
            let image = self
                .storage
                .image(&name)
                .map_err(|_| Error::not_found(crate::Kind::Image, name.clone()))?;
            self.push_one(&repo, &image, &tag, &repo_name, progress)?;
        }
        Ok(())
    }

    fn push_one(
        &self,
        repo: &Repository<'_>,
        image: &silo_storage::Image,
        tag: &str,
        repo_name: &str,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<()> {
        let mut layers = Vec::new();
        for d in &image.diff_ids {
            let blob = self
                .storage
                .compressed_layer_blob(d)
                .map_err(|e| Error::invalid("image", e.to_string()))?;
            progress(Progress::Preparing {
                layer: short(&blob.digest),
            });
            layers.push(blob);
        }
        for blob in &layers {
            self.upload(repo, blob, progress)?;
        }
        let config = self
            .storage
            .read_blob(&image.id)
            .map_err(|e| Error::internal("reading the image config", e))?;
        let cfg_desc = Descriptor::new(media::DOCKER_CONFIG, &image.id, config.len() as u64);
        if !repo.has_blob(&image.id).map_err(registry_error)? {
            repo.upload_blob(&image.id, config.len() as u64, &mut &config[..])
                .map_err(registry_error)?;
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::DOCKER_MANIFEST.to_string()),
            config: cfg_desc,
            layers: layers
                .iter()
                .map(|b| Descriptor::new(media::DOCKER_LAYER_GZIP, &b.digest, b.size))
                .collect(),
            annotations: Default::default(),
        };
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::internal("encoding the manifest", e))?;
        let digest = repo
            .put_manifest(tag, media::DOCKER_MANIFEST, &bytes)
            .map_err(registry_error)?;
        self.storage
            .write_blob(&bytes, Some(&digest))
            .map_err(|e| Error::internal("storing the manifest", e))?;
        self.storage
            .add_image(&config, None, Some(&format!("{repo_name}@{digest}")))
            .map_err(|e| Error::internal("recording the pushed digest", e))?;
        progress(Progress::Digest {
            tag: tag.to_string(),
            digest,
            size: bytes.len() as u64,
        });
        let name = format!("{repo_name}:{tag}");
        self.emit_with(
            Scope::Image,
            Action::Push,
            &name,
            [("name".to_string(), name.clone())].into(),
        );
        Ok(())
    }

    fn upload(
        &self,
        repo: &Repository<'_>,
        blob: &Descriptor,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<()> {
        let layer = short(&blob.digest);
        if repo.has_blob(&blob.digest).map_err(registry_error)? {
            progress(Progress::Mounted { layer });
            return Ok(());
        }
        let file = self
            .storage
            .open_blob(&blob.digest)
            .map_err(|e| Error::internal("reading a layer", e))?;
        let total = blob.size;
        let mut reader = Counting {
            inner: io::BufReader::with_capacity(1 << 20, file),
            done: 0,
            last: 0,
            report: &|n| {
                progress(Progress::Uploading {
                    layer: layer.clone(),
                    current: n,
                    total,
                })
            },
        };
        repo.upload_blob(&blob.digest, blob.size, &mut reader)
            .map_err(registry_error)?;
        progress(Progress::Uploaded { layer });
        Ok(())
    }
}

/// Counts bytes read, reporting every 512 KiB.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    last: u64,
    report: &'a dyn Fn(u64),
}

impl<R: io::Read> io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= 512 * 1024 || n == 0 {
            self.last = self.done;
            (self.report)(self.done);
        }
        Ok(n)
    }
}

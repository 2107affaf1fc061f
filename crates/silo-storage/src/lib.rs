//! silo-storage: the Linux counterpart of Windows' "windowsfilter" storage —
//! image layers, image configs and tags, overlayfs container snapshots and
//! "local" volumes, kept under one root directory:
//!
//! ```text
//! <root>/layers/<diffid-hex>/        unpacked layer (shared, read-only lower dir)
//! <root>/layers/<diffid-hex>.json    {"size": bytes, "blobs": [descriptors of its archives]}
//! <root>/blobs/sha256/<hex>          content store: manifests, indexes, layer archives
//! <root>/images/<image-id-hex>.json  OCI image config; the id is its sha256
//! <root>/repositories.json           {"tags": {"repo:tag": "sha256:<id>"},
//!                                     "digests": {"repo@sha256:<manifest>": "sha256:<id>"}}
//! <root>/snapshots/<cid>/{upper,work,merged,meta.json}
//! <root>/volumes/<name>/{_data,meta.json}
//! ```
//!
//! Every metadata write is atomic (temp file, fsync, rename, fsync dir).
//! Work in progress lives under names starting with `.tmp-` inside the same
//! directory and is renamed into place at the end; [`Store::open`] sweeps any
//! leftovers, so a crash or failed import leaves nothing visible behind.
//! Everything is blocking; the daemon calls it from `spawn_blocking`.

mod archive;
mod blobs;
mod changes;
mod commit;
mod disk;
mod extract;
mod fsutil;
mod layers;
mod sandbox;
mod snapshot;
mod volume;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use archive::{LoadError, Loaded, SaveError, SaveItem};
pub use blobs::{BlobError, Ingest};
pub use changes::ChangeError;
pub use commit::{CommitError, CommitSpec};
pub use extract::{
    decompressed, unpack as unpack_layer, Compression, ExtractError, Unpacked, Whiteouts, MAX_PATH,
};
pub use layers::{layer_media_type, LayerError, Lease};
pub use silo_oci::image_config::{
    ContainerConfig, Empty, HealthConfig, History, ImageConfig, RootFs,
};
use silo_oci::reference;
pub use silo_oci::reference::{normalize as normalize_reference, ReferenceError};
pub use snapshot::{Change, ChangeKind, SnapshotError, SnapshotOptions, SnapshotPaths};
pub use volume::{Volume, VolumeError};

use fsutil::{hex, is_hex, tree_size, write_atomic, TMP_PREFIX};
use silo_units::now_rfc3339;

/// An image as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// "sha256:<hex>" — sha256 of the stored config JSON.
    pub id: String,
    /// Tags pointing at this image ("repo:tag"), sorted.
    pub repo_tags: Vec<String>,
    /// RFC 3339 creation time (from the config).
    pub created: String,
    /// Sum of the sizes of the image's layers, in bytes.
    pub size: u64,
    pub config: ImageConfig,
    /// Layer digests, bottom first ("sha256:<hex>").
    pub diff_ids: Vec<String>,
    /// "repo@sha256:<manifest digest>" for each pull or push of the image.
    pub repo_digests: Vec<String>,
}

/// One line of an image removal, as in Docker's ImageDeleteResponseItem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Removed {
    /// A tag ("repo:tag") was removed.
    Untagged(String),
    /// An image id or a layer diff_id was deleted from disk.
    Deleted(String),
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// For images: [`Removed`] items; for volumes: `Deleted(name)`.
    pub deleted: Vec<Removed>,
    /// Bytes freed on disk.
    pub space_reclaimed: u64,
}

/// Per-image disk usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUsage {
    pub id: String,
    pub repo_tags: Vec<String>,
    /// Sum of the image's layers.
    pub size: u64,
    /// Part of `size` in layers that other images use too.
    pub shared_size: u64,
}

/// `docker system df` numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// All layers on disk, each counted once.
    pub layers_size: u64,
    pub images: Vec<ImageUsage>,
    /// (container id, bytes in its upper dir)
    pub snapshots: Vec<(String, u64)>,
    /// (volume name, bytes in its _data)
    pub volumes: Vec<(String, u64)>,
}

/// Looking something up failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NotFound {
    #[error("no such image: {reference}")]
    Image { reference: String },
    #[error("image id prefix {prefix:?} is ambiguous")]
    AmbiguousImage { prefix: String },
    #[error("no such volume: {name}")]
    Volume { name: String },
}

/// [`Store::open`] failed.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("creating storage directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// [`Store::import`] failed; nothing was left on disk.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("importing into {path}: {source}")]
    Unpack { path: PathBuf, source: ExtractError },
    #[error("importing: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// [`Store::tag`] failed.
#[derive(Debug, Error)]
pub enum TagError {
    #[error("tagging: {0}")]
    Source(#[from] NotFound),
    #[error("tagging: {0}")]
    Target(#[from] ReferenceError),
    #[error("tagging {target}: writing {path}: {source}")]
    Io {
        target: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// [`Store::remove_image`] failed.
#[derive(Debug, Error)]
pub enum RemoveError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("conflict: unable to remove {reference} (must force): image {image_id} is used by a container")]
    InUse { reference: String, image_id: String },
    #[error("conflict: unable to delete {reference} (must force): image {image_id} is referenced in multiple repositories")]
    MultipleTags { reference: String, image_id: String },
    #[error("removing {reference}: {op} {path}: {source}")]
    Io {
        reference: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// A prune failed part way (what was removed before stays removed).
#[derive(Debug, Error)]
pub enum PruneError {
    #[error("pruning: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Repositories {
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    digests: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerMeta {
    size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    blobs: Vec<silo_oci::image::Descriptor>,
}

/// [`Store::add_image`] failed; nothing was stored.
#[derive(Debug, Error)]
pub enum AddImageError {
    #[error("image config {digest}: {source}")]
    Config {
        digest: String,
        source: serde_json::Error,
    },
    #[error("image config {digest}: layer {diff_id} is not stored")]
    MissingLayer { digest: String, diff_id: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("storing image {digest}: {op} {path}: {source}")]
    Io {
        digest: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

#[derive(Debug, Default)]
struct State {
    /// image id hex → config
    images: BTreeMap<String, ImageConfig>,
    /// "repo:tag" → "sha256:<hex>"
    tags: BTreeMap<String, String>,
    /// "repo@sha256:<manifest>" → "sha256:<image id>"
    digests: BTreeMap<String, String>,
    /// diff_id hex → size
    layers: BTreeMap<String, u64>,
    /// diff_id hex → the blobs that hold its archive
    layer_blobs: BTreeMap<String, Vec<silo_oci::image::Descriptor>>,
    /// diff_id hex → number of operations that will reference it soon
    leases: BTreeMap<String, usize>,
    /// image id hex → the image it was built on (a build step's parent),
    /// kept in `parents.json`.
    parents: BTreeMap<String, String>,
    /// container id → snapshot metadata; None until its meta.json is
    /// read (on first use, so opening a store with a thousand containers
    /// does not read a thousand files).
    snapshots: BTreeMap<String, Option<snapshot::SnapshotMeta>>,
}

impl State {
    /// The "repo:tag" references of image `id` ("sha256:<hex>").
    fn tags_of(&self, id: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The "repo@sha256:…" references of image `id`.
    fn digests_of(&self, id: &str) -> Vec<String> {
        self.digests
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The snapshot's metadata, read on first use. None: no such snapshot
    /// (or its meta.json is missing or unreadable, which create never leaves).
    fn snapshot(&mut self, root: &Path, id: &str) -> Option<&snapshot::SnapshotMeta> {
        let slot = self.snapshots.get_mut(id)?;
        if slot.is_none() {
            let meta = root.join("snapshots").join(id).join("meta.json");
            *slot = fs::read(&meta)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        }
        slot.as_ref()
    }

    /// Every snapshot's metadata (for layer reference checks).
    fn all_snapshots(&mut self, root: &Path) -> impl Iterator<Item = &snapshot::SnapshotMeta> {
        let ids: Vec<String> = self
            .snapshots
            .iter()
            .filter(|(_, m)| m.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            self.snapshot(root, &id);
        }
        self.snapshots.values().flatten()
    }
}

/// The storage root. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    mountinfo: PathBuf,
    state: Mutex<State>,
}

/// Docker's GOARCH spelling of the build target.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An image id's hex ("sha256:" dropped).
fn id_hex(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

fn diff_hex(diff_id: &str) -> &str {
    diff_id.strip_prefix("sha256:").unwrap_or(diff_id)
}

/// Removes a directory tree by first renaming it to a `.tmp-` name, so a
/// crash half way leaves only something `open` sweeps.
fn remove_tree(path: &Path) -> io::Result<()> {
    let doomed = fsutil::tmp_sibling(path);
    match fs::rename(path, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    fs::remove_dir_all(&doomed)
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`, loads its metadata and
    /// sweeps temporary leftovers of interrupted operations.
    pub fn open(root: &Path) -> Result<Store, OpenError> {
        Self::open_with_mountinfo(root, Path::new("/proc/self/mountinfo"))
    }

    /// Like [`Store::open`] with an explicit mountinfo file (for tests).
    pub fn open_with_mountinfo(root: &Path, mountinfo: &Path) -> Result<Store, OpenError> {
        for sub in [
            "",
            "layers",
            "images",
            "snapshots",
            "volumes",
            "blobs/sha256",
        ] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|source| OpenError::CreateDir { path: p, source })?;
        }
        let root = root.canonicalize().map_err(|source| OpenError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        let mut state = State::default();
        if let Ok(b) = fs::read(root.join("parents.json")) {
            state.parents = serde_json::from_slice(&b).unwrap_or_default();
        }
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Read { path, source }
        };
        let parse_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Parse { path, source }
        };
        let list = |dir: &Path| -> Result<Vec<(String, PathBuf)>, OpenError> {
            let mut out = Vec::new();
            for e in fs::read_dir(dir).map_err(read_err(dir))? {
                let e = e.map_err(read_err(dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                    continue;
                }
                out.push((name, e.path()));
            }
            Ok(out)
        };

        // Layers.
        for (name, path) in list(&root.join("layers"))? {
            if path.is_dir() && name.len() == 64 && is_hex(&name) {
                let meta = root.join("layers").join(format!("{name}.json"));
                let size = match fs::read(&meta) {
                    Ok(b) => {
                        let m =
                            serde_json::from_slice::<LayerMeta>(&b).map_err(parse_err(&meta))?;
                        if !m.blobs.is_empty() {
                            state.layer_blobs.insert(name.clone(), m.blobs);
                        }
                        m.size
                    }
                    Err(_) => {
                        let size = tree_size(&path);
                        let _ = serde_json::to_vec(&LayerMeta {
                            size,
                            blobs: Vec::new(),
                        })
                        .map(|b| write_atomic(&meta, &b));
                        size
                    }
                };
                state.layers.insert(name, size);
            }
        }
        // Images.
        for (name, path) in list(&root.join("images"))? {
            let Some(hexid) = name.strip_suffix(".json") else {
                continue;
            };
            if hexid.len() != 64 || !is_hex(hexid) {
                continue;
            }
            let bytes = fs::read(&path).map_err(read_err(&path))?;
            let cfg: ImageConfig = serde_json::from_slice(&bytes).map_err(parse_err(&path))?;
            state.images.insert(hexid.to_string(), cfg);
        }
        // Tags.
        let repos = root.join("repositories.json");
        match fs::read(&repos) {
            Ok(b) => {
                let r: Repositories = serde_json::from_slice(&b).map_err(parse_err(&repos))?;
                state.tags = r
                    .tags
                    .into_iter()
                    .filter(|(_, id)| state.images.contains_key(diff_hex(id)))
                    .collect();
                state.digests = r
                    .digests
                    .into_iter()
                    .filter(|(_, id)| state.images.contains_key(diff_hex(id)))
                    .collect();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(&repos)(e)),
        }
        // Snapshots: names only; metadata on first use.
        for (name, _) in list(&root.join("snapshots"))? {
            state.snapshots.insert(name, None);
        }
        // Volumes: only sweep temporaries; they are read from disk on demand.
        list(&root.join("volumes"))?;
        // Blobs: sweep interrupted downloads too (a resume needs the daemon
        // that started it).
        list(&root.join("blobs").join("sha256"))?;

        Ok(Store {
            root,
            mountinfo: mountinfo.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// The (canonical) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked directory of a layer (diff_id with or without "sha256:").
    pub fn layer_path(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(diff_hex(diff_id))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn repositories_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    fn image_path(&self, hexid: &str) -> PathBuf {
        self.root.join("images").join(format!("{hexid}.json"))
    }

    fn save_parents(&self, st: &State) -> io::Result<()> {
        let bytes = serde_json::to_vec(&st.parents).map_err(io::Error::other)?;
        write_atomic(&self.root.join("parents.json"), &bytes)
    }

    /// Records that image `child` was built on image `parent` (a build
    /// step): `docker images` hides untagged parents, and removing the
    /// last child removes them.
    pub fn set_parent(&self, child: &str, parent: &str) -> io::Result<()> {
        let mut st = self.lock();
        let (c, p) = (id_hex(child).to_string(), id_hex(parent).to_string());
        if c == p || !st.images.contains_key(&c) || !st.images.contains_key(&p) {
            return Ok(());
        }
        if st.parents.get(&c) == Some(&p) {
            return Ok(());
        }
        st.parents.insert(c, p);
        self.save_parents(&st)
    }

    /// The image `id` was built on, if any ("sha256:…").
    pub fn parent_of(&self, id: &str) -> Option<String> {
        self.lock()
            .parents
            .get(id_hex(id))
            .map(|p| format!("sha256:{p}"))
    }

    /// Whether some image was built on `id`.
    pub fn has_children(&self, id: &str) -> bool {
        let h = id_hex(id);
        self.lock().parents.values().any(|p| p == h)
    }

    fn save_tags(&self, st: &State) -> io::Result<()> {
        let r = Repositories {
            tags: st.tags.clone(),
            digests: st.digests.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&r).map_err(io::Error::other)?;
        write_atomic(&self.repositories_path(), &bytes)
    }

    fn image_of(st: &State, hexid: &str, cfg: &ImageConfig) -> Image {
        let id = format!("sha256:{hexid}");
        let repo_tags = st.tags_of(&id);
        let size = cfg
            .rootfs
            .diff_ids
            .iter()
            .map(|d| st.layers.get(diff_hex(d)).copied().unwrap_or(0))
            .sum();
        Image {
            id,
            repo_tags,
            created: cfg.created.clone().unwrap_or_default(),
            size,
            config: cfg.clone(),
            diff_ids: cfg.rootfs.diff_ids.clone(),
            repo_digests: st.digests_of(&format!("sha256:{hexid}")),
        }
    }

    /// Resolves a tag, full id or unique id prefix to (id hex, tag used).
    fn resolve(st: &State, name_or_id: &str) -> Result<(String, Option<String>), NotFound> {
        if let Ok(r) = reference::Reference::parse(name_or_id) {
            if let Some(d) = &r.digest {
                let key = format!("{}@{d}", r.familiar_repo());
                if let Some(id) = st.digests.get(&key) {
                    return Ok((diff_hex(id).to_string(), None));
                }
            }
        }
        if let Ok(tag) = reference::normalize(name_or_id) {
            if let Some(id) = st.tags.get(&tag) {
                return Ok((diff_hex(id).to_string(), Some(tag)));
            }
        }
        let prefix = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if prefix.len() >= 4 && is_hex(prefix) {
            let mut hits = st.images.keys().filter(|k| k.starts_with(prefix));
            match (hits.next(), hits.next()) {
                (Some(h), None) => return Ok((h.clone(), None)),
                (Some(_), Some(_)) => {
                    return Err(NotFound::AmbiguousImage {
                        prefix: name_or_id.to_string(),
                    })
                }
                _ => {}
            }
        }
        Err(NotFound::Image {
            reference: name_or_id.to_string(),
        })
    }

    /// `docker import`: turns a root-filesystem tar (plain, gzip or zstd)
    /// into a one-layer image, optionally tagged `reference`, with `changes`
    /// (Dockerfile-like instructions) applied to its config and `message`
    /// recorded in its history. The archive is kept as the layer's blob (for
    /// push and save). On any error nothing is left on disk.
    pub fn import(
        &self,
        tar: impl Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<Image, ImportError> {
        let tag = reference.map(reference::normalize).transpose()?;
        let mut cc = ContainerConfig::default();
        changes::apply(&mut cc, changes)?;
        let (diff_id, _lease) = self.import_layer(tar, Whiteouts::Skip)?;
        let now = now_rfc3339();
        let cfg = ImageConfig {
            architecture: go_arch().to_string(),
            os: "linux".to_string(),
            created: Some(now.clone()),
            author: None,
            config: cc,
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids: vec![diff_id.clone()],
            },
            history: vec![History {
                created: Some(now),
                created_by: None,
                author: None,
                comment: Some(
                    message
                        .filter(|m| !m.is_empty())
                        .unwrap_or("Imported from tarball")
                        .to_string(),
                ),
                empty_layer: false,
            }],
        };
        let bytes = serde_json::to_vec(&cfg).map_err(|e| ImportError::Io {
            op: "encoding config for",
            path: self.root.join("images"),
            source: io::Error::other(e),
        })?;
        match self.add_image(&bytes, tag.as_deref(), None) {
            Ok(img) => Ok(img),
            Err(e) => {
                drop(_lease);
                self.forget_layer(&diff_id);
                Err(ImportError::Io {
                    op: "storing",
                    path: self.root.join("images"),
                    source: io::Error::other(e.to_string()),
                })
            }
        }
    }

    /// Unpacks a layer archive read from `tar` and keeps the archive as the
    /// layer's blob. Returns the diffID and a lease that keeps the layer
    /// until an image references it.
    pub fn import_layer(
        &self,
        tar: impl Read,
        whiteouts: Whiteouts,
    ) -> Result<(String, Lease<'_>), ImportError> {
        let blob_err = |e: BlobError| ImportError::Io {
            op: "storing the archive in",
            path: self.root.join("blobs"),
            source: io::Error::other(e.to_string()),
        };
        let ingest = self.ingest(None).map_err(blob_err)?;
        let mut tee = Tee {
            inner: tar,
            copy: ingest,
            head: Vec::new(),
        };
        let (diff_id, lease) = match self.unpack_new_layer(&mut tee, "(import)", None, whiteouts) {
            Ok((dh, _, lease)) => (format!("sha256:{dh}"), lease),
            Err(LayerError::Unpack { source, .. }) => {
                tee.copy.discard();
                return Err(ImportError::Unpack {
                    path: self.root.join("layers"),
                    source,
                });
            }
            Err(e) => {
                tee.copy.discard();
                return Err(ImportError::Io {
                    op: "unpacking into",
                    path: self.root.join("layers"),
                    source: io::Error::other(e.to_string()),
                });
            }
        };
        // The decoder may stop before the end of the raw stream (gzip
        // trailer, padding): the blob must hold all of it.
        let rest = io::copy(&mut tee, &mut io::sink());
        let Tee { copy, head, .. } = tee;
        let recorded = rest
            .map_err(|source| ImportError::Io {
                op: "reading the archive for",
                path: self.root.join("blobs"),
                source,
            })
            .and_then(|_| {
                let blob_size = copy.size();
                let digest = copy.commit(None).map_err(blob_err)?;
                let media = layers::layer_media_type(Compression::detect(&head), false);
                let desc = silo_oci::image::Descriptor::new(media, &digest, blob_size);
                self.add_layer_from_blob(&desc, &diff_id)
                    .map_err(|e| ImportError::Io {
                        op: "recording the archive of",
                        path: self.root.join("layers"),
                        source: io::Error::other(e.to_string()),
                    })
            });
        if let Err(e) = recorded {
            drop(lease);
            self.forget_layer(&diff_id);
            return Err(e);
        }
        Ok((diff_id, lease))
    }

    /// Deletes layer `diff_id` (and its blobs) if nothing uses or leases it:
    /// the clean-up after a failed import, pull or load.
    pub fn forget_layer(&self, diff_id: &str) {
        let mut st = self.lock();
        let _ = self.drop_layer_if_unused(&mut st, diff_id);
    }

    /// Stores an image whose config is `config` (the exact bytes; the image
    /// id is their digest) and whose layers are all stored; tags it `tag`
    /// ("repo:tag") and records `repo_digest` ("repo@sha256:…") if given.
    pub fn add_image(
        &self,
        config: &[u8],
        tag: Option<&str>,
        repo_digest: Option<&str>,
    ) -> Result<Image, AddImageError> {
        let id_hex = hex(&Sha256::digest(config));
        let digest = format!("sha256:{id_hex}");
        let cfg: ImageConfig =
            serde_json::from_slice(config).map_err(|source| AddImageError::Config {
                digest: digest.clone(),
                source,
            })?;
        let tag = tag.map(reference::normalize).transpose()?;
        let mut st = self.lock();
        for d in &cfg.rootfs.diff_ids {
            if !st.layers.contains_key(diff_hex(d)) {
                return Err(AddImageError::MissingLayer {
                    digest,
                    diff_id: d.clone(),
                });
            }
        }
        let io_err = |op, path: &Path| {
            let (digest, path) = (digest.clone(), path.to_path_buf());
            move |source| AddImageError::Io {
                digest,
                op,
                path,
                source,
            }
        };
        let image_path = self.image_path(&id_hex);
        let new_image = !st.images.contains_key(&id_hex);
        if new_image {
            write_atomic(&image_path, config).map_err(io_err("writing", &image_path))?;
            st.images.insert(id_hex.clone(), cfg.clone());
        }
        let (old_tags, old_digests) = (st.tags.clone(), st.digests.clone());
        if let Some(t) = &tag {
            st.tags.insert(t.clone(), digest.clone());
        }
        if let Some(r) = repo_digest {
            st.digests.insert(r.to_string(), digest.clone());
        }
        if tag.is_some() || repo_digest.is_some() {
            if let Err(e) = self.save_tags(&st) {
                st.tags = old_tags;
                st.digests = old_digests;
                if new_image {
                    st.images.remove(&id_hex);
                    let _ = remove_file_if_exists(&image_path);
                }
                return Err(io_err("writing", &self.repositories_path())(e));
            }
        }
        Ok(Self::image_of(&st, &id_hex, &cfg))
    }

    /// All images, newest first.
    pub fn images(&self) -> Vec<Image> {
        let st = self.lock();
        let mut v: Vec<Image> = st
            .images
            .iter()
            .map(|(h, c)| Self::image_of(&st, h, c))
            .collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// One image by tag ("busybox" means "busybox:latest"), full id
    /// ("sha256:<hex>") or a unique id prefix of at least 4 hex digits.
    pub fn image(&self, name_or_id: &str) -> Result<Image, NotFound> {
        let st = self.lock();
        let (h, _) = Self::resolve(&st, name_or_id)?;
        let cfg = st.images.get(&h).ok_or_else(|| NotFound::Image {
            reference: name_or_id.to_string(),
        })?;
        Ok(Self::image_of(&st, &h, cfg))
    }

    /// Points tag `target` at the image `source` names (moving it if it existed).
    pub fn tag(&self, source: &str, target: &str) -> Result<(), TagError> {
        let t = reference::normalize(target)?;
        let mut st = self.lock();
        let (h, _) = Self::resolve(&st, source)?;
        let old = st.tags.insert(t.clone(), format!("sha256:{h}"));
        if let Err(e) = self.save_tags(&st) {
            match old {
                Some(o) => st.tags.insert(t.clone(), o),
                None => st.tags.remove(&t),
            };
            return Err(TagError::Io {
                target: t,
                path: self.repositories_path(),
                source: e,
            });
        }
        Ok(())
    }

    /// Deletes an image from disk (it must have no tags left) and each of its
    /// layers no other image or snapshot uses. Returns the bytes freed.
    fn delete_image(
        &self,
        st: &mut State,
        hexid: &str,
        out: &mut Vec<Removed>,
    ) -> Result<u64, (&'static str, PathBuf, io::Error)> {
        let id = format!("sha256:{hexid}");
        let refs = st.digests_of(&id);
        if !refs.is_empty() {
            for r in &refs {
                st.digests.remove(r);
            }
            self.save_tags(st)
                .map_err(|e| ("writing", self.repositories_path(), e))?;
            for r in refs {
                // The manifest (or index) blob goes when no reference names it.
                if let Some((_, d)) = r.split_once('@') {
                    if !st.digests.keys().any(|k| k.ends_with(&format!("@{d}"))) {
                        let _ = self.delete_blob(d);
                    }
                }
                out.push(Removed::Untagged(r));
            }
        }
        let p = self.image_path(hexid);
        remove_file_if_exists(&p).map_err(|e| ("deleting", p.clone(), e))?;
        let Some(cfg) = st.images.remove(hexid) else {
            return Ok(0);
        };
        out.push(Removed::Deleted(id));
        let mut freed = 0;
        for d in &cfg.rootfs.diff_ids {
            if let Some(n) = self.drop_layer_if_unused(st, d)? {
                freed += n;
                out.push(Removed::Deleted(d.clone()));
            }
        }
        // Build parents go with their last child when nothing else names
        // them (as dockerd removes a build's intermediate images).
        let parent = st.parents.remove(hexid);
        st.parents.retain(|_, p| p != hexid);
        let _ = self.save_parents(st);
        if let Some(p) = parent {
            let pid = format!("sha256:{p}");
            let orphan = st.images.contains_key(&p)
                && st.tags_of(&pid).is_empty()
                && st.digests_of(&pid).is_empty()
                && !st.parents.values().any(|x| *x == p);
            if orphan {
                freed += self.delete_image(st, &p, out)?;
            }
        }
        Ok(freed)
    }

    /// Deletes layer `diff_id` when no image and no snapshot uses it;
    /// returns its size when it was deleted.
    fn drop_layer_if_unused(
        &self,
        st: &mut State,
        diff_id: &str,
    ) -> Result<Option<u64>, (&'static str, PathBuf, io::Error)> {
        let dh = diff_hex(diff_id);
        let used = st
            .images
            .values()
            .any(|c| c.rootfs.diff_ids.iter().any(|x| diff_hex(x) == dh))
            || st
                .all_snapshots(&self.root)
                .any(|s| s.diff_ids.iter().any(|x| diff_hex(x) == dh))
            // A snapshot whose metadata cannot be read may use it: keep it.
            || st.snapshots.values().any(Option::is_none)
            || st.leases.contains_key(dh);
        if used || !st.layers.contains_key(dh) {
            return Ok(None);
        }
        let dir = self.layer_path(dh);
        remove_tree(&dir).map_err(|e| ("deleting layer", dir.clone(), e))?;
        let meta = self.root.join("layers").join(format!("{dh}.json"));
        let _ = remove_file_if_exists(&meta);
        let mut freed = st.layers.remove(dh).unwrap_or(0);
        for b in st.layer_blobs.remove(dh).unwrap_or_default() {
            let still_used = st
                .layer_blobs
                .values()
                .any(|v| v.iter().any(|x| x.digest == b.digest));
            if !still_used {
                freed += self.delete_blob(&b.digest).unwrap_or(0);
            }
        }
        Ok(Some(freed))
    }

    /// `docker rmi`: removing a tag while the image has other tags only
    /// untags; removing its last tag, or removing by id, deletes the image and
    /// its unshared layers. An image a container uses (per `in_use`, given
    /// the image id) or one with several tags removed by id needs `force`.
    pub fn remove_image(
        &self,
        name_or_id: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>, RemoveError> {
        let mut st = self.lock();
        let (h, via_tag) = Self::resolve(&st, name_or_id)?;
        let id = format!("sha256:{h}");
        let tags = st.tags_of(&id);
        let conflict = || RemoveError::InUse {
            reference: name_or_id.to_string(),
            image_id: id.clone(),
        };
        let io_err = |(op, path, source): (&'static str, PathBuf, io::Error)| RemoveError::Io {
            reference: name_or_id.to_string(),
            op,
            path,
            source,
        };
        let mut out = Vec::new();
        let untag: Vec<String> = match via_tag {
            Some(t) if tags.len() > 1 => vec![t],
            Some(t) => {
                if !force && in_use(&id) {
                    return Err(conflict());
                }
                vec![t]
            }
            None => {
                if !force && tags.len() > 1 {
                    return Err(RemoveError::MultipleTags {
                        reference: name_or_id.to_string(),
                        image_id: id,
                    });
                }
                if !force && in_use(&id) {
                    return Err(conflict());
                }
                tags.clone()
            }
        };
        let saved = st.tags.clone();
        for t in &untag {
            st.tags.remove(t);
        }
        if !untag.is_empty() {
            if let Err(e) = self.save_tags(&st) {
                st.tags = saved;
                return Err(io_err(("writing", self.repositories_path(), e)));
            }
        }
        out.extend(untag.iter().cloned().map(Removed::Untagged));
        if untag.len() < tags.len() {
            return Ok(out);
        }
        self.delete_image(&mut st, &h, &mut out).map_err(io_err)?;
        Ok(out)
    }

    /// `docker image prune`: removes images no container uses — only untagged
    /// ones when `dangling_only`, otherwise every unused image.
    pub fn prune_images(
        &self,
        dangling_only: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<PruneReport, PruneError> {
        let mut st = self.lock();
        let mut report = PruneReport::default();
        let victims: Vec<String> = st
            .images
            .keys()
            .filter(|h| {
                let id = format!("sha256:{h}");
                let tagged = st.tags.values().any(|v| *v == id);
                let parent_of_another = st.parents.values().any(|p| p == *h);
                (!dangling_only || !tagged) && !in_use(&id) && !parent_of_another
            })
            .cloned()
            .collect();
        for h in victims {
            let id = format!("sha256:{h}");
            let tags = st.tags_of(&id);
            if !tags.is_empty() {
                for t in &tags {
                    st.tags.remove(t);
                }
                self.save_tags(&st).map_err(|source| PruneError::Io {
                    op: "writing",
                    path: self.repositories_path(),
                    source,
                })?;
                report
                    .deleted
                    .extend(tags.into_iter().map(Removed::Untagged));
            }
            report.space_reclaimed += self
                .delete_image(&mut st, &h, &mut report.deleted)
                .map_err(|(op, path, source)| PruneError::Io { op, path, source })?;
        }
        Ok(report)
    }

    /// Sizes of images, layers, snapshots and volumes.
    pub fn disk_usage(&self) -> DiskUsage {
        let (images, layers_size, snaps) = {
            let st = self.lock();
            let mut refs: BTreeMap<&str, usize> = BTreeMap::new();
            for c in st.images.values() {
                for d in &c.rootfs.diff_ids {
                    *refs.entry(diff_hex(d)).or_default() += 1;
                }
            }
            let mut images: Vec<ImageUsage> = st
                .images
                .iter()
                .map(|(h, c)| {
                    let img = Self::image_of(&st, h, c);
                    let shared_size = c
                        .rootfs
                        .diff_ids
                        .iter()
                        .filter(|d| refs.get(diff_hex(d)).copied().unwrap_or(0) > 1)
                        .map(|d| st.layers.get(diff_hex(d)).copied().unwrap_or(0))
                        .sum();
                    ImageUsage {
                        id: img.id,
                        repo_tags: img.repo_tags,
                        size: img.size,
                        shared_size,
                    }
                })
                .collect();
            images.sort_by(|a, b| a.id.cmp(&b.id));
            let layers_size = st.layers.values().sum();
            let snaps: Vec<String> = st.snapshots.keys().cloned().collect();
            (images, layers_size, snaps)
        };
        let snapshots = snaps
            .into_iter()
            .map(|c| {
                let s = self.snapshot_size(&c);
                (c, s)
            })
            .collect();
        let volumes = self
            .volumes()
            .into_iter()
            .map(|v| {
                let s = tree_size(&v.mountpoint);
                (v.name, s)
            })
            .collect();
        DiskUsage {
            layers_size,
            images,
            snapshots,
            volumes,
        }
    }
}

/// Copies everything read through it into a blob, and keeps the first bytes
/// (to tell the compression).
struct Tee<R> {
    inner: R,
    copy: Ingest,
    head: Vec<u8>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.copy, &buf[..n])?;
        if self.head.len() < 8 {
            let take = (8 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }
}

//! `docker save` and `docker load`: image archives in the layout Docker 25
//! writes, which is an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) with Docker's `manifest.json` beside it, so one file
//! serves `docker load` (old and new dockerd), `skopeo` and other OCI tools.
//! Layers are written as stored (gzip when they were pulled compressed), so
//! a save copies blobs and recompresses nothing.
//!
//! `load` reads that layout, a plain OCI layout, and the older
//! docker-archive (`<id>/layer.tar`, `<config>.json`, symlinked shared
//! layers). The archive is hostile: entry names are confined to a private
//! temporary directory, every blob is checked against its digest, every
//! layer against the config's diffID, and any failure removes everything
//! the load added (layers, blobs, images).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use silo_oci::image::{
    media, Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use silo_oci::image_config::ImageConfig;
use silo_oci::reference::Reference;
use thiserror::Error;

use crate::extract::Compression;
use crate::fsutil::{hex, random_hex, TMP_PREFIX};
use crate::layers::LayerError;
use crate::{diff_hex, AddImageError, Image, NotFound, Store};

/// Saving failed (the output is incomplete).
#[derive(Debug, Error)]
pub enum SaveError {
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("saving {image}: {source}")]
    Layer { image: String, source: LayerError },
    #[error("saving: writing the archive: {0}")]
    Write(io::Error),
    #[error("saving {image}: reading {what}: {source}")]
    Read {
        image: String,
        what: String,
        source: io::Error,
    },
}

/// Loading failed; nothing the load added was kept.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading: the archive is not a readable tar (truncated or corrupt): {0}")]
    Tar(io::Error),
    #[error("loading: entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error(
        "loading: the archive has neither manifest.json nor index.json (not an image archive)"
    )]
    NoManifest,
    #[error("loading: {file}: {reason}")]
    Bad { file: String, reason: String },
    #[error("loading: {file} is missing from the archive (truncated?)")]
    Missing { file: String },
    #[error("loading: {0}")]
    Layer(#[from] LayerError),
    #[error("loading: {0}")]
    Image(#[from] AddImageError),
    #[error("loading: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// One image in an archive to write: an image and the tags to name it by.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: Image,
    /// "repo:tag" names (empty: saved by id only).
    pub tags: Vec<String>,
}

/// What a load stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub id: String,
    pub tags: Vec<String>,
}

fn to_oci_layer(m: &str) -> &'static str {
    match m {
        media::DOCKER_LAYER_GZIP | media::OCI_LAYER_GZIP => media::OCI_LAYER_GZIP,
        media::OCI_LAYER_ZSTD => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER,
    }
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

impl Store {
    /// Writes `items` as one archive to `out`.
    pub fn save(&self, items: &[SaveItem], out: impl Write) -> Result<(), SaveError> {
        let mut b = tar::Builder::new(out);
        let mut written: std::collections::HashSet<String> = Default::default();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut dirs_done = false;
        let add = |b: &mut tar::Builder<_>, name: &str, data: &mut dyn Read, size: u64| {
            b.append_data(&mut header(size, 0o644), name, data)
                .map_err(SaveError::Write)
        };
        add(
            &mut b,
            "oci-layout",
            &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
            30,
        )?;
        for item in items {
            let img = &item.image;
            if !dirs_done {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                for d in ["blobs", "blobs/sha256"] {
                    b.append_data(&mut h.clone(), d, io::empty())
                        .map_err(SaveError::Write)?;
                }
                dirs_done = true;
            }
            let config = self.read_blob(&img.id).map_err(|e| SaveError::Read {
                image: img.id.clone(),
                what: "its config".into(),
                source: io::Error::other(e.to_string()),
            })?;
            let mut layers = Vec::new();
            for d in &img.diff_ids {
                let blobs = self.layer_blobs(d);
                let blob = blobs
                    .into_iter()
                    .find(|x| self.has_blob(&x.digest))
                    .ok_or_else(|| SaveError::Layer {
                        image: img.id.clone(),
                        source: LayerError::NoArchive { diff_id: d.clone() },
                    })?;
                layers.push(blob);
            }
            let blob_name = |d: &str| format!("blobs/sha256/{}", diff_hex(d));
            if written.insert(img.id.clone()) {
                add(
                    &mut b,
                    &blob_name(&img.id),
                    &mut &config[..],
                    config.len() as u64,
                )?;
            }
            for l in &layers {
                if written.insert(l.digest.clone()) {
                    let mut f = self.open_blob(&l.digest).map_err(|e| SaveError::Read {
                        image: img.id.clone(),
                        what: l.digest.clone(),
                        source: io::Error::other(e.to_string()),
                    })?;
                    add(&mut b, &blob_name(&l.digest), &mut f, l.size)?;
                }
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media::OCI_MANIFEST.to_string()),
                config: Descriptor::new(media::OCI_CONFIG, &img.id, config.len() as u64),
                layers: layers
                    .iter()
                    .map(|l| Descriptor::new(to_oci_layer(&l.media_type), &l.digest, l.size))
                    .collect(),
                annotations: Default::default(),
            };
            let mbytes = serde_json::to_vec(&manifest).map_err(|e| SaveError::Write(e.into()))?;
            let mdigest = format!("sha256:{}", hex(&Sha256::digest(&mbytes)));
            if written.insert(mdigest.clone()) {
                add(
                    &mut b,
                    &blob_name(&mdigest),
                    &mut &mbytes[..],
                    mbytes.len() as u64,
                )?;
            }
            let entry = |name: Option<&str>| {
                let mut d = Descriptor::new(media::OCI_MANIFEST, &mdigest, mbytes.len() as u64);
                if let Some(n) = name {
                    if let Ok(r) = Reference::parse(n) {
                        d.annotations
                            .insert(ANNOTATION_IMAGE_NAME.to_string(), r.to_string());
                        if let Some(t) = &r.tag {
                            d.annotations
                                .insert(ANNOTATION_REF_NAME.to_string(), t.clone());
                        }
                    }
                }
                d
            };
            if item.tags.is_empty() {
                index.push(entry(None));
            }
            for t in &item.tags {
                index.push(entry(Some(t)));
            }
            docker_manifest.push(serde_json::json!({
                "Config": blob_name(&img.id),
                "RepoTags": item.tags,
                "Layers": layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
            }));
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            manifests: index,
            annotations: Default::default(),
        };
        let ib = serde_json::to_vec(&index).map_err(|e| SaveError::Write(e.into()))?;
        add(&mut b, "index.json", &mut &ib[..], ib.len() as u64)?;
        let mb = serde_json::to_vec(&docker_manifest).map_err(|e| SaveError::Write(e.into()))?;
        add(&mut b, "manifest.json", &mut &mb[..], mb.len() as u64)?;
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(SaveError::Write)
    }

    /// Reads an image archive from `input` and stores its images. `report`
    /// is called once per image stored.
    pub fn load(
        &self,
        input: impl Read,
        report: &mut dyn FnMut(&Loaded),
    ) -> Result<Vec<Loaded>, LoadError> {
        let tmp = self
            .root
            .join("blobs")
            .join("sha256")
            .join(format!("{TMP_PREFIX}load-{}", random_hex(16)));
        fs::create_dir(&tmp).map_err(|source| LoadError::Io {
            op: "creating",
            path: tmp.clone(),
            source,
        })?;
        let mut added_layers = Vec::new();
        let mut added_blobs = Vec::new();
        let result = self.load_into(input, &tmp, &mut added_layers, &mut added_blobs, report);
        let _ = fs::remove_dir_all(&tmp);
        if result.is_err() {
            for d in &added_layers {
                self.forget_layer(d);
            }
            for b in &added_blobs {
                self.discard_blob(b);
            }
        }
        result
    }

    fn load_into(
        &self,
        input: impl Read,
        tmp: &std::path::Path,
        added_layers: &mut Vec<String>,
        added_blobs: &mut Vec<String>,
        report: &mut dyn FnMut(&Loaded),
    ) -> Result<Vec<Loaded>, LoadError> {
        let files = unpack_archive(
            crate::extract::decompressed(input).map_err(LoadError::Tar)?,
            tmp,
        )?;
        let read_small = |name: &str| -> Result<Vec<u8>, LoadError> {
            let f = files.get(name).ok_or_else(|| LoadError::Missing {
                file: name.to_string(),
            })?;
            if f.size > 16 << 20 {
                return Err(LoadError::Bad {
                    file: name.to_string(),
                    reason: "larger than 16 MiB".to_string(),
                });
            }
            fs::read(&f.path).map_err(|source| LoadError::Io {
                op: "reading",
                path: f.path.clone(),
                source,
            })
        };
        // (config file, tags, layer files)
        let mut images: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        if files.contains_key("manifest.json") {
            #[derive(serde::Deserialize)]
            struct Entry {
                #[serde(rename = "Config")]
                config: String,
                #[serde(rename = "RepoTags", default)]
                repo_tags: Option<Vec<String>>,
                #[serde(rename = "Layers")]
                layers: Vec<String>,
            }
            let list: Vec<Entry> =
                serde_json::from_slice(&read_small("manifest.json")?).map_err(|e| {
                    LoadError::Bad {
                        file: "manifest.json".into(),
                        reason: e.to_string(),
                    }
                })?;
            for e in list {
                images.push((e.config, e.repo_tags.unwrap_or_default(), e.layers));
            }
        } else if files.contains_key("index.json") {
            let mut stack: Vec<(String, Option<String>)> = vec![("index.json".into(), None)];
            while let Some((file, name)) = stack.pop() {
                let index: Index =
                    serde_json::from_slice(&read_small(&file)?).map_err(|e| LoadError::Bad {
                        file: file.clone(),
                        reason: e.to_string(),
                    })?;
                for d in index.manifests {
                    let path = blob_file(&d.digest).ok_or_else(|| LoadError::Bad {
                        file: file.clone(),
                        reason: format!("bad digest {:?}", d.digest),
                    })?;
                    let name = d
                        .annotations
                        .get(ANNOTATION_IMAGE_NAME)
                        .cloned()
                        .or_else(|| {
                            d.annotations
                                .get(ANNOTATION_REF_NAME)
                                .filter(|r| Reference::parse(r).is_ok() && r.contains(':'))
                                .cloned()
                        })
                        .or(name.clone());
                    if media::is_index(&d.media_type) {
                        stack.push((path, name));
                        continue;
                    }
                    if !media::is_manifest(&d.media_type) {
                        continue;
                    }
                    let m: Manifest = serde_json::from_slice(&read_small(&path)?).map_err(|e| {
                        LoadError::Bad {
                            file: path.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    let cfg = blob_file(&m.config.digest).ok_or_else(|| LoadError::Bad {
                        file: path.clone(),
                        reason: "bad config digest".into(),
                    })?;
                    let layers = m
                        .layers
                        .iter()
                        .map(|l| {
                            blob_file(&l.digest).ok_or_else(|| LoadError::Bad {
                                file: path.clone(),
                                reason: format!("bad layer digest {:?}", l.digest),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let tags = name
                        .and_then(|n| crate::reference::normalize(&n).ok())
                        .into_iter()
                        .collect();
                    images.push((cfg, tags, layers));
                }
            }
        } else {
            return Err(LoadError::NoManifest);
        }
        // Everything checked and stored first; the images last.
        let mut staged = Vec::new();
        let mut leases = Vec::new();
        for (cfg_file, tags, layer_files) in &images {
            let config = read_small(cfg_file)?;
            let parsed: ImageConfig =
                serde_json::from_slice(&config).map_err(|e| LoadError::Bad {
                    file: cfg_file.clone(),
                    reason: format!("image config: {e}"),
                })?;
            if parsed.rootfs.diff_ids.len() != layer_files.len() {
                return Err(LoadError::Bad {
                    file: cfg_file.clone(),
                    reason: format!(
                        "the config lists {} layers, the manifest {}",
                        parsed.rootfs.diff_ids.len(),
                        layer_files.len()
                    ),
                });
            }
            leases.push(self.lease(&parsed.rootfs.diff_ids));
            for (lf, diff_id) in layer_files.iter().zip(&parsed.rootfs.diff_ids) {
                if self.has_layer(diff_id) {
                    continue;
                }
                let f = files
                    .get(lf.as_str())
                    .ok_or_else(|| LoadError::Missing { file: lf.clone() })?;
                let digest = format!("sha256:{}", f.sha256);
                if !self.has_blob(&digest) {
                    let target = self.root.join("blobs").join("sha256").join(&f.sha256);
                    fs::rename(&f.path, &target).map_err(|source| LoadError::Io {
                        op: "storing",
                        path: target.clone(),
                        source,
                    })?;
                    added_blobs.push(digest.clone());
                }
                let media_type = crate::layers::layer_media_type(f.compression, false);
                let desc = Descriptor::new(media_type, &digest, f.size);
                self.add_layer_from_blob(&desc, diff_id)?;
                added_layers.push(diff_id.clone());
            }
            staged.push((config, tags.clone()));
        }
        let mut out = Vec::new();
        for (config, tags) in staged {
            let mut img = self.add_image(&config, None, None)?;
            for t in &tags {
                img = self.add_image(&config, Some(t), None)?;
            }
            let l = Loaded { id: img.id, tags };
            report(&l);
            out.push(l);
        }
        drop(leases);
        Ok(out)
    }
}

/// "blobs/sha256/<hex>" for a digest.
fn blob_file(digest: &str) -> Option<String> {
    crate::blobs::digest_hex(digest).map(|h| format!("blobs/sha256/{h}"))
}

/// A regular file of the archive, written to the temporary directory.
struct ArchiveFile {
    path: PathBuf,
    sha256: String,
    size: u64,
    compression: Compression,
}

/// Writes every regular file of the archive into `tmp` (under numbered
/// names: entry names never become paths), hashing it; symlinks (which the
/// old docker-archive uses for shared layers) become aliases of the file
/// they point at, inside the archive only.
fn unpack_archive(
    input: impl Read,
    tmp: &std::path::Path,
) -> Result<HashMap<String, ArchiveFile>, LoadError> {
    let mut archive = tar::Archive::new(input);
    let mut files: HashMap<String, ArchiveFile> = HashMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let entries = archive.entries().map_err(LoadError::Tar)?;
    let mut saw_any = false;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(LoadError::Tar)?;
        saw_any = true;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if raw.split('/').all(|c| c.is_empty() || c == ".") {
            continue; // the archive's root directory ("./")
        }
        let name = normalize(&raw).ok_or_else(|| LoadError::Entry {
            entry: raw.clone(),
            reason: "path escapes the archive ('..')".into(),
        })?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let joined = if parent.is_empty() {
                target.clone()
            } else {
                format!("{parent}/{target}")
            };
            let resolved = normalize(&joined).ok_or_else(|| LoadError::Entry {
                entry: raw.clone(),
                reason: format!("link target {target:?} escapes the archive"),
            })?;
            links.insert(name, resolved);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let path = tmp.join(n.to_string());
        let mut out = File::create(&path).map_err(|source| LoadError::Io {
            op: "creating",
            path: path.clone(),
            source,
        })?;
        let mut hasher = Sha256::new();
        let mut head = [0u8; 8];
        let mut head_len = 0;
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let k = entry.read(&mut buf).map_err(LoadError::Tar)?;
            if k == 0 {
                break;
            }
            if head_len < 8 {
                let take = (8 - head_len).min(k);
                head[head_len..head_len + take].copy_from_slice(&buf[..take]);
                head_len += take;
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|source| LoadError::Io {
                op: "writing",
                path: path.clone(),
                source,
            })?;
            size += k as u64;
        }
        if size != entry.size() {
            return Err(LoadError::Entry {
                entry: raw,
                reason: format!("truncated: {size} of {} bytes", entry.size()),
            });
        }
        files.insert(
            name,
            ArchiveFile {
                path,
                sha256: hex(&hasher.finalize()),
                size,
                compression: Compression::detect(&head[..head_len]),
            },
        );
    }
    if !saw_any {
        return Err(LoadError::Tar(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "empty archive",
        )));
    }
    // Aliases, resolved (a link to a link too, a few levels).
    for _ in 0..4 {
        for (name, target) in &links {
            if files.contains_key(name) {
                continue;
            }
            if let Some(f) = files.get(target) {
                let alias = ArchiveFile {
                    path: f.path.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                    compression: f.compression,
                };
                files.insert(name.clone(), alias);
            }
        }
    }
    Ok(files)
}

/// "./a//b/" → "a/b"; None for ".." or an empty name.
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

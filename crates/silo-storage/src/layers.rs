//! Layers from blobs: a compressed (or plain) layer blob in the content store
//! is unpacked once per diffID into `layers/<hex>` and shared; each layer
//! records the blobs it came from, so pushes and saves send those exact
//! bytes. Leases keep a pull's layers alive until its image is stored.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use silo_oci::image::{media, Descriptor};
use thiserror::Error;

use crate::blobs::{digest_hex, BlobError};
use crate::extract::{self, Compression, ExtractError, Whiteouts};
use crate::fsutil::{random_hex, sync_dir, write_atomic, TMP_PREFIX};
use crate::{diff_hex, remove_tree, LayerMeta, Store};

/// Adding a layer failed; nothing was stored for it.
#[derive(Debug, Error)]
pub enum LayerError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("layer {blob}: {source}")]
    Unpack {
        blob: String,
        #[source]
        source: ExtractError,
    },
    #[error("layer {blob}: unpacked content has diffID sha256:{actual}, the image config says {expected}")]
    DiffId {
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("layer {diff_id} has no stored archive (it was imported by an older silo); re-import or re-pull the image")]
    NoArchive { diff_id: String },
    #[error("layer {what}: {op} {path}: {source}")]
    Io {
        what: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Keeps layers from garbage collection while an operation that will
/// reference them (a pull, a load) is in progress.
#[derive(Debug)]
pub struct Lease<'a> {
    store: &'a Store,
    diff_ids: Vec<String>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut st = self.store.lock();
        for d in &self.diff_ids {
            if let Some(n) = st.leases.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    st.leases.remove(d);
                }
            }
        }
    }
}

/// The media type that describes a layer blob with this compression.
pub fn layer_media_type(c: Compression, oci: bool) -> &'static str {
    match (c, oci) {
        (Compression::Gzip, false) => media::DOCKER_LAYER_GZIP,
        (Compression::None, false) => media::DOCKER_LAYER,
        (Compression::Gzip, true) => media::OCI_LAYER_GZIP,
        (Compression::None, true) => media::OCI_LAYER,
        (Compression::Zstd, _) => media::OCI_LAYER_ZSTD,
    }
}

impl Store {
    /// Keeps `diff_ids` from being deleted until the lease is dropped.
    pub fn lease(&self, diff_ids: &[String]) -> Lease<'_> {
        let mut st = self.lock();
        let ids: Vec<String> = diff_ids.iter().map(|d| diff_hex(d).to_string()).collect();
        for d in &ids {
            *st.leases.entry(d.clone()).or_default() += 1;
        }
        Lease {
            store: self,
            diff_ids: ids,
        }
    }

    /// A lease object for a lease count already taken under the lock.
    fn leased(&self, diff_hex: String) -> Lease<'_> {
        Lease {
            store: self,
            diff_ids: vec![diff_hex],
        }
    }

    /// The unpacked size of layer `diff_id` (0 if unknown).
    pub fn layer_size(&self, diff_id: &str) -> u64 {
        self.lock()
            .layers
            .get(diff_hex(diff_id))
            .copied()
            .unwrap_or(0)
    }

    /// Whether layer `diff_id` is unpacked.
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.lock().layers.contains_key(diff_hex(diff_id))
    }

    /// The blobs known to hold layer `diff_id`.
    pub fn layer_blobs(&self, diff_id: &str) -> Vec<Descriptor> {
        self.lock()
            .layer_blobs
            .get(diff_hex(diff_id))
            .cloned()
            .unwrap_or_default()
    }

    /// Records that `blob` holds layer `diff_hex` (in memory and in the
    /// layer's metadata file).
    fn record_layer_blob(&self, dh: &str, blob: &Descriptor) -> Result<(), LayerError> {
        let mut st = self.lock();
        let size = st.layers.get(dh).copied().unwrap_or(0);
        let list = st.layer_blobs.entry(dh.to_string()).or_default();
        if list.iter().any(|b| b.digest == blob.digest) {
            return Ok(());
        }
        let mut plain = blob.clone();
        plain.annotations.clear();
        plain.platform = None;
        list.push(plain);
        let meta = LayerMeta {
            size,
            blobs: list.clone(),
        };
        let path = self.root.join("layers").join(format!("{dh}.json"));
        let bytes = serde_json::to_vec(&meta).map_err(|e| LayerError::Io {
            what: dh.to_string(),
            op: "encoding",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&path, &bytes).map_err(|source| LayerError::Io {
            what: dh.to_string(),
            op: "writing",
            path,
            source,
        })
    }

    /// Unpacks the stored blob `blob` as layer `diff_id` (with overlay
    /// whiteouts), unless that layer is already unpacked; either way records
    /// the blob as one of the layer's archives. Returns the layer's size.
    pub fn add_layer_from_blob(&self, blob: &Descriptor, diff_id: &str) -> Result<u64, LayerError> {
        let dh = diff_hex(diff_id).to_string();
        if digest_hex(diff_id).is_none() {
            return Err(LayerError::DiffId {
                blob: blob.digest.clone(),
                expected: diff_id.to_string(),
                actual: "(not a sha256 digest)".to_string(),
            });
        }
        let existing = self.lock().layers.get(&dh).copied();
        if let Some(size) = existing {
            self.record_layer_blob(&dh, blob)?;
            return Ok(size);
        }
        let file = self.open_blob(&blob.digest)?;
        let (_, size, _lease) = self.unpack_new_layer(
            BufReader::with_capacity(1 << 20, file),
            &blob.digest,
            Some(&dh),
            Whiteouts::Overlay,
        )?;
        self.record_layer_blob(&dh, blob)?;
        Ok(size)
    }

    /// Unpacks a tar stream into a new layer directory; with `expected`, the
    /// stream's diffID must be that. Returns the diffID (hex) and the layer's
    /// size; the layer is
    /// registered in memory and on disk. `what` names the source in errors.
    pub(crate) fn unpack_new_layer(
        &self,
        input: impl Read,
        what: &str,
        expected: Option<&str>,
        whiteouts: Whiteouts,
    ) -> Result<(String, u64, Lease<'_>), LayerError> {
        let layers = self.root.join("layers");
        let tmp = layers.join(format!("{TMP_PREFIX}layer-{}", random_hex(16)));
        let io_err = |op, path: &std::path::Path| {
            let (what, path) = (what.to_string(), path.to_path_buf());
            move |source| LayerError::Io {
                what,
                op,
                path,
                source,
            }
        };
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        let unpacked = match extract::unpack(input, &tmp, whiteouts) {
            Ok(u) => u,
            Err(source) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(LayerError::Unpack {
                    blob: what.to_string(),
                    source,
                });
            }
        };
        if let Some(want) = expected {
            if unpacked.diff_id_hex != want {
                let _ = fs::remove_dir_all(&tmp);
                return Err(LayerError::DiffId {
                    blob: what.to_string(),
                    expected: format!("sha256:{want}"),
                    actual: unpacked.diff_id_hex,
                });
            }
        }
        let dh = unpacked.diff_id_hex.clone();
        let mut st = self.lock();
        if let Some(size) = st.layers.get(&dh).copied() {
            // Someone unpacked the same layer meanwhile.
            *st.leases.entry(dh.clone()).or_default() += 1;
            drop(st);
            let _ = fs::remove_dir_all(&tmp);
            return Ok((dh.clone(), size, self.leased(dh)));
        }
        let dir = layers.join(&dh);
        let meta_path = layers.join(format!("{dh}.json"));
        let commit = (|| {
            if dir.exists() {
                remove_tree(&dir).map_err(io_err("replacing", &dir))?;
            }
            fs::rename(&tmp, &dir).map_err(io_err("renaming into place", &dir))?;
            sync_dir(&layers).map_err(io_err("syncing", &layers))?;
            let meta = LayerMeta {
                size: unpacked.size,
                blobs: Vec::new(),
            };
            let bytes = serde_json::to_vec(&meta)
                .map_err(|e| io_err("encoding", &meta_path)(io::Error::other(e)))?;
            write_atomic(&meta_path, &bytes).map_err(io_err("writing", &meta_path))
        })();
        if let Err(e) = commit {
            let _ = fs::remove_dir_all(&tmp);
            let _ = remove_tree(&dir);
            let _ = fs::remove_file(&meta_path);
            return Err(e);
        }
        st.layers.insert(dh.clone(), unpacked.size);
        *st.leases.entry(dh.clone()).or_default() += 1;
        drop(st);
        Ok((dh.clone(), unpacked.size, self.leased(dh)))
    }

    /// The diffID (hex) of the layer a blob was unpacked into, if known.
    pub fn layer_of_blob(&self, blob_digest: &str) -> Option<String> {
        let st = self.lock();
        st.layer_blobs
            .iter()
            .find(|(_, v)| v.iter().any(|b| b.digest == blob_digest))
            .map(|(k, _)| format!("sha256:{k}"))
    }

    /// A gzip-compressed blob of layer `diff_id` (what registries and
    /// Docker expect): a stored one, or one made now from the layer's
    /// uncompressed (or zstd) archive and recorded for next time.
    pub fn compressed_layer_blob(&self, diff_id: &str) -> Result<Descriptor, LayerError> {
        let blobs = self.layer_blobs(diff_id);
        let is_gzip = |b: &&Descriptor| {
            b.media_type == media::DOCKER_LAYER_GZIP || b.media_type == media::OCI_LAYER_GZIP
        };
        if let Some(b) = blobs
            .iter()
            .find(is_gzip)
            .filter(|b| self.has_blob(&b.digest))
        {
            return Ok(b.clone());
        }
        let Some(source) = blobs.iter().find(|b| self.has_blob(&b.digest)) else {
            return Err(LayerError::NoArchive {
                diff_id: diff_id.to_string(),
            });
        };
        let input = extract::decompressed(BufReader::with_capacity(
            1 << 20,
            self.open_blob(&source.digest)?,
        ))
        .map_err(|e| LayerError::Io {
            what: source.digest.clone(),
            op: "reading",
            path: self.root.join("blobs"),
            source: e,
        })?;
        let blob = self.gzip_into_blob(input, &source.digest)?;
        self.record_layer_blob(diff_hex(diff_id), &blob)?;
        Ok(blob)
    }

    /// Compresses `input` into a new gzip blob.
    fn gzip_into_blob(&self, mut input: impl Read, what: &str) -> Result<Descriptor, LayerError> {
        let ingest = self.ingest(None)?;
        let mut gz = flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 20, ingest),
            flate2::Compression::fast(),
        );
        let io_err = |op| {
            let what = what.to_string();
            let path = self.root.join("blobs");
            move |source| LayerError::Io {
                what,
                op,
                path,
                source,
            }
        };
        io::copy(&mut input, &mut gz).map_err(io_err("compressing"))?;
        let mut bw = gz.finish().map_err(io_err("compressing"))?;
        bw.flush().map_err(io_err("writing"))?;
        let ingest = bw
            .into_inner()
            .map_err(|e| io_err("writing")(e.into_error()))?;
        let size = ingest.size();
        let digest = ingest.commit(None)?;
        Ok(Descriptor::new(media::DOCKER_LAYER_GZIP, &digest, size))
    }

    /// Opens the layer's archive as an uncompressed tar stream (for saves
    /// that want plain layers).
    pub fn open_layer_tar(&self, diff_id: &str) -> Result<Box<dyn Read>, LayerError> {
        let blobs = self.layer_blobs(diff_id);
        let Some(source) = blobs.iter().find(|b| self.has_blob(&b.digest)) else {
            return Err(LayerError::NoArchive {
                diff_id: diff_id.to_string(),
            });
        };
        let f: File = self.open_blob(&source.digest)?;
        extract::decompressed(BufReader::with_capacity(1 << 20, f)).map_err(|e| LayerError::Io {
            what: source.digest.clone(),
            op: "reading",
            path: self.root.join("blobs"),
            source: e,
        })
    }
}

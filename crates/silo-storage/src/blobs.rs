//! The content store: every manifest, index, config and compressed layer an
//! image came with, kept once by digest at `blobs/sha256/<hex>`, so pushes,
//! saves and RepoDigests give back exactly the bytes that were pulled.
//!
//! A blob is written through an [`Ingest`]: a temporary file in the same
//! directory, hashed while it is written, checked against the digest the
//! caller expects, then fsynced and renamed into place. A failed or
//! interrupted download keeps its partial file (`.tmp-ingest-<hex>`), so a
//! retry resumes from where it stopped (an HTTP range request); the file is
//! locked while in use, so two pulls of one blob never write the same file.
//! Image configs live in `images/<hex>.json` and count as blobs too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::fsutil::{hex, random_hex, sync_dir, TMP_PREFIX};
use crate::Store;

/// Writing a blob failed; nothing was stored under its digest.
#[derive(Debug, Error)]
pub enum BlobError {
    #[error("invalid digest {digest:?} (want sha256:<64 hex digits>)")]
    BadDigest { digest: String },
    #[error("blob {expected}: content does not match its digest (got {actual}, {size} bytes)")]
    Mismatch {
        expected: String,
        actual: String,
        size: u64,
    },
    #[error("blob {digest}: expected {expected} bytes, got {got}")]
    Size {
        digest: String,
        expected: u64,
        got: u64,
    },
    #[error("blob {digest}: {op} {path}: {source}")]
    Io {
        digest: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The hex part of a sha256 digest, if it is well formed.
pub(crate) fn digest_hex(digest: &str) -> Option<&str> {
    silo_oci::reference::valid_digest(digest).then(|| &digest[7..])
}

/// A blob being written. Write the content (after the first [`Ingest::offset`]
/// bytes, which an earlier attempt stored), then [`Ingest::commit`].
#[derive(Debug)]
pub struct Ingest {
    file: File,
    tmp: PathBuf,
    /// blobs/sha256: the blob is renamed to its hex digest there.
    dir: PathBuf,
    hasher: Sha256,
    size: u64,
    offset: u64,
    expected: Option<String>,
    /// Set once the file was renamed into place or deleted.
    done: bool,
}

impl Drop for Ingest {
    /// A blob of unknown digest cannot be resumed: its partial file goes.
    /// One with a known digest stays for a resume (or the sweep at open).
    fn drop(&mut self) {
        if !self.done && self.expected.is_none() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Ingest {
    /// Bytes already present from an earlier, interrupted attempt.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes written so far (the offset included).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the digest (and `size`, when given), makes the blob durable
    /// and moves it into place; returns its digest.
    pub fn commit(mut self, size: Option<u64>) -> Result<String, BlobError> {
        let actual = format!("sha256:{}", hex(&self.hasher.clone().finalize()));
        let digest = self.expected.clone().unwrap_or_else(|| actual.clone());
        let io_err = |op, path: &Path| {
            let (digest, path) = (digest.clone(), path.to_path_buf());
            move |source| BlobError::Io {
                digest,
                op,
                path,
                source,
            }
        };
        if let Some(want) = size {
            if want != self.size {
                let _ = fs::remove_file(&self.tmp);
                return Err(BlobError::Size {
                    digest,
                    expected: want,
                    got: self.size,
                });
            }
        }
        if actual != digest {
            // Wrong content must not be resumed from: start over next time.
            let _ = fs::remove_file(&self.tmp);
            return Err(BlobError::Mismatch {
                expected: digest,
                actual,
                size: self.size,
            });
        }
        let tmp = self.tmp.clone();
        self.file.flush().map_err(io_err("writing", &tmp))?;
        self.file.sync_all().map_err(io_err("syncing", &tmp))?;
        let target = self.dir.join(&digest[7..]);
        fs::rename(&tmp, &target).map_err(io_err("renaming into place", &target))?;
        self.done = true;
        if let Some(dir) = target.parent() {
            sync_dir(dir).map_err(io_err("syncing", dir))?;
        }
        Ok(digest)
    }

    /// Gives up and deletes the partial file (no resume).
    pub fn discard(mut self) {
        let _ = fs::remove_file(&self.tmp);
        self.done = true;
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Store {
    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where blob `digest` is stored, if it is stored.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let h = digest_hex(digest)?;
        let p = self.blobs_dir().join(h);
        if p.is_file() {
            return Some(p);
        }
        let cfg = self.image_path(h);
        cfg.is_file().then_some(cfg)
    }

    /// Whether blob `digest` is stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, BlobError> {
        let path = self.blob_path(digest).ok_or_else(|| BlobError::Io {
            digest: digest.to_string(),
            op: "opening",
            path: self.blobs_dir().join(digest_hex(digest).unwrap_or(digest)),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        File::open(&path).map_err(|source| BlobError::Io {
            digest: digest.to_string(),
            op: "opening",
            path,
            source,
        })
    }

    /// Reads a small stored blob (a manifest or config) whole.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let mut f = self.open_blob(digest)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|source| BlobError::Io {
            digest: digest.to_string(),
            op: "reading",
            path: self.blobs_dir(),
            source,
        })?;
        Ok(v)
    }

    /// Starts writing a blob. With `expected`, an interrupted earlier attempt
    /// at the same digest is resumed (see [`Ingest::offset`]); without it the
    /// digest is whatever the content hashes to.
    pub fn ingest(&self, expected: Option<&str>) -> Result<Ingest, BlobError> {
        let dir = self.blobs_dir();
        let label = expected.unwrap_or("(new blob)").to_string();
        let io_err = |op, path: &Path| {
            let (digest, path) = (label.clone(), path.to_path_buf());
            move |source| BlobError::Io {
                digest,
                op,
                path,
                source,
            }
        };
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let resumable = match expected {
            Some(d) => {
                let h = digest_hex(d).ok_or_else(|| BlobError::BadDigest {
                    digest: d.to_string(),
                })?;
                Some(dir.join(format!("{TMP_PREFIX}ingest-{h}")))
            }
            None => None,
        };
        if let Some(path) = resumable {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_err("opening", &path))?;
            let locked = rustix::fs::flock(
                file.as_fd(),
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            )
            .is_ok();
            if locked {
                // Hash what an earlier attempt left, then append to it.
                let mut hasher = Sha256::new();
                let mut f = &file;
                f.seek(SeekFrom::Start(0))
                    .map_err(io_err("reading", &path))?;
                let offset = io::copy(&mut f, &mut HashWriter(&mut hasher))
                    .map_err(io_err("reading", &path))?;
                return Ok(Ingest {
                    file,
                    tmp: path,
                    dir,
                    hasher,
                    size: offset,
                    offset,
                    expected: expected.map(str::to_string),
                    done: false,
                });
            }
        }
        // Someone else is writing the resumable file, or the digest is not
        // known yet: a private temporary file.
        let tmp = dir.join(format!("{TMP_PREFIX}ingest-{}", random_hex(16)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        Ok(Ingest {
            file,
            tmp,
            dir,
            hasher: Sha256::new(),
            size: 0,
            offset: 0,
            expected: expected.map(str::to_string),
            done: false,
        })
    }

    /// Stores `bytes` as a blob (checked against `expected` when given) and
    /// returns its digest.
    pub fn write_blob(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, BlobError> {
        let digest = match expected {
            Some(d) => d.to_string(),
            None => format!("sha256:{}", hex(&Sha256::digest(bytes))),
        };
        if self.has_blob(&digest) {
            let actual = format!("sha256:{}", hex(&Sha256::digest(bytes)));
            if actual != digest {
                return Err(BlobError::Mismatch {
                    expected: digest,
                    actual,
                    size: bytes.len() as u64,
                });
            }
            return Ok(digest);
        }
        let mut ing = self.ingest(Some(&digest))?;
        if ing.offset() > 0 {
            ing.discard();
            ing = self.ingest(Some(&digest))?;
        }
        ing.write_all(bytes).map_err(|source| BlobError::Io {
            digest: digest.clone(),
            op: "writing",
            path: self.blobs_dir(),
            source,
        })?;
        ing.commit(Some(bytes.len() as u64))
    }

    /// Deletes a blob no layer and no image reference needs (the clean-up
    /// of a failed pull or load).
    pub fn discard_blob(&self, digest: &str) {
        let st = self.lock();
        let used = st
            .layer_blobs
            .values()
            .any(|v| v.iter().any(|b| b.digest == digest))
            || st
                .digests
                .keys()
                .any(|k| k.ends_with(&format!("@{digest}")));
        if !used {
            let _ = self.delete_blob(digest);
        }
    }

    /// Deletes a blob from `blobs/` (configs in `images/` go with their image).
    pub(crate) fn delete_blob(&self, digest: &str) -> io::Result<u64> {
        let Some(h) = digest_hex(digest) else {
            return Ok(0);
        };
        let p = self.blobs_dir().join(h);
        match fs::symlink_metadata(&p) {
            Ok(md) => {
                fs::remove_file(&p)?;
                Ok(md.len())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

//! `docker commit`: a container's changes (its overlay upper dir, whiteouts
//! turned into the image-spec's) become a new layer on top of its image,
//! and a new image whose config is the container's, with Dockerfile-like
//! changes applied and a history entry added.

use std::io::{self, BufWriter, Write};

use silo_oci::image::{media, Descriptor};
use silo_oci::image_config::{ContainerConfig, History, ImageConfig, RootFs};
use silo_units::now_rfc3339;
use thiserror::Error;

use crate::{changes, snapshot, AddImageError, BlobError, ChangeError, LayerError, Store};

/// [`Store::commit`] failed; nothing was stored.
#[derive(Debug, Error)]
pub enum CommitError {
    #[error("committing: no snapshot for container {id}")]
    NoSnapshot { id: String },
    #[error("committing: {0}")]
    Change(#[from] ChangeError),
    #[error("committing: {0}")]
    Snapshot(#[from] crate::SnapshotError),
    #[error("committing {id}: reading its changes: {source}")]
    Read { id: String, source: io::Error },
    #[error("committing: {0}")]
    Blob(#[from] BlobError),
    #[error("committing: {0}")]
    Layer(#[from] LayerError),
    #[error("committing: {0}")]
    Image(#[from] AddImageError),
}

/// What to commit besides the filesystem.
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    /// The new image's container defaults (the container's own).
    pub config: ContainerConfig,
    /// Dockerfile instructions applied on top (`--change`).
    pub changes: Vec<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    /// The history's `created_by` (the container's command).
    pub created_by: Option<String>,
    /// "repo:tag" to tag the new image with.
    pub tag: Option<String>,
}

impl Store {
    /// Commits container `container_id`'s snapshot as a new image.
    pub fn commit(
        &self,
        container_id: &str,
        spec: &CommitSpec,
    ) -> Result<crate::Image, CommitError> {
        let mut cc = spec.config.clone();
        changes::apply(&mut cc, &spec.changes)?;
        let meta = {
            let mut st = self.lock();
            st.snapshot(&self.root, container_id)
                .cloned()
                .ok_or_else(|| CommitError::NoSnapshot {
                    id: container_id.to_string(),
                })?
        };
        self.ensure_disk(container_id, &meta)?;
        let parent = self.image(&meta.image_id).ok();
        // The layer: a tar of the upper dir, stored as its own blob.
        let upper = self.snapshot_paths(container_id).upper;
        let mut ingest = BufWriter::with_capacity(1 << 20, self.ingest(None)?);
        snapshot::write_tree_tar(&upper, &mut ingest, true).map_err(|source| {
            CommitError::Read {
                id: container_id.to_string(),
                source,
            }
        })?;
        ingest.flush().map_err(|source| CommitError::Read {
            id: container_id.to_string(),
            source,
        })?;
        let ingest = ingest.into_inner().map_err(|e| CommitError::Read {
            id: container_id.to_string(),
            source: e.into_error(),
        })?;
        let size = ingest.size();
        let digest = ingest.commit(None)?;
        let lease = self.lease(std::slice::from_ref(&digest));
        let desc = Descriptor::new(media::DOCKER_LAYER, &digest, size);
        let fresh = !self.has_layer(&digest);
        let stored = self
            .add_layer_from_blob(&desc, &digest)
            .map_err(CommitError::from)
            .and_then(|_| {
                let now = now_rfc3339();
                let mut diff_ids = meta.diff_ids.clone();
                diff_ids.push(digest.clone());
                let base = parent
                    .as_ref()
                    .map(|p| p.config.clone())
                    .unwrap_or_default();
                let mut history = base.history.clone();
                history.push(History {
                    created: Some(now.clone()),
                    created_by: spec.created_by.clone(),
                    author: spec.author.clone().filter(|a| !a.is_empty()),
                    comment: spec.comment.clone().filter(|c| !c.is_empty()),
                    empty_layer: false,
                });
                let cfg = ImageConfig {
                    architecture: if base.architecture.is_empty() {
                        silo_oci::image::Platform::host().architecture
                    } else {
                        base.architecture.clone()
                    },
                    os: "linux".to_string(),
                    created: Some(now),
                    author: spec.author.clone().filter(|a| !a.is_empty()),
                    config: cc,
                    rootfs: RootFs {
                        kind: "layers".to_string(),
                        diff_ids,
                    },
                    history,
                };
                let bytes = serde_json::to_vec(&cfg).map_err(|e| CommitError::Read {
                    id: container_id.to_string(),
                    source: io::Error::other(e),
                })?;
                Ok(self.add_image(&bytes, spec.tag.as_deref(), None)?)
            });
        drop(lease);
        if stored.is_err() {
            if fresh {
                self.forget_layer(&digest);
            }
            self.discard_blob(&digest);
        }
        stored
    }
}

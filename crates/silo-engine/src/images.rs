//! Images: the engine's operations over silo-storage's image store
//! (import, tag, remove, prune), with the events they cause and the
//! containers that keep an image in use.

use crate::error::{Error, Kind, Result};
use crate::events::{Action, Scope};
use crate::Engine;
use std::collections::HashMap;
use std::io::Read;

impl Engine {
    /// An image by reference, id or unique id prefix.
    pub fn image(&self, name: &str) -> Result<silo_storage::Image> {
        self.storage
            .image(name)
            .map_err(|_| Error::not_found(Kind::Image, name))
    }

    pub fn images(&self) -> Vec<silo_storage::Image> {
        self.storage.images()
    }

    /// How many containers (in any state) use each image, by image id.
    pub fn image_users(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in self.lock().values() {
            *m.entry(c.config.image.id.clone()).or_insert(0) += 1;
        }
        m
    }

    fn image_in_use(&self, image_id: &str) -> bool {
        self.lock().values().any(|c| c.config.image.id == image_id)
    }

    /// Imports a tarball as a one-layer image, tagged `reference` if given,
    /// with `changes` (Dockerfile instructions) applied to its config.
    pub fn import_image(
        &self,
        tar: &mut dyn Read,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<silo_storage::Image> {
        let image = self
            .storage
            .import(tar, reference, changes, message)
            .map_err(|e| match e {
                silo_storage::ImportError::Reference(_)
                | silo_storage::ImportError::Change(_)
                | silo_storage::ImportError::Unpack { .. } => {
                    Error::invalid("image", e.to_string())
                }
                other => Error::internal("importing an image", other),
            })?;
        let mut attrs = std::collections::BTreeMap::new();
        if let Some(r) = reference {
            attrs.insert("name".to_string(), r.to_string());
        }
        self.emit_with(Scope::Image, Action::Import, &image.id, attrs);
        Ok(image)
    }

    /// Tags image `name` as `target` ("repo:tag").
    pub fn tag_image(&self, name: &str, target: &str) -> Result<()> {
        let img = self.image(name)?;
        self.storage.tag(name, target).map_err(|e| match e {
            silo_storage::TagError::Source(_) => Error::not_found(Kind::Image, name),
            silo_storage::TagError::Target(_) => Error::invalid("tag", e.to_string()),
            other => Error::internal("tagging an image", other),
        })?;
        self.emit_with(
            Scope::Image,
            Action::Tag,
            &img.id,
            [("name".to_string(), target.to_string())].into(),
        );
        Ok(())
    }

    /// Untags or deletes an image; one in use by a container is refused
    /// (even with `force`, which removes an image with several tags).
    pub fn remove_image(&self, name: &str, force: bool) -> Result<Vec<silo_storage::Removed>> {
        let in_use = |id: &str| self.image_in_use(id);
        let removed = self
            .storage
            .remove_image(name, force, &in_use)
            .map_err(|e| match e {
                silo_storage::RemoveError::NotFound(_) => Error::not_found(Kind::Image, name),
                silo_storage::RemoveError::InUse { .. }
                | silo_storage::RemoveError::MultipleTags { .. } => Error::conflict(e.to_string()),
                other => Error::internal("removing an image", other),
            })?;
        for r in &removed {
            match r {
                silo_storage::Removed::Untagged(t) => self.emit_with(
                    Scope::Image,
                    Action::Untag,
                    t,
                    [("name".to_string(), t.clone())].into(),
                ),
                silo_storage::Removed::Deleted(d) if d.starts_with("sha256:") => {
                    self.emit_with(Scope::Image, Action::Delete, d, Default::default())
                }
                _ => {}
            }
        }
        Ok(removed)
    }

    /// Removes unused images: untagged ones only, or every unused one.
    pub fn prune_images(&self, dangling_only: bool) -> Result<silo_storage::PruneReport> {
        let in_use = |id: &str| self.image_in_use(id);
        let report = self
            .storage
            .prune_images(dangling_only, &in_use)
            .map_err(|e| Error::internal("pruning images", e))?;
        self.emit_with(
            Scope::Image,
            Action::Prune {
                reclaimed: report.space_reclaimed,
            },
            "",
            Default::default(),
        );
        Ok(report)
    }
}

impl Engine {
    /// Resolves the names `docker save` was given into the images and the
    /// tags to save them under: a tag saves that tag, an id saves the image
    /// untagged, a repository without a tag saves every tag of it.
    pub fn save_items(&self, names: &[String]) -> Result<Vec<silo_storage::SaveItem>> {
        let mut items: Vec<silo_storage::SaveItem> = Vec::new();
        for name in names {
            let img = self.image(name)?;
            let explicit_tag = silo_oci::reference::Reference::parse(name)
                .ok()
                .filter(|r| r.digest.is_none());
            let tags: Vec<String> = match explicit_tag {
                Some(r)
                    if img
                        .repo_tags
                        .iter()
                        .any(|t| r.familiar_tagged().as_deref() == Some(t.as_str())) =>
                {
                    r.familiar_tagged().into_iter().collect()
                }
                Some(r) if r.tag.is_none() => img
                    .repo_tags
                    .iter()
                    .filter(|t| {
                        t.rsplit_once(':')
                            .is_some_and(|(repo, _)| repo == r.familiar_repo())
                    })
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            match items.iter_mut().find(|i| i.image.id == img.id) {
                Some(existing) => {
                    for t in tags {
                        if !existing.tags.contains(&t) {
                            existing.tags.push(t);
                        }
                    }
                }
                None => items.push(silo_storage::SaveItem { image: img, tags }),
            }
        }
        Ok(items)
    }

    /// `docker save`: writes the images as one archive.
    pub fn save_images(
        &self,
        items: &[silo_storage::SaveItem],
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        self.storage.save(items, out).map_err(|e| match e {
            silo_storage::SaveError::NotFound(n) => Error::not_found(Kind::Image, n.to_string()),
            silo_storage::SaveError::Layer { .. } => Error::invalid("image", e.to_string()),
            other => Error::internal("saving images", other),
        })
    }

    /// `docker load`: stores the images of an archive; `report` gets each
    /// one stored.
    pub fn load_images(
        &self,
        input: &mut dyn Read,
        report: &mut dyn FnMut(&silo_storage::Loaded),
    ) -> Result<Vec<silo_storage::Loaded>> {
        let loaded = self.storage.load(input, report).map_err(|e| match e {
            silo_storage::LoadError::Io { .. } => Error::internal("loading images", e),
            other => Error::invalid("archive", other.to_string()),
        })?;
        for l in &loaded {
            let name = l.tags.first().cloned().unwrap_or_else(|| l.id.clone());
            self.emit_with(
                Scope::Image,
                Action::Load,
                &l.id,
                [("name".to_string(), name)].into(),
            );
        }
        Ok(loaded)
    }
}

/// `docker commit` in the engine's terms.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub spec: silo_storage::CommitSpec,
    /// Pause a running container while its filesystem is read.
    pub pause: bool,
}

impl Engine {
    /// Commits a container's filesystem changes as a new image.
    pub fn commit(&self, id: &str, req: &CommitRequest) -> Result<silo_storage::Image> {
        let c = self.container(id)?;
        let paused_here = req.pause && matches!(c.state.status, crate::Status::Running(_));
        if paused_here {
            self.pause(&c.id)?;
        }
        let result = self.storage.commit(&c.id, &req.spec);
        if paused_here {
            if let Err(e) = self.unpause(&c.id) {
                tracing::warn!("commit {}: unpausing: {e}", c.id);
            }
        }
        let image = result.map_err(|e| match e {
            silo_storage::CommitError::Change(_)
            | silo_storage::CommitError::Image(silo_storage::AddImageError::Reference(_)) => {
                Error::invalid("changes", e.to_string())
            }
            silo_storage::CommitError::NoSnapshot { .. } => Error::conflict(e.to_string()),
            other => Error::internal("committing", other),
        })?;
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("name".to_string(), c.name.clone());
        if let Some(t) = &req.spec.tag {
            attrs.insert("imageName".to_string(), t.clone());
        }
        self.emit_with(Scope::Container, Action::Commit, &c.id, attrs);
        Ok(image)
    }
}

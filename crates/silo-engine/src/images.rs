//! Image operations: thin wrappers over silo-storage's `Store` that speak
//! Docker's wire types and semantics (import, list, inspect, tag, remove,
//! prune).

use crate::containers::parse_rfc3339;
use crate::*;

fn store_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

fn removed_item(r: &silo_storage::Removed) -> ImageDeleteResponseItem {
    match r {
        silo_storage::Removed::Untagged(t) => ImageDeleteResponseItem {
            untagged: Some(t.clone()),
            deleted: None,
        },
        silo_storage::Removed::Deleted(d) => ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(d.clone()),
        },
    }
}

fn to_hash(m: Option<std::collections::BTreeMap<String, String>>) -> HashMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}

impl Engine {
    /// Whether a container (any state) uses the image.
    pub(crate) fn image_in_use(&self, image_id: &str) -> bool {
        self.lock().values().any(|c| c.image_id == image_id)
    }

    fn no_such_image(name: &str) -> EngineError {
        EngineError::NotFound(format!("No such image: {name}"))
    }

    /// `POST /images/create?fromSrc=-` (docker import): returns the image id.
    pub fn import_image(
        &self,
        tar: &mut dyn Read,
        repo: Option<&str>,
        tag: Option<&str>,
        changes: &[String],
        message: Option<&str>,
    ) -> Result<String> {
        let reference = match (
            repo.filter(|r| !r.is_empty()),
            tag.filter(|t| !t.is_empty()),
        ) {
            (Some(r), Some(t)) => Some(format!("{r}:{t}")),
            (Some(r), None) => Some(r.to_string()),
            (None, Some(t)) => {
                return Err(EngineError::BadParameter(format!(
                    "tag {t:?} given without a repository"
                )))
            }
            (None, None) => None,
        };
        let image = self
            .storage
            .import(tar, reference.as_deref(), changes, message)
            .map_err(|e| match e {
                silo_storage::ImportError::Reference(_) | silo_storage::ImportError::Change(_) => {
                    EngineError::BadParameter(e.to_string())
                }
                silo_storage::ImportError::Unpack { .. } => {
                    EngineError::BadParameter(e.to_string())
                }
                other => store_err(other),
            })?;
        let mut attrs = HashMap::new();
        if let Some(r) = &reference {
            attrs.insert("name".to_string(), r.clone());
        }
        self.emit("image", "import", &image.id, attrs);
        Ok(image.id)
    }

    pub fn images(&self, all: bool, filters: &Filters) -> Result<Vec<ImageSummary>> {
        let _ = all; // single-layer images have no intermediate images to hide
        let counts: HashMap<String, i64> = {
            let map = self.lock();
            let mut m = HashMap::new();
            for c in map.values() {
                *m.entry(c.image_id.clone()).or_insert(0) += 1;
            }
            m
        };
        let mut out = Vec::new();
        for img in self.storage.images() {
            if !image_matches(&img, filters, &|r| {
                self.storage.image(r).ok().map(|i| i.created)
            })? {
                continue;
            }
            out.push(ImageSummary {
                id: img.id.clone(),
                parent_id: String::new(),
                repo_tags: img.repo_tags.clone(),
                repo_digests: vec![],
                created: parse_rfc3339(&img.created).unwrap_or(0),
                size: img.size as i64,
                shared_size: -1,
                labels: to_hash(img.config.config.labels.clone()),
                containers: counts.get(&img.id).copied().unwrap_or(0),
                manifests: None,
                descriptor: None,
            });
        }
        Ok(out)
    }

    pub fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        let img = self
            .storage
            .image(name)
            .map_err(|_| Self::no_such_image(name))?;
        let cc = &img.config.config;
        let config = bollard_stubs::models::ImageConfig {
            user: Some(cc.user.clone().unwrap_or_default()),
            exposed_ports: cc
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect()),
            env: cc.env.clone(),
            cmd: cc.cmd.clone(),
            volumes: cc.volumes.as_ref().map(|p| p.keys().cloned().collect()),
            working_dir: Some(cc.working_dir.clone().unwrap_or_default()),
            entrypoint: cc.entrypoint.clone(),
            labels: Some(to_hash(cc.labels.clone())),
            stop_signal: cc.stop_signal.clone(),
            healthcheck: cc.healthcheck.as_ref().map(crate::health::from_image),
            ..Default::default()
        };
        let comment = img
            .config
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default();
        Ok(ImageInspect {
            id: Some(img.id.clone()),
            repo_tags: Some(img.repo_tags.clone()),
            repo_digests: Some(vec![]),
            comment: Some(comment),
            created: Some(img.created.clone()),
            author: Some(img.config.author.clone().unwrap_or_default()),
            config: Some(config),
            architecture: Some(img.config.architecture.clone()),
            os: Some(img.config.os.clone()),
            size: Some(img.size as i64),
            graph_driver: Some(DriverData {
                name: "silo-overlay".into(),
                data: HashMap::from([(
                    "LowerDir".to_string(),
                    img.diff_ids
                        .iter()
                        .rev()
                        .map(|d| self.storage.layer_path(d).to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(":"),
                )]),
            }),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".into(),
                layers: Some(img.diff_ids.clone()),
            }),
            ..Default::default()
        })
    }

    pub fn tag_image(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let target = match tag.filter(|t| !t.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_string(),
        };
        let img = self
            .storage
            .image(name)
            .map_err(|_| Self::no_such_image(name))?;
        self.storage.tag(name, &target).map_err(|e| match e {
            silo_storage::TagError::Source(_) => Self::no_such_image(name),
            silo_storage::TagError::Target(_) => EngineError::BadParameter(e.to_string()),
            other => store_err(other),
        })?;
        self.emit(
            "image",
            "tag",
            &img.id,
            HashMap::from([("name".to_string(), target)]),
        );
        Ok(())
    }

    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        _noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let in_use = |id: &str| self.image_in_use(id);
        let removed = self
            .storage
            .remove_image(name, force, &in_use)
            .map_err(|e| match e {
                silo_storage::RemoveError::NotFound(_) => Self::no_such_image(name),
                silo_storage::RemoveError::InUse { .. }
                | silo_storage::RemoveError::MultipleTags { .. } => {
                    EngineError::Conflict(e.to_string())
                }
                other => store_err(other),
            })?;
        for r in &removed {
            match r {
                silo_storage::Removed::Untagged(t) => self.emit(
                    "image",
                    "untag",
                    t,
                    HashMap::from([("name".to_string(), t.clone())]),
                ),
                silo_storage::Removed::Deleted(d) if d.starts_with("sha256:") => {
                    self.emit("image", "delete", d, HashMap::new())
                }
                _ => {}
            }
        }
        Ok(removed.iter().map(removed_item).collect())
    }

    pub fn prune_images(&self, filters: &Filters) -> Result<ImagePruneResponse> {
        let dangling_only = !filters
            .get("dangling")
            .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
        let in_use = |id: &str| self.image_in_use(id);
        let report = self
            .storage
            .prune_images(dangling_only, &in_use)
            .map_err(store_err)?;
        self.events.publish(
            "image",
            "prune",
            "",
            HashMap::from([("reclaimed".to_string(), report.space_reclaimed.to_string())]),
        );
        Ok(ImagePruneResponse {
            images_deleted: Some(report.deleted.iter().map(removed_item).collect()),
            space_reclaimed: Some(report.space_reclaimed as i64),
        })
    }
}

/// Docker's image list filters: reference, dangling, label, before, since.
fn image_matches(
    img: &silo_storage::Image,
    filters: &Filters,
    created_of: &dyn Fn(&str) -> Option<String>,
) -> Result<bool> {
    for (key, values) in filters {
        if values.is_empty() {
            continue;
        }
        let ok = match key.as_str() {
            "dangling" => values.iter().any(|v| {
                let want = v == "true" || v == "1";
                img.repo_tags.is_empty() == want
            }),
            "reference" => values.iter().any(|v| {
                img.repo_tags.iter().any(|t| {
                    let repo = t.rsplit_once(':').map(|(r, _)| r).unwrap_or(t);
                    glob(v, t) || glob(v, repo)
                })
            }),
            "label" => values.iter().any(|v| {
                let labels = img.config.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                }
            }),
            "before" => values
                .iter()
                .any(|v| created_of(v).is_some_and(|c| img.created < c)),
            "since" => values
                .iter()
                .any(|v| created_of(v).is_some_and(|c| img.created > c)),
            "until" => true,
            other => {
                return Err(EngineError::BadParameter(format!(
                    "invalid filter '{other}'"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A tiny glob: `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            if !text.starts_with(head) {
                return false;
            }
            let t = &text[head.len()..];
            (0..=t.len()).any(|i| t.is_char_boundary(i) && glob(rest, &t[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_globs() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*box:latest", "busybox:latest"));
        assert!(glob("busybox", "busybox"));
        assert!(!glob("alp*", "busybox"));
    }
}

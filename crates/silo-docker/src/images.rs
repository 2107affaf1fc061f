//! Images in Docker's shapes: import (`docker import`), list with
//! Docker's filters, inspect, tag, remove and prune.

use crate::inspect::Filters;
use crate::{health, invalid, Docker, Result};
use bollard_stubs::models::{
    DriverData, ImageDeleteResponseItem, ImageInspect, ImageInspectRootFs, ImagePruneResponse,
    ImageSummary,
};
use std::collections::HashMap;
use std::io::{Read, Write};

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
            "label" => values.iter().all(|v| {
                let labels = img.config.config.labels.clone().unwrap_or_default();
                crate::inspect::label_matches(|k| labels.get(k).cloned(), v)
            }),
            "before" => values
                .iter()
                .any(|v| created_of(v).is_some_and(|c| img.created < c)),
            "since" => values
                .iter()
                .any(|v| created_of(v).is_some_and(|c| img.created > c)),
            "until" => true,
            other => return Err(invalid("filters", format!("invalid filter '{other}'"))),
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

/// Docker's `repo` and `tag` query parameters as one "repo[:tag]"
/// reference (None when neither is given); a tag needs a repository.
fn repo_tag(repo: Option<&str>, tag: Option<&str>) -> Result<Option<String>> {
    match (
        repo.filter(|r| !r.is_empty()),
        tag.filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => Ok(Some(format!("{r}:{t}"))),
        (Some(r), None) => Ok(Some(r.to_string())),
        (None, Some(t)) => Err(invalid(
            "tag",
            format!("tag {t:?} given without a repository"),
        )),
        (None, None) => Ok(None),
    }
}

impl Docker {
    /// Checks the names of `docker save` (before any byte is sent).
    pub fn save_items(&self, names: &[String]) -> Result<Vec<silo_storage::SaveItem>> {
        if names.is_empty() {
            return Err(invalid("names", "no image names given"));
        }
        Ok(self.engine.save_items(names)?)
    }

    /// `GET /images/get`: writes the archive.
    pub fn save(&self, items: &[silo_storage::SaveItem], out: &mut dyn Write) -> Result<()> {
        Ok(self.engine.save_images(items, out)?)
    }

    /// `POST /images/load`: returns Docker's JSON stream lines (one per
    /// image: "Loaded image: …" or "Loaded image ID: …").
    pub fn load(&self, input: &mut dyn Read) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.engine.load_images(input, &mut |l| {
            let lines: Vec<String> = if l.tags.is_empty() {
                vec![format!("Loaded image ID: {}\n", l.id)]
            } else {
                l.tags
                    .iter()
                    .map(|t| format!("Loaded image: {t}\n"))
                    .collect()
            };
            for text in lines {
                if let Ok(mut b) = serde_json::to_vec(&serde_json::json!({ "stream": text })) {
                    b.push(b'\n');
                    out.extend(b);
                }
            }
        })?;
        Ok(out)
    }

    /// `POST /commit`: the container's config (with `body`'s fields over
    /// it) becomes the new image's; returns the image id.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        container: &str,
        repo: Option<&str>,
        tag: Option<&str>,
        comment: Option<&str>,
        author: Option<&str>,
        pause: bool,
        changes: &[String],
        body: Option<bollard_stubs::models::ContainerConfig>,
    ) -> Result<String> {
        let tag = repo_tag(repo, tag)?;
        let inspect = self.inspect(container, false)?;
        let mut cfg = inspect.config.unwrap_or_default();
        if let Some(b) = body {
            let d = bollard_stubs::models::ContainerConfig::default();
            macro_rules! over {
                ($($f:ident),*) => { $( if b.$f != d.$f { cfg.$f = b.$f.clone(); } )* };
            }
            over!(
                user,
                exposed_ports,
                env,
                cmd,
                entrypoint,
                volumes,
                working_dir,
                labels,
                stop_signal,
                healthcheck
            );
        }
        let set = |v: Option<Vec<String>>| -> Option<std::collections::BTreeMap<String, silo_storage::Empty>> {
            v.filter(|v| !v.is_empty())
                .map(|v| v.into_iter().map(|k| (k, silo_storage::Empty {})).collect())
        };
        let created_by = inspect
            .path
            .into_iter()
            .chain(inspect.args.unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        let config = silo_storage::ContainerConfig {
            user: cfg.user.filter(|u| !u.is_empty()),
            exposed_ports: set(cfg.exposed_ports),
            env: cfg.env,
            entrypoint: cfg.entrypoint,
            cmd: cfg.cmd,
            volumes: set(cfg.volumes),
            working_dir: cfg.working_dir.filter(|w| !w.is_empty()),
            labels: cfg
                .labels
                .filter(|l| !l.is_empty())
                .map(|l| l.into_iter().collect()),
            stop_signal: cfg.stop_signal,
            healthcheck: cfg.healthcheck.map(|h| silo_storage::HealthConfig {
                test: h.test,
                interval: h.interval,
                timeout: h.timeout,
                start_period: h.start_period,
                start_interval: h.start_interval,
                retries: h.retries,
            }),
            shell: cfg.shell.filter(|s| !s.is_empty()),
            on_build: cfg.on_build.filter(|o| !o.is_empty()),
        };
        let req = silo_engine::CommitRequest {
            spec: silo_storage::CommitSpec {
                config,
                changes: changes.to_vec(),
                comment: comment.map(str::to_string),
                author: author.map(str::to_string),
                created_by: Some(created_by),
                tag,
            },
            pause,
        };
        Ok(self.engine.commit(container, &req)?.id)
    }

    /// `GET /images/{name}/history`: newest first, as Docker lists it.
    pub fn history(
        &self,
        name: &str,
    ) -> Result<Vec<bollard_stubs::models::ImageHistoryResponseItem>> {
        let img = self.engine.image(name)?;
        let storage = self.engine.storage();
        let mut layers = img.diff_ids.iter();
        let mut out = Vec::new();
        let n = img.config.history.len();
        for (i, h) in img.config.history.iter().enumerate() {
            let size = if h.empty_layer {
                0
            } else {
                layers.next().map_or(0, |d| storage.layer_size(d) as i64)
            };
            out.push(bollard_stubs::models::ImageHistoryResponseItem {
                id: if i + 1 == n {
                    img.id.clone()
                } else {
                    "<missing>".to_string()
                },
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| silo_units::parse_rfc3339(c).ok())
                    .map_or(0, |(s, _)| s),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: if i + 1 == n {
                    img.repo_tags.clone()
                } else {
                    Vec::new()
                },
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        out.reverse();
        Ok(out)
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
        let reference = repo_tag(repo, tag)?;
        let image = self
            .engine
            .import_image(tar, reference.as_deref(), changes, message)?;
        Ok(image.id)
    }

    pub fn images(&self, all: bool, filters: &Filters) -> Result<Vec<ImageSummary>> {
        let counts = self.engine.image_users();
        let storage = self.engine.storage();
        let mut out = Vec::new();
        for img in self.engine.images() {
            // A build's intermediate images (untagged, with children) show
            // with `all` only, as dockerd lists them.
            let intermediate = img.repo_tags.is_empty() && storage.has_children(&img.id);
            if intermediate && !all {
                continue;
            }
            let created_of = |r: &str| self.engine.image(r).ok().map(|i| i.created);
            if !image_matches(&img, filters, &created_of)? {
                continue;
            }
            out.push(ImageSummary {
                id: img.id.clone(),
                parent_id: storage.parent_of(&img.id).unwrap_or_default(),
                repo_tags: img.repo_tags.clone(),
                repo_digests: img.repo_digests.clone(),
                created: silo_units::parse_rfc3339(&img.created).map_or(0, |(s, _)| s),
                size: img.size as i64,
                shared_size: -1,
                labels: to_hash(img.config.config.labels.clone()),
                containers: counts.get(&img.id).copied().unwrap_or(0) as i64,
                manifests: None,
                descriptor: None,
            });
        }
        Ok(out)
    }

    /// `GET /images/{name}/json` as sent: [`Docker::image_inspect`] with
    /// every key dockerd writes for API 1.45 (empty or null where silo has
    /// nothing to say), so strict clients find them all.
    pub fn image_inspect_document(&self, name: &str) -> Result<serde_json::Value> {
        let doc = self.image_inspect(name)?;
        let mut v = serde_json::to_value(&doc)
            .map_err(|e| crate::Error::Engine(silo_engine::Error::internal("encoding", e)))?;
        let defaults = serde_json::json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
            "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
            "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
            "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
        });
        if let (Some(cfg), Some(d)) = (v.get_mut("Config"), defaults.as_object()) {
            if let Some(cfg) = cfg.as_object_mut() {
                for (k, dv) in d {
                    cfg.entry(k.clone()).or_insert_with(|| dv.clone());
                }
            }
        }
        if let Some(obj) = v.as_object_mut() {
            let parent = obj
                .get("Id")
                .and_then(|i| i.as_str())
                .and_then(|i| self.engine.storage().parent_of(i))
                .unwrap_or_default();
            obj.insert("Parent".into(), parent.into());
            obj.entry("DockerVersion").or_insert_with(|| "".into());
            obj.entry("Metadata")
                .or_insert_with(|| serde_json::json!({ "LastTagTime": "0001-01-01T00:00:00Z" }));
        }
        if let Some(data) = v
            .pointer_mut("/GraphDriver/Data")
            .and_then(|d| d.as_object_mut())
        {
            // An image has no overlay of its own: the top layer is its upper dir.
            let lower = data
                .get("LowerDir")
                .and_then(|l| l.as_str())
                .unwrap_or("")
                .to_string();
            let (upper, rest) = lower.split_once(':').unwrap_or((lower.as_str(), ""));
            data.insert("UpperDir".into(), upper.into());
            data.insert("LowerDir".into(), rest.into());
            data.entry("MergedDir").or_insert_with(|| "".into());
            data.entry("WorkDir").or_insert_with(|| "".into());
        }
        Ok(v)
    }

    pub fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        let img = self.engine.image(name)?;
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
            healthcheck: cc.healthcheck.as_ref().map(health::from_image),
            on_build: cc.on_build.clone(),
            shell: cc.shell.clone(),
            ..Default::default()
        };
        let comment = img
            .config
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default();
        let storage = self.engine.storage();
        Ok(ImageInspect {
            id: Some(img.id.clone()),
            repo_tags: Some(img.repo_tags.clone()),
            repo_digests: Some(img.repo_digests.clone()),
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
                        .map(|d| storage.layer_path(d).to_string_lossy().into_owned())
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
        Ok(self.engine.tag_image(name, &target)?)
    }

    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        _noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let removed = self.engine.remove_image(name, force)?;
        Ok(removed.iter().map(removed_item).collect())
    }

    pub fn prune_images(&self, filters: &Filters) -> Result<ImagePruneResponse> {
        let dangling_only = !filters
            .get("dangling")
            .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
        let report = self.engine.prune_images(dangling_only)?;
        Ok(ImagePruneResponse {
            images_deleted: Some(report.deleted.iter().map(removed_item).collect()),
            space_reclaimed: Some(report.space_reclaimed as i64),
        })
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

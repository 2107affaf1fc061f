//! Named volumes of the "local" driver: a directory `volumes/<name>/_data`
//! plus `meta.json`, created atomically (built under a `.tmp-` name, renamed).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use silo_units::now_rfc3339;

use crate::fsutil::{self, random_hex, sync_dir, tree_size, write_atomic};
use crate::{NotFound, PruneError, PruneReport, Removed, Store};

/// A volume as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    /// The `_data` directory that gets bind-mounted into containers.
    pub mountpoint: PathBuf,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    /// Always "local".
    pub driver: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct VolumeMeta {
    name: String,
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    driver: String,
}

/// A volume operation failed.
#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("invalid volume name {name:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]+")]
    BadName { name: String },
    #[error(transparent)]
    NotFound(#[from] NotFound),
    #[error("volume {name} is in use")]
    InUse { name: String },
    #[error("volume {name}: {op} {path}: {source}")]
    Io {
        name: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Store {
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    fn read_volume(&self, name: &str) -> Option<Volume> {
        if !valid_name(name) {
            return None;
        }
        let dir = self.volume_dir(name);
        let bytes = fs::read(dir.join("meta.json")).ok()?;
        let m: VolumeMeta = serde_json::from_slice(&bytes).ok()?;
        Some(Volume {
            name: name.to_string(),
            mountpoint: dir.join("_data"),
            created_at: m.created_at,
            labels: m.labels,
            driver: m.driver,
        })
    }

    /// Creates a local volume (a random 64-hex name when `name` is None). An
    /// existing volume of that name is returned unchanged, as Docker does.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => random_hex(32),
        };
        if !valid_name(&name) {
            return Err(VolumeError::BadName { name });
        }
        let _st = self.lock();
        if let Some(v) = self.read_volume(&name) {
            return Ok(v);
        }
        let dir = self.volume_dir(&name);
        let tmp = fsutil::tmp_sibling(&dir);
        let io_err = |op: &'static str, path: &PathBuf| {
            let (name, path) = (name.clone(), path.clone());
            move |source| VolumeError::Io {
                name,
                op,
                path,
                source,
            }
        };
        let meta = VolumeMeta {
            name: name.clone(),
            created_at: now_rfc3339(),
            labels,
            driver: "local".to_string(),
        };
        let build = (|| {
            fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
            let data = tmp.join("_data");
            fs::create_dir(&data).map_err(io_err("creating", &data))?;
            let bytes = serde_json::to_vec_pretty(&meta)
                .map_err(|e| io_err("encoding", &tmp)(io::Error::other(e)))?;
            let mp = tmp.join("meta.json");
            write_atomic(&mp, &bytes).map_err(io_err("writing", &mp))?;
            // A leftover directory without meta.json is not a volume: replace it.
            if dir.exists() {
                crate::remove_tree(&dir).map_err(io_err("replacing", &dir))?;
            }
            fs::rename(&tmp, &dir).map_err(io_err("renaming into place", &dir))?;
            let parent = self.root.join("volumes");
            sync_dir(&parent).map_err(io_err("syncing", &parent))
        })();
        if let Err(e) = build {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(Volume {
            name,
            mountpoint: dir.join("_data"),
            created_at: meta.created_at,
            labels: meta.labels,
            driver: meta.driver,
        })
    }

    /// All volumes, sorted by name.
    pub fn volumes(&self) -> Vec<Volume> {
        let Ok(rd) = fs::read_dir(self.root.join("volumes")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.read_volume(n)).collect()
    }

    /// One volume by name.
    pub fn volume(&self, name: &str) -> Result<Volume, NotFound> {
        self.read_volume(name).ok_or_else(|| NotFound::Volume {
            name: name.to_string(),
        })
    }

    /// Deletes a volume and its data. A volume in use is refused even with
    /// `force`; `force` only turns "no such volume" into success (Docker).
    pub fn remove_volume(&self, name: &str, in_use: bool, force: bool) -> Result<(), VolumeError> {
        let _st = self.lock();
        if self.read_volume(name).is_none() {
            if force {
                return Ok(());
            }
            return Err(NotFound::Volume {
                name: name.to_string(),
            }
            .into());
        }
        if in_use {
            return Err(VolumeError::InUse {
                name: name.to_string(),
            });
        }
        self.delete_volume(name)
    }

    fn delete_volume(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.volume_dir(name);
        // Something still mounted on or below the volume: deleting would reach into it.
        let mounted =
            crate::fsutil::is_mounted(&self.mountinfo, &dir.join("_data")).unwrap_or(true);
        if mounted {
            return Err(VolumeError::InUse {
                name: name.to_string(),
            });
        }
        crate::remove_tree(&dir).map_err(|source| VolumeError::Io {
            name: name.to_string(),
            op: "deleting",
            path: dir,
            source,
        })
    }

    /// `docker volume prune`: deletes every volume `in_use` says is unused.
    pub fn prune_volumes(&self, in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport, PruneError> {
        let mut report = PruneReport::default();
        for v in self.volumes() {
            if in_use(&v.name) {
                continue;
            }
            let _st = self.lock();
            let size = tree_size(&v.mountpoint);
            match self.delete_volume(&v.name) {
                Ok(()) => {
                    report.space_reclaimed += size;
                    report.deleted.push(Removed::Deleted(v.name));
                }
                Err(VolumeError::InUse { .. }) => {}
                Err(VolumeError::Io {
                    op, path, source, ..
                }) => return Err(PruneError::Io { op, path, source }),
                Err(e) => {
                    return Err(PruneError::Io {
                        op: "deleting",
                        path: self.volume_dir(&v.name),
                        source: io::Error::other(e.to_string()),
                    })
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        assert!(valid_name("data"));
        assert!(valid_name("a1_b.c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name("a b"));
    }
}

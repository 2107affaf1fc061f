//! Volumes (the "local" driver): the engine's operations over
//! silo-storage's volumes, with the containers that use them.

use crate::error::{Error, Kind, Result};
use crate::events::{Action, Scope};
use crate::Engine;
use std::collections::{BTreeMap, HashMap};

/// How much a volume holds and how many containers mount it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeUsage {
    pub size: u64,
    pub ref_count: usize,
}

impl Engine {
    fn volume_error(name: &str, e: silo_storage::VolumeError) -> Error {
        use silo_storage::VolumeError as V;
        match e {
            V::BadName { .. } => Error::invalid("name", e.to_string()),
            V::InUse { .. } => Error::conflict(e.to_string()),
            V::NotFound(_) => Error::not_found(Kind::Volume, name),
            other => Error::internal(format!("volume {name}"), other),
        }
    }

    /// Creates a volume (a name that exists gives it back); returns it and
    /// whether it is new.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<(silo_storage::Volume, bool)> {
        let existed = name.is_some_and(|n| self.storage.volume(n).is_ok());
        let v = self
            .storage
            .create_volume(name, labels)
            .map_err(|e| Self::volume_error(name.unwrap_or("<anonymous>"), e))?;
        if !existed {
            self.emit_with(
                Scope::Volume,
                Action::Create,
                &v.name,
                [("driver".to_string(), v.driver.clone())].into(),
            );
        }
        Ok((v, !existed))
    }

    pub fn volumes(&self) -> Vec<silo_storage::Volume> {
        self.storage.volumes()
    }

    pub fn volume(&self, name: &str) -> Result<silo_storage::Volume> {
        self.storage
            .volume(name)
            .map_err(|_| Error::not_found(Kind::Volume, name))
    }

    /// Removes a volume; one in use is refused, a missing one is fine with `force`.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        if self.storage.volume(name).is_err() {
            if force {
                return Ok(());
            }
            return Err(Error::not_found(Kind::Volume, name));
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.storage
            .remove_volume(name, false, force)
            .map_err(|e| Self::volume_error(name, e))?;
        self.emit_with(Scope::Volume, Action::Destroy, name, Default::default());
        Ok(())
    }

    /// Removes the unused volumes `keep` does not keep; returns their names
    /// and the bytes freed.
    pub fn prune_volumes(
        &self,
        keep: &dyn Fn(&silo_storage::Volume) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let known: HashMap<String, silo_storage::Volume> = self
            .storage
            .volumes()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        let skip = |name: &str| -> bool {
            !self.volume_users(name).is_empty() || known.get(name).is_none_or(keep)
        };
        let report = self
            .storage
            .prune_volumes(&skip)
            .map_err(|e| Error::internal("pruning volumes", e))?;
        let names: Vec<String> = report
            .deleted
            .iter()
            .map(|r| match r {
                silo_storage::Removed::Deleted(n) | silo_storage::Removed::Untagged(n) => n.clone(),
            })
            .collect();
        for n in &names {
            self.emit_with(Scope::Volume, Action::Destroy, n, Default::default());
        }
        Ok((names, report.space_reclaimed))
    }

    /// Size and users of every volume.
    pub fn volume_usage(&self) -> HashMap<String, VolumeUsage> {
        let du = self.storage.disk_usage();
        self.storage
            .volumes()
            .into_iter()
            .map(|v| {
                let size = du
                    .volumes
                    .iter()
                    .find(|(n, _)| *n == v.name)
                    .map_or(0, |(_, s)| *s);
                let ref_count = self.volume_users(&v.name).len();
                (v.name, VolumeUsage { size, ref_count })
            })
            .collect()
    }
}

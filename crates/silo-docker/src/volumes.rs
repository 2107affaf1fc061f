//! Volumes in Docker's shapes: create (the local driver only), list with
//! Docker's filters, inspect, remove and prune (anonymous volumes only
//! unless `all`).

use crate::inspect::label_matches;
use crate::inspect::Filters;
use crate::{invalid, Docker, Result};
use bollard_stubs::models::{
    Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum,
    VolumeUsageData,
};
use std::collections::HashMap;

fn to_wire(v: silo_storage::Volume) -> Volume {
    Volume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.to_string_lossy().into_owned(),
        created_at: Some(v.created_at),
        status: None,
        labels: v.labels.into_iter().collect(),
        scope: Some(VolumeScopeEnum::LOCAL),
        cluster_volume: None,
        options: HashMap::new(),
        usage_data: None,
    }
}

impl Docker {
    pub fn volume_create(&self, req: VolumeCreateRequest) -> Result<Volume> {
        if let Some(d) = req.driver.as_deref() {
            if !d.is_empty() && d != "local" {
                return Err(crate::Error::NotFound(format!(
                    "error looking up volume plugin {d}: plugin {d:?} not found"
                )));
            }
        }
        if req.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(invalid(
                "DriverOpts",
                "DriverOpts: volume options are not supported by silo's local driver yet",
            ));
        }
        let name = req.name.clone().filter(|n| !n.is_empty());
        let labels = req.labels.unwrap_or_default().into_iter().collect();
        let (v, _) = self.engine.volume_create(name.as_deref(), labels)?;
        Ok(to_wire(v))
    }

    pub fn volumes(&self, filters: &Filters) -> Result<VolumeListResponse> {
        let mut out = Vec::new();
        for v in self.engine.volumes() {
            let mut ok = true;
            for (key, values) in filters {
                if values.is_empty() {
                    continue;
                }
                ok &= match key.as_str() {
                    "name" => values.iter().any(|x| v.name.contains(x.as_str())),
                    "driver" => values.contains(&v.driver),
                    "dangling" => values.iter().any(|x| {
                        let want = x == "true" || x == "1";
                        self.engine.volume_users(&v.name).is_empty() == want
                    }),
                    "label" => values
                        .iter()
                        .all(|x| label_matches(|k| v.labels.get(k).cloned(), x)),
                    other => return Err(invalid("filters", format!("invalid filter '{other}'"))),
                };
            }
            if ok {
                out.push(to_wire(v));
            }
        }
        Ok(VolumeListResponse {
            volumes: Some(out),
            warnings: Some(vec![]),
        })
    }

    pub fn volume_inspect(&self, name: &str) -> Result<Volume> {
        Ok(to_wire(self.engine.volume(name)?))
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        Ok(self.engine.volume_remove(name, force)?)
    }

    /// Docker prunes only anonymous volumes unless `all=true`; `label`
    /// filters narrow it.
    pub fn prune_volumes(&self, filters: &Filters) -> Result<VolumePruneResponse> {
        let all = filters
            .get("all")
            .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
        let labels: Vec<String> = filters.get("label").cloned().unwrap_or_default();
        let keep = |v: &silo_storage::Volume| -> bool {
            let anonymous = v.name.len() == 64 && silo_sys::id::is_hex(&v.name);
            (!all && !anonymous)
                || !labels
                    .iter()
                    .all(|l| label_matches(|k| v.labels.get(k).cloned(), l))
        };
        let (names, reclaimed) = self.engine.prune_volumes(&keep)?;
        Ok(VolumePruneResponse {
            volumes_deleted: Some(names),
            space_reclaimed: Some(reclaimed as i64),
        })
    }

    /// A volume as `system df` shows it, with its usage.
    pub(crate) fn volume_with_usage(
        &self,
        v: silo_storage::Volume,
        usage: silo_engine::VolumeUsage,
    ) -> Volume {
        let mut w = to_wire(v);
        w.usage_data = Some(VolumeUsageData {
            size: usage.size as i64,
            ref_count: usage.ref_count as i64,
        });
        w
    }
}

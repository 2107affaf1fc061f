//! Volume operations ("local" driver): wrappers over silo-storage that
//! speak Docker's wire types, with usage counts from the engine's containers.

use crate::*;

impl Engine {
    fn to_wire(&self, v: silo_storage::Volume) -> Volume {
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

    fn volume_error(e: silo_storage::VolumeError) -> EngineError {
        let msg = e.to_string();
        if msg.contains("invalid volume name") {
            EngineError::BadParameter(msg)
        } else if msg.contains("in use") {
            EngineError::Conflict(msg)
        } else if msg.contains("no such volume") {
            EngineError::NotFound(msg)
        } else {
            EngineError::Internal(msg)
        }
    }

    pub fn volume_create(&self, req: VolumeCreateRequest) -> Result<Volume> {
        if let Some(d) = req.driver.as_deref() {
            if !d.is_empty() && d != "local" {
                return Err(EngineError::NotFound(format!(
                    "error looking up volume plugin {d}: plugin {d:?} not found"
                )));
            }
        }
        if req.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(EngineError::BadParameter(
                "DriverOpts: volume options are not supported by silo's local driver yet".into(),
            ));
        }
        let name = req.name.clone().filter(|n| !n.is_empty());
        let existed = name
            .as_deref()
            .is_some_and(|n| self.storage.volume(n).is_ok());
        let labels = req.labels.unwrap_or_default().into_iter().collect();
        let v = self
            .storage
            .create_volume(name.as_deref(), labels)
            .map_err(Self::volume_error)?;
        if !existed {
            self.emit(
                "volume",
                "create",
                &v.name,
                HashMap::from([("driver".to_string(), "local".to_string())]),
            );
        }
        Ok(self.to_wire(v))
    }

    pub fn volumes(&self, filters: &Filters) -> Result<VolumeListResponse> {
        let mut out = Vec::new();
        for v in self.storage.volumes() {
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
                        self.volume_in_use(&v.name) != want
                    }),
                    "label" => values.iter().any(|x| match x.split_once('=') {
                        Some((k, val)) => v.labels.get(k).is_some_and(|y| y == val),
                        None => v.labels.contains_key(x.as_str()),
                    }),
                    other => {
                        return Err(EngineError::BadParameter(format!(
                            "invalid filter '{other}'"
                        )))
                    }
                };
            }
            if ok {
                out.push(self.to_wire(v));
            }
        }
        Ok(VolumeListResponse {
            volumes: Some(out),
            warnings: Some(vec![]),
        })
    }

    pub fn volume_inspect(&self, name: &str) -> Result<Volume> {
        let v = self
            .storage
            .volume(name)
            .map_err(|_| EngineError::NotFound(format!("get {name}: no such volume")))?;
        Ok(self.to_wire(v))
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        if self.storage.volume(name).is_err() {
            if force {
                return Ok(());
            }
            return Err(EngineError::NotFound(format!("get {name}: no such volume")));
        }
        let users: Vec<String> = self
            .lock()
            .values()
            .filter(|c| {
                c.mounts
                    .iter()
                    .any(|m| m.typ.as_deref() == Some("volume") && m.name.as_deref() == Some(name))
            })
            .map(|c| c.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.storage
            .remove_volume(name, false, force)
            .map_err(Self::volume_error)?;
        self.emit("volume", "destroy", name, HashMap::new());
        Ok(())
    }

    pub fn prune_volumes(&self, filters: &Filters) -> Result<VolumePruneResponse> {
        // Docker prunes only anonymous volumes unless all=true.
        let all = filters
            .get("all")
            .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
        let labels: Vec<String> = filters.get("label").cloned().unwrap_or_default();
        let known: HashMap<String, silo_storage::Volume> = self
            .storage
            .volumes()
            .into_iter()
            .map(|v| (v.name.clone(), v))
            .collect();
        let keep = |name: &str| -> bool {
            if self.volume_in_use(name) {
                return true;
            }
            let Some(v) = known.get(name) else {
                return true;
            };
            let anonymous = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
            if !all && !anonymous {
                return true;
            }
            !labels.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|y| y == val),
                None => v.labels.contains_key(l.as_str()),
            })
        };
        let report = self
            .storage
            .prune_volumes(&keep)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let names: Vec<String> = report
            .deleted
            .iter()
            .map(|r| match r {
                silo_storage::Removed::Deleted(n) | silo_storage::Removed::Untagged(n) => n.clone(),
            })
            .collect();
        for n in &names {
            self.emit("volume", "destroy", n, HashMap::new());
        }
        Ok(VolumePruneResponse {
            volumes_deleted: Some(names),
            space_reclaimed: Some(report.space_reclaimed as i64),
        })
    }
}

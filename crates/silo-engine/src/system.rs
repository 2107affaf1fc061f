//! System operations: `version`, `info` and `system df`.

use crate::*;

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64".into(),
        other => other.into(),
    }
}

/// Docker reports Go's architecture names in /version.
fn go_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

impl Engine {
    pub fn version(&self) -> SystemVersion {
        let v = env!("CARGO_PKG_VERSION").to_string();
        SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: "silo".into(),
            }),
            components: Some(vec![SystemVersionComponents {
                name: "silo-engine".into(),
                version: v.clone(),
                details: Some(HashMap::from([(
                    "ApiVersion".to_string(),
                    "1.45".to_string(),
                )])),
            }]),
            version: Some(v),
            api_version: Some("1.45".into()),
            min_api_version: Some("1.24".into()),
            git_commit: Some(option_env!("SILO_GIT_COMMIT").unwrap_or("unknown").into()),
            go_version: Some("n/a".into()),
            os: Some("linux".into()),
            arch: Some(go_arch()),
            kernel_version: Some(read_trim("/proc/sys/kernel/osrelease")),
            experimental: Some(false),
            build_time: None,
        }
    }

    pub fn info(&self) -> Result<SystemInfo> {
        let (total, running, paused) = {
            let map = self.lock();
            let visible = map.values().filter(|c| c.state.status != "creating");
            let mut t = 0;
            let mut r = 0;
            let mut p = 0;
            for c in visible {
                t += 1;
                if c.state.paused {
                    p += 1;
                } else if c.state.running {
                    r += 1;
                }
            }
            (t, r, p)
        };
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        let mut warnings = Vec::new();
        if !self.cgroupns {
            warnings.push(
                "WARNING: cgroup v1 host: containers do not get a cgroup namespace".to_string(),
            );
        }
        warnings.push(
            "WARNING: no network drivers yet: containers get loopback-only network namespaces"
                .to_string(),
        );
        Ok(SystemInfo {
            id: Some(read_trim("/etc/machine-id")),
            containers: Some(total),
            containers_running: Some(running),
            containers_paused: Some(paused),
            containers_stopped: Some(total - running - paused),
            images: Some(self.storage.images().len() as i64),
            driver: Some("silo-overlay".into()),
            driver_status: Some(vec![vec!["Backing Filesystem".into(), "overlayfs".into()]]),
            docker_root_dir: Some(self.config.data_root.to_string_lossy().into_owned()),
            logging_driver: Some("json-file".into()),
            cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
            cgroup_version: Some(if self.cgroupns {
                SystemInfoCgroupVersionEnum::_2
            } else {
                SystemInfoCgroupVersionEnum::_1
            }),
            kernel_version: Some(read_trim("/proc/sys/kernel/osrelease")),
            operating_system: Some(os_name()),
            os_type: Some("linux".into()),
            architecture: Some(arch()),
            ncpu: Some(ncpu),
            mem_total: Some(mem_total()),
            name: Some(read_trim("/proc/sys/kernel/hostname")),
            server_version: Some(env!("CARGO_PKG_VERSION").into()),
            runtimes: Some(HashMap::from([(
                "silo".to_string(),
                Runtime {
                    path: Some(self.config.runtime_binary.to_string_lossy().into_owned()),
                    ..Default::default()
                },
            )])),
            default_runtime: Some("silo".into()),
            security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
            warnings: Some(warnings),
            ..Default::default()
        })
    }

    /// `docker system df`. The items carry the legacy shapes (ImageSummary,
    /// ContainerSummary, Volume with UsageData) as JSON values, which is
    /// what API versions before 1.52 return at the top level.
    pub fn system_df(&self) -> Result<SystemDataUsageResponse> {
        let du = self.storage.disk_usage();
        let containers = self.list(true, None, true, &Filters::new())?;
        let images = self.images(true, &Filters::new())?;
        let mut image_items = Vec::new();
        let mut image_total = 0i64;
        let mut image_reclaim = 0i64;
        let mut active_images = 0;
        for img in &images {
            let shared = du
                .images
                .iter()
                .find(|u| u.id == img.id)
                .map(|u| u.shared_size as i64)
                .unwrap_or(0);
            image_total += img.size;
            if img.containers > 0 {
                active_images += 1;
            } else {
                image_reclaim += img.size;
            }
            let mut v = serde_json::to_value(img).unwrap_or_default();
            v["SharedSize"] = shared.into();
            image_items.push(v);
        }
        let mut c_total = 0i64;
        let mut c_reclaim = 0i64;
        let mut c_active = 0;
        let mut c_items = Vec::new();
        for c in &containers {
            let sz = c.size_rw.unwrap_or(0);
            c_total += sz;
            if c.state == Some(ContainerSummaryStateEnum::RUNNING)
                || c.state == Some(ContainerSummaryStateEnum::PAUSED)
            {
                c_active += 1;
            } else {
                c_reclaim += sz;
            }
            c_items.push(serde_json::to_value(c).unwrap_or_default());
        }
        let mut v_total = 0i64;
        let mut v_reclaim = 0i64;
        let mut v_active = 0;
        let mut v_items = Vec::new();
        for v in self.storage.volumes() {
            let size = du
                .volumes
                .iter()
                .find(|(n, _)| *n == v.name)
                .map(|(_, s)| *s as i64)
                .unwrap_or(0);
            let refs = self
                .lock()
                .values()
                .filter(|c| {
                    c.mounts
                        .iter()
                        .any(|m| m.name.as_deref() == Some(v.name.as_str()))
                })
                .count() as i64;
            v_total += size;
            if refs > 0 {
                v_active += 1;
            } else {
                v_reclaim += size;
            }
            let mut w = self.volume_inspect(&v.name)?;
            w.usage_data = Some(VolumeUsageData {
                size,
                ref_count: refs,
            });
            v_items.push(serde_json::to_value(w).unwrap_or_default());
        }
        Ok(SystemDataUsageResponse {
            image_usage: Some(ImagesDiskUsage {
                active_count: Some(active_images),
                total_count: Some(images.len() as i64),
                reclaimable: Some(image_reclaim),
                total_size: Some(image_total.max(du.layers_size as i64)),
                items: Some(image_items),
            }),
            container_usage: Some(ContainersDiskUsage {
                active_count: Some(c_active),
                total_count: Some(containers.len() as i64),
                reclaimable: Some(c_reclaim),
                total_size: Some(c_total),
                items: Some(c_items),
            }),
            volume_usage: Some(VolumesDiskUsage {
                active_count: Some(v_active),
                total_count: Some(v_items.len() as i64),
                reclaimable: Some(v_reclaim),
                total_size: Some(v_total),
                items: Some(v_items),
            }),
            build_cache_usage: None,
        })
    }
}

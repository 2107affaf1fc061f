//! System endpoints in Docker's shapes: version, info and `system df`.

use crate::inspect::{now_secs, Filters};
use crate::{Docker, Result};
use bollard_stubs::models::*;
use std::collections::HashMap;

/// The API version silod speaks (the CLI negotiates down to it).
pub const API_VERSION: &str = "1.45";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

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
        .map_or(0, |kb| kb * 1024)
}

/// Go's architecture names, as Docker reports them in /version.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Docker {
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
                    API_VERSION.to_string(),
                )])),
            }]),
            version: Some(v),
            api_version: Some(API_VERSION.into()),
            min_api_version: Some(MIN_API_VERSION.into()),
            git_commit: Some(option_env!("SILO_GIT_COMMIT").unwrap_or("unknown").into()),
            go_version: Some("n/a".into()),
            os: Some("linux".into()),
            arch: Some(go_arch().into()),
            kernel_version: Some(read_trim("/proc/sys/kernel/osrelease")),
            experimental: Some(false),
            build_time: None,
        }
    }

    pub fn info(&self) -> Result<SystemInfo> {
        let i = self.engine.info();
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
        let mut warnings = Vec::new();
        if !i.cgroup_v2 {
            warnings.push(
                "WARNING: cgroup v1 host: containers do not get a cgroup namespace".to_string(),
            );
        }
        warnings.push(
            "WARNING: no network drivers yet: containers get loopback-only network namespaces"
                .to_string(),
        );
        let (total, running, paused) = (i.containers as i64, i.running as i64, i.paused as i64);
        Ok(SystemInfo {
            id: Some(read_trim("/etc/machine-id")),
            containers: Some(total),
            containers_running: Some(running),
            containers_paused: Some(paused),
            containers_stopped: Some(total - running - paused),
            images: Some(i.images as i64),
            driver: Some("silo-overlay".into()),
            driver_status: Some(vec![vec!["Backing Filesystem".into(), "overlayfs".into()]]),
            docker_root_dir: Some(i.data_root.to_string_lossy().into_owned()),
            logging_driver: Some("json-file".into()),
            cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
            cgroup_version: Some(if i.cgroup_v2 {
                SystemInfoCgroupVersionEnum::_2
            } else {
                SystemInfoCgroupVersionEnum::_1
            }),
            kernel_version: Some(read_trim("/proc/sys/kernel/osrelease")),
            operating_system: Some(os_name()),
            os_type: Some("linux".into()),
            architecture: Some(std::env::consts::ARCH.into()),
            ncpu: Some(ncpu),
            mem_total: Some(mem_total()),
            name: Some(read_trim("/proc/sys/kernel/hostname")),
            server_version: Some(env!("CARGO_PKG_VERSION").into()),
            runtimes: Some(HashMap::from([(
                "silo".to_string(),
                Runtime {
                    path: Some(i.runtime_binary.to_string_lossy().into_owned()),
                    ..Default::default()
                },
            )])),
            default_runtime: Some("silo".into()),
            security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
            warnings: Some(warnings),
            // What dockerd reports beside, in silo's terms.
            plugins: Some(PluginsInfo {
                volume: Some(vec!["local".into()]),
                network: Some(vec!["host".into(), "none".into()]),
                authorization: None,
                log: Some(vec!["json-file".into()]),
            }),
            memory_limit: Some(true),
            swap_limit: Some(true),
            cpu_cfs_period: Some(true),
            cpu_cfs_quota: Some(true),
            cpu_shares: Some(true),
            cpu_set: Some(true),
            pids_limit: Some(true),
            oom_kill_disable: Some(!i.cgroup_v2),
            ipv4_forwarding: Some(read_trim("/proc/sys/net/ipv4/ip_forward") == "1"),
            debug: Some(false),
            nfd: Some(count_entries("/proc/self/fd")),
            // silod has no goroutines; its threads are the nearest thing.
            n_goroutines: Some(count_entries("/proc/self/task")),
            system_time: Some(silo_units::now_rfc3339()),
            n_events_listener: Some(0),
            os_version: Some(os_field("VERSION_ID")),
            index_server_address: Some("https://index.docker.io/v1/".into()),
            http_proxy: Some(String::new()),
            https_proxy: Some(String::new()),
            no_proxy: Some(String::new()),
            labels: Some(vec![]),
            experimental_build: Some(false),
            swarm: Some(SwarmInfo {
                node_id: Some(String::new()),
                node_addr: Some(String::new()),
                local_node_state: Some(LocalNodeState::INACTIVE),
                control_available: Some(false),
                error: Some(String::new()),
                remote_managers: None,
                ..Default::default()
            }),
            // Containers keep running while silod restarts.
            live_restore_enabled: Some(true),
            init_binary: Some("docker-init".into()),
            product_license: Some(String::new()),
            ..Default::default()
        })
    }

    /// `docker system df`. The items carry the legacy shapes (ImageSummary,
    /// ContainerSummary, Volume with UsageData) as JSON values, which is
    /// what API versions before 1.52 return at the top level.
    pub fn system_df(&self) -> Result<SystemDataUsageResponse> {
        let du = self.engine.storage().disk_usage();
        let now = now_secs();
        let containers: Vec<ContainerSummary> = self
            .engine
            .containers()
            .iter()
            .map(|c| self.summary(c, true, now))
            .collect();
        let images = self.images(true, &Filters::new())?;
        let mut image_items = Vec::new();
        let (mut image_total, mut image_reclaim, mut active_images) = (0i64, 0i64, 0);
        for img in &images {
            let shared = du
                .images
                .iter()
                .find(|u| u.id == img.id)
                .map_or(0, |u| u.shared_size as i64);
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
        let (mut c_total, mut c_reclaim, mut c_active) = (0i64, 0i64, 0);
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
        let usage = self.engine.volume_usage();
        let (mut v_total, mut v_reclaim, mut v_active) = (0i64, 0i64, 0);
        let mut v_items = Vec::new();
        for v in self.engine.volumes() {
            let u = usage.get(&v.name).copied().unwrap_or_default();
            v_total += u.size as i64;
            if u.ref_count > 0 {
                v_active += 1;
            } else {
                v_reclaim += u.size as i64;
            }
            v_items.push(serde_json::to_value(self.volume_with_usage(v, u)).unwrap_or_default());
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

    /// silo's HCS views.
    pub fn hcs_list(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self.engine.hcs_list()?)
    }

    pub fn hcs_inspect(&self, id: &str) -> Result<serde_json::Value> {
        Ok(self.engine.hcs_inspect(id)?)
    }

    /// `/hns/networks`, `/hns/endpoints` and `/hns/policies`: silo's own view.
    pub fn hns_list(&self, what: &str) -> Result<Vec<serde_json::Value>> {
        match what {
            "networks" => Ok(self.engine.hns_networks()?),
            "endpoints" => Ok(self.engine.hns_endpoints()?),
            // PortMapping, ACL, QOS, OutBoundNAT and Route.
            "policies" => Ok(self.engine.hns_policies()?),
            other => Err(crate::Error::NotFound(format!("/hns/{other}"))),
        }
    }

    /// `/hns/networks/{id}` and `/hns/endpoints/{id}`.
    pub fn hns_inspect(&self, what: &str, id: &str) -> Result<serde_json::Value> {
        match what {
            "networks" => Ok(self.engine.hns_network(id)?),
            "endpoints" => Ok(self.engine.hns_endpoint(id)?),
            other => Err(crate::Error::NotFound(format!("/hns/{other}/{id}"))),
        }
    }
}

/// How many entries a directory has (0 when it cannot be read).
fn count_entries(dir: &str) -> i64 {
    std::fs::read_dir(dir).map_or(0, |rd| rd.count() as i64)
}

/// A field of /etc/os-release, unquoted ("" when missing).
fn os_field(key: &str) -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

impl Docker {
    /// `silo sandbox attach`.
    pub fn sandbox_attach(&self, id: &str, path: &str) -> Result<()> {
        Ok(self.engine.attach_sandbox(id, std::path::Path::new(path))?)
    }

    /// `silo sandbox detach`.
    pub fn sandbox_detach(&self, path: &str) -> Result<()> {
        self.engine.detach_sandbox(std::path::Path::new(path))?;
        Ok(())
    }

    fn disk_format(format: &str) -> Result<silo_engine::sandbox::DiskFormat> {
        silo_engine::sandbox::DiskFormat::parse(format).ok_or_else(|| {
            crate::invalid(
                "format",
                format!("format {format:?}: want raw, vhdx or qcow2"),
            )
        })
    }

    /// Checks an export request before the stream starts.
    pub fn sandbox_check(&self, id: &str, format: &str) -> Result<()> {
        Self::disk_format(format)?;
        self.engine.container(id)?;
        Ok(())
    }

    /// `silo sandbox export`: writes the disk image.
    pub fn sandbox_export(
        &self,
        id: &str,
        format: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        Ok(self
            .engine
            .export_sandbox(id, Self::disk_format(format)?, out)?)
    }
}

impl Docker {
    /// `POST /hns/endpoints/{id}/policies`, `POST /hns/networks/{id}/
    /// remote-endpoints` and `…/remote-subnets`: adds the object in the
    /// body (HNS JSON) and returns it with its id.
    pub fn hns_add(
        &self,
        what: &str,
        id: &str,
        sub: &str,
        body: &[u8],
    ) -> Result<serde_json::Value> {
        match (what, sub) {
            ("endpoints", "policies") => Ok(self.engine.hns_add_policy(id, body)?),
            ("networks", "remote-endpoints") => Ok(self.engine.hns_add_remote(id, body)?),
            ("networks", "remote-subnets") => Ok(self.engine.hns_add_remote_subnet(id, body)?),
            _ => Err(crate::Error::NotFound(format!("/hns/{what}/{id}/{sub}"))),
        }
    }

    /// `DELETE` of one object added by [`Docker::hns_add`].
    pub fn hns_remove(&self, what: &str, id: &str, sub: &str, item: &str) -> Result<()> {
        match (what, sub) {
            ("endpoints", "policies") => Ok(self.engine.hns_remove_policy(id, item)?),
            ("networks", "remote-endpoints") => Ok(self.engine.hns_remove_remote(id, item)?),
            ("networks", "remote-subnets") => Ok(self.engine.hns_remove_remote_subnet(id, item)?),
            _ => Err(crate::Error::NotFound(format!(
                "/hns/{what}/{id}/{sub}/{item}"
            ))),
        }
    }
}

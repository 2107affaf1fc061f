//! The host facts every operation needs, injected so tests can point them
//! at fixtures: the state root, `/proc`, and the cgroup hierarchies.

use silo_job::CgroupFs;
use std::path::{Path, PathBuf};

/// Where state lives and how to reach the kernel.
#[derive(Debug, Clone)]
pub struct Host {
    /// The runtime's state root (runc's `--root`).
    pub root: PathBuf,
    /// The host's `/proc`.
    pub proc_root: PathBuf,
    pub cgroups: CgroupFs,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

/// Why the host could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot create state root {path}: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroups: {0}")]
    Cgroups(#[from] silo_job::DetectError),
    #[error("--systemd-cgroup: systemd is not running as PID 1 on this host (no /run/systemd/system); drop the flag to use the cgroupfs driver")]
    NoSystemd,
}

impl Host {
    /// The real host, with state under `root`.
    pub fn detect(root: &Path, systemd_cgroup: bool) -> Result<Host, HostError> {
        if systemd_cgroup && !Path::new("/run/systemd/system").is_dir() {
            return Err(HostError::NoSystemd);
        }
        let cgroups = CgroupFs::detect()?;
        Ok(Host {
            root: root.to_path_buf(),
            proc_root: PathBuf::from("/proc"),
            cgroups,
            systemd_cgroup,
        })
    }

    /// Creates the state root (mode 0700) if it is missing.
    pub fn ensure_root(&self) -> Result<(), HostError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| HostError::Root {
                path: self.root.clone(),
                source,
            })
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.join(".seccomp-cache")
    }

    /// The cgroup path for a container: the spec's `cgroupsPath`, or
    /// `/silo/<id>` when it has none. With `--systemd-cgroup`, the
    /// `slice:prefix:name` form maps to `/<slice>/<prefix>-<name>.scope`.
    pub fn cgroup_path(&self, id: &str, spec_path: Option<&str>) -> String {
        match spec_path {
            Some(p) if self.systemd_cgroup && p.split(':').count() == 3 => {
                let mut parts = p.split(':');
                let slice = parts.next().unwrap_or("system.slice");
                let prefix = parts.next().unwrap_or("silo");
                let name = parts.next().unwrap_or(id);
                let slice = if slice.is_empty() {
                    "system.slice"
                } else {
                    slice
                };
                format!("/{slice}/{prefix}-{name}.scope")
            }
            Some(p) if !p.is_empty() => {
                if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("/{p}")
                }
            }
            _ => format!("/silo/{id}"),
        }
    }
}

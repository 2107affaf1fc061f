//! Daemon settings: command-line flags, the optional JSON config file, and
//! the defaults, merged with flags taking precedence over the file.

use std::path::{Path, PathBuf};

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("host {host:?}: only unix:// sockets are supported")]
    Host { host: String },
    #[error("exec root {path}: {len} bytes is too long; per-container sockets live at <exec-root>/s/<64-hex id>/control.sock and unix socket paths are limited to 107 bytes, so use at most {MAX_EXEC_ROOT} bytes")]
    ExecRootTooLong { path: PathBuf, len: usize },
    #[error("finding the silod binary's directory: {0}")]
    CurrentExe(std::io::Error),
    #[error("CRI stream address {address:?}: want IP:PORT, such as 127.0.0.1:0")]
    StreamAddress { address: String },
    #[error("registry mirror {mirror:?}: want an http:// or https:// URL with a host and no path")]
    Mirror { mirror: String },
    #[error("storage option {option:?}: {reason}")]
    StorageOpt { option: String, reason: String },
}

/// The config file (`--config`), dockerd-style key names.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(rename = "data-root")]
    pub data_root: Option<PathBuf>,
    #[serde(rename = "exec-root")]
    pub exec_root: Option<PathBuf>,
    pub monitor: Option<PathBuf>,
    pub runtime: Option<PathBuf>,
    /// The init for `--init` (dockerd's `init-path`).
    #[serde(rename = "init-path")]
    pub init_path: Option<PathBuf>,
    #[serde(rename = "log-level")]
    pub log_level: Option<String>,
    /// Registries reached over HTTP or unchecked HTTPS ("host:port" or CIDR).
    #[serde(rename = "insecure-registries", default)]
    pub insecure_registries: Vec<String>,
    /// Docker Hub mirrors, tried in order before Docker Hub for pulls.
    #[serde(rename = "registry-mirrors", default)]
    pub registry_mirrors: Vec<String>,
    /// Give every container a sandbox disk (20 GiB unless storage-opts says).
    #[serde(rename = "sandbox-disks", default)]
    pub sandbox_disks: bool,
    /// Default storage options for containers: `size=SIZE`.
    #[serde(rename = "storage-opts", default)]
    pub storage_opts: Vec<String>,
    /// Mirrors of any registry, by its host ("registry.k8s.io"), tried in
    /// order before it (containerd's registry.mirrors).
    #[serde(rename = "registry-host-mirrors", default)]
    pub registry_host_mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Serve the Kubernetes CRI (default true).
    pub cri: Option<bool>,
    /// The CRI socket (default `<exec-root>/cri.sock`).
    #[serde(rename = "cri-socket")]
    pub cri_socket: Option<PathBuf>,
    /// The pause image for CRI pods that share a PID namespace.
    #[serde(rename = "cri-pause-image")]
    pub cri_pause_image: Option<String>,
    /// Where the CRI's streaming server listens (default 127.0.0.1:0).
    #[serde(rename = "cri-stream-address")]
    pub cri_stream_address: Option<String>,
    /// CNI network configs for CRI pods (default /etc/cni/net.d).
    #[serde(rename = "cni-conf-dir")]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directories (default /opt/cni/bin, /usr/lib/cni).
    #[serde(rename = "cni-bin-dirs", default)]
    pub cni_bin_dirs: Vec<PathBuf>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Command-line flags.
#[derive(Debug, clap::Parser)]
#[command(
    name = "silod",
    version,
    about = "The silo daemon: the Docker Engine API on a unix socket"
)]
pub struct Flags {
    /// Socket to listen on (unix:///path).
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Persistent state (store, images, volumes).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Runtime state (monitor sockets, pidfile).
    #[arg(long)]
    pub exec_root: Option<PathBuf>,
    /// JSON config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The silo-monitor binary (default: next to silod).
    #[arg(long)]
    pub monitor: Option<PathBuf>,
    /// The silo-runtime binary (default: next to silod).
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// The static init binary `docker run --init` bind-mounts at
    /// /sbin/docker-init (default: docker-init from Debian's tini, if present).
    #[arg(long)]
    pub init_path: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
    /// A registry reached over HTTP or unchecked HTTPS ("host:port" or a
    /// CIDR range; loopback always is). Repeatable; adds to the file's list.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// A Docker Hub mirror URL, tried before Docker Hub. Repeatable; adds
    /// to the file's list.
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// Give every container its own sandbox disk (an ext4 image of 20 GiB,
    /// or the size of --storage-opt size=) for what it writes.
    #[arg(long = "sandbox-disks")]
    pub sandbox_disks: bool,
    /// A default storage option for containers: size=SIZE (a sandbox disk of
    /// that size for every container). Repeatable.
    #[arg(long = "storage-opt")]
    pub storage_opts: Vec<String>,
    /// A mirror of a registry: HOST=URL (registry.k8s.io=http://127.0.0.1:5000).
    /// Repeatable; tried in order before the registry itself.
    #[arg(long = "registry-host-mirror")]
    pub registry_host_mirrors: Vec<String>,
    /// Do not serve the Kubernetes CRI.
    #[arg(long = "no-cri")]
    pub no_cri: bool,
    /// The CRI socket (default: cri.sock in the exec root, /run/silo/cri.sock).
    #[arg(long = "cri-socket")]
    pub cri_socket: Option<PathBuf>,
    /// The image of the pause container that is PID 1 of a CRI pod sharing
    /// one PID namespace (shareProcessNamespace); default registry.k8s.io/pause:3.9.
    #[arg(long = "cri-pause-image")]
    pub cri_pause_image: Option<String>,
    /// Where the CRI's streaming server (exec, attach, port-forward)
    /// listens: HOST:PORT (default 127.0.0.1:0, a free port).
    #[arg(long = "cri-stream-address")]
    pub cri_stream_address: Option<String>,
    /// CNI network configs for CRI pods (default /etc/cni/net.d; with none
    /// there, pods use silo's own network).
    #[arg(long = "cni-conf-dir")]
    pub cni_conf_dir: Option<PathBuf>,
    /// A CNI plugin directory, searched in order (default /opt/cni/bin and
    /// /usr/lib/cni). Repeatable; replaces the file's list.
    #[arg(long = "cni-bin-dir")]
    pub cni_bin_dirs: Vec<PathBuf>,
}

/// The merged settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub socket: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub monitor: PathBuf,
    pub runtime: PathBuf,
    /// None when no init binary was configured or found: `--init` is then refused.
    pub init_path: Option<PathBuf>,
    pub log_level: String,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    /// The sandbox disk size every container gets, if any.
    pub sandbox_disk: Option<u64>,
    /// Mirrors by registry host.
    pub registry_host_mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// The CRI socket; None: no CRI.
    pub cri_socket: Option<PathBuf>,
    pub cri_stream_address: std::net::SocketAddr,
    pub cri_pause_image: String,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
}

/// The sandbox disk size `--sandbox-disks` gives (Windows' default).
pub const DEFAULT_SANDBOX_DISK: u64 = 20 << 30;

/// Where an init binary is looked for when none is configured: Debian's
/// docker.io links docker-init to tini-static from the tini package.
pub const INIT_CANDIDATES: &[&str] = &[
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
    "/usr/bin/tini-static",
    "/usr/local/bin/docker-init",
];

pub const DEFAULT_HOST: &str = "unix:///run/silo/silod.sock";

/// The socket path of a `unix://` host.
pub fn socket_path(host: &str) -> Result<PathBuf, ConfigError> {
    host.strip_prefix("unix://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| ConfigError::Host {
            host: host.to_string(),
        })
}

/// The longest exec root whose per-container socket paths
/// (`<exec-root>/s/<64-hex id>/control.sock`) fit in a unix socket address.
pub const MAX_EXEC_ROOT: usize = 107 - "/s/".len() - 64 - "/control.sock".len();

/// Flags over file over defaults; helper binaries default to `bin_dir`.
pub fn merge(flags: Flags, file: FileConfig, bin_dir: &Path) -> Result<Settings, ConfigError> {
    let host = flags
        .hosts
        .last()
        .or(file.hosts.last())
        .cloned()
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    let exec_root = flags
        .exec_root
        .or(file.exec_root)
        .unwrap_or_else(|| PathBuf::from("/run/silo"));
    let len = exec_root.as_os_str().len();
    if len > MAX_EXEC_ROOT {
        return Err(ConfigError::ExecRootTooLong {
            path: exec_root,
            len,
        });
    }
    let mut registry_mirrors = file.registry_mirrors;
    registry_mirrors.extend(flags.registry_mirrors);
    let mut registry_host_mirrors = file.registry_host_mirrors;
    for m in &flags.registry_host_mirrors {
        let (host, url) = m
            .split_once('=')
            .filter(|(h, _)| !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| ConfigError::Mirror { mirror: m.clone() })?;
        registry_host_mirrors
            .entry(host.to_string())
            .or_default()
            .push(url.to_string());
    }
    for m in registry_mirrors
        .iter()
        .chain(registry_host_mirrors.values().flatten())
    {
        let rest = m
            .strip_prefix("https://")
            .or_else(|| m.strip_prefix("http://"))
            .map(|r| r.trim_end_matches('/'));
        if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
            return Err(ConfigError::Mirror { mirror: m.clone() });
        }
    }
    let mut size = None;
    for o in file.storage_opts.iter().chain(&flags.storage_opts) {
        let bad = |reason: &str| ConfigError::StorageOpt {
            option: o.clone(),
            reason: reason.to_string(),
        };
        match o.split_once('=') {
            Some(("size", v)) => {
                let n = silo_units::parse_size(v)
                    .ok()
                    .filter(|n| *n >= 16 << 20)
                    .ok_or_else(|| bad("want a size of at least 16m, such as 20G"))?;
                size = Some(n as u64);
            }
            _ => return Err(bad("only size=SIZE is supported")),
        }
    }
    let sandbox_disk = if flags.sandbox_disks || file.sandbox_disks {
        Some(size.unwrap_or(DEFAULT_SANDBOX_DISK))
    } else {
        size
    };
    let mut insecure_registries = file.insecure_registries;
    insecure_registries.extend(flags.insecure_registries);
    let cri_socket = if flags.no_cri || file.cri == Some(false) {
        None
    } else {
        Some(
            flags
                .cri_socket
                .or(file.cri_socket)
                .unwrap_or_else(|| exec_root.join("cri.sock")),
        )
    };
    let cni_bin_dirs = if !flags.cni_bin_dirs.is_empty() {
        flags.cni_bin_dirs
    } else if !file.cni_bin_dirs.is_empty() {
        file.cni_bin_dirs
    } else {
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    };
    let stream = flags
        .cri_stream_address
        .or(file.cri_stream_address)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let cri_stream_address = stream
        .parse()
        .map_err(|_| ConfigError::StreamAddress { address: stream })?;
    Ok(Settings {
        registry_host_mirrors,
        cri_socket,
        cri_stream_address,
        cri_pause_image: flags
            .cri_pause_image
            .or(file.cri_pause_image)
            .unwrap_or_else(|| silo_cri::DEFAULT_PAUSE_IMAGE.to_string()),
        cni_conf_dir: flags
            .cni_conf_dir
            .or(file.cni_conf_dir)
            .unwrap_or_else(|| PathBuf::from("/etc/cni/net.d")),
        cni_bin_dirs,
        sandbox_disk,
        insecure_registries,
        registry_mirrors,
        socket: socket_path(&host)?,
        data_root: flags
            .data_root
            .or(file.data_root)
            .unwrap_or_else(|| PathBuf::from("/var/lib/silo")),
        exec_root,
        monitor: flags
            .monitor
            .or(file.monitor)
            .unwrap_or_else(|| bin_dir.join("silo-monitor")),
        runtime: flags
            .runtime
            .or(file.runtime)
            .unwrap_or_else(|| bin_dir.join("silo-runtime")),
        // Absolute, because it is recorded in each container's spec.
        init_path: flags
            .init_path
            .or(file.init_path)
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .or_else(|| {
                INIT_CANDIDATES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            }),
        log_level: flags
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_string()),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn too_long_exec_root_is_refused_naming_it() {
        let long = format!("/tmp/{}", "x".repeat(MAX_EXEC_ROOT));
        let flags = Flags::parse_from(["silod", "--exec-root", long.as_str()]);
        let err = merge(flags, FileConfig::default(), Path::new("/b")).unwrap_err();
        assert!(err.to_string().contains(&long), "{err}");
        let fits = "/".to_string() + &"y".repeat(MAX_EXEC_ROOT - 1);
        let ok = Flags::parse_from(["silod", "--exec-root", fits.as_str()]);
        assert!(merge(ok, FileConfig::default(), Path::new("/b")).is_ok());
    }

    use super::*;
    use clap::Parser;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let flags = Flags::parse_from(["silod", "-H", "unix:///tmp/x.sock", "--data-root", "/d"]);
        let file: FileConfig = serde_json::from_str(
            r#"{"hosts":["unix:///ignored.sock"],"data-root":"/file","exec-root":"/fx","runtime":"/bin/rt"}"#,
        )
        .unwrap();
        let s = merge(flags, file, Path::new("/opt/silo")).unwrap();
        assert_eq!(s.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(s.data_root, PathBuf::from("/d"));
        assert_eq!(s.exec_root, PathBuf::from("/fx"));
        assert_eq!(s.runtime, PathBuf::from("/bin/rt"));
        assert_eq!(s.monitor, PathBuf::from("/opt/silo/silo-monitor"));
        assert_eq!(s.log_level, "info");
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let flags = Flags::parse_from(["silod"]);
        let s = merge(flags, FileConfig::default(), Path::new("/b")).unwrap();
        assert_eq!(s.socket, PathBuf::from("/run/silo/silod.sock"));
        assert_eq!(s.data_root, PathBuf::from("/var/lib/silo"));
        assert_eq!(s.exec_root, PathBuf::from("/run/silo"));
    }

    #[test]
    fn bad_hosts_and_files_are_named() {
        let err = socket_path("tcp://0.0.0.0:2375").unwrap_err().to_string();
        assert!(err.contains("tcp://0.0.0.0:2375"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"hostz":[]}"#).unwrap();
        let err = FileConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("c.json") && err.contains("hostz"), "{err}");
    }

    #[test]
    fn cri_settings_from_flags_file_and_defaults() {
        let s = merge(
            Flags::parse_from(["silod"]),
            FileConfig::default(),
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(s.cri_socket, Some(PathBuf::from("/run/silo/cri.sock")));
        assert_eq!(s.cri_stream_address.to_string(), "127.0.0.1:0");
        assert_eq!(s.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(
            s.cni_bin_dirs,
            [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(s.cri_pause_image, silo_cri::DEFAULT_PAUSE_IMAGE);
        let file: FileConfig = serde_json::from_str(
            r#"{"cri":false,"registry-host-mirrors":{"registry.k8s.io":["http://127.0.0.1:5000"]}}"#,
        )
        .unwrap();
        let flags = Flags::parse_from([
            "silod",
            "--registry-host-mirror",
            "registry.k8s.io=http://127.0.0.1:5001",
        ]);
        let s = merge(flags, file, Path::new("/b")).unwrap();
        assert_eq!(s.cri_socket, None, "\"cri\": false turns it off");
        assert_eq!(
            s.registry_host_mirrors["registry.k8s.io"],
            ["http://127.0.0.1:5000", "http://127.0.0.1:5001"]
        );
        for bad in [
            vec!["silod", "--cri-stream-address", "localhost"],
            vec!["silod", "--registry-host-mirror", "registry.k8s.io"],
            vec!["silod", "--registry-host-mirror", "r=ftp://x"],
        ] {
            let err = merge(
                Flags::parse_from(&bad),
                FileConfig::default(),
                Path::new("/b"),
            );
            assert!(err.is_err(), "{bad:?} was accepted");
        }
    }
}

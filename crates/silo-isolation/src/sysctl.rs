//! Validates `linux.sysctl` against the namespaces the container gets (only
//! namespaced keys are allowed, like runc) and writes them under /proc/sys.

use silo_oci::{Namespace, NamespaceType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Failure of [`validate`] or [`apply`].
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("linux.sysctl: key {0:?} is malformed (empty component, \"/\" or \"..\")")]
    BadKey(String),
    #[error("linux.sysctl: {key:?} requires a new {ns} namespace")]
    NeedsNamespace { key: String, ns: &'static str },
    #[error(
        "linux.sysctl: {key:?} cannot be set: the network namespace is joined by path \
         ({path}) and may be the host's"
    )]
    HostNetwork { key: String, path: String },
    #[error("linux.sysctl: {0:?} is not namespaced and is refused")]
    NotNamespaced(String),
    #[error("linux.sysctl: writing {value:?} to {path}: {source}")]
    Write {
        value: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn check_key(key: &str) -> Result<(), SysctlError> {
    let bad = key.is_empty()
        || key.contains('/')
        || key.contains('\0')
        || key.split('.').any(|c| c.is_empty() || c == "..");
    if bad {
        return Err(SysctlError::BadKey(key.to_string()));
    }
    Ok(())
}

fn has_ns(namespaces: &[Namespace], t: NamespaceType) -> Option<&Namespace> {
    namespaces.iter().find(|n| n.typ == t)
}

/// Check every key is one the container's namespaces make safe to set.
pub fn validate(
    sysctl: &BTreeMap<String, String>,
    namespaces: &[Namespace],
) -> Result<(), SysctlError> {
    for key in sysctl.keys() {
        check_key(key)?;
        let ipc = key == "kernel.sem"
            || key.starts_with("kernel.msg")
            || key.starts_with("kernel.shm")
            || key.starts_with("fs.mqueue.");
        if ipc {
            if has_ns(namespaces, NamespaceType::Ipc).is_none() {
                return Err(SysctlError::NeedsNamespace {
                    key: key.clone(),
                    ns: "ipc",
                });
            }
            continue;
        }
        if key.starts_with("net.") {
            match has_ns(namespaces, NamespaceType::Network) {
                None => {
                    return Err(SysctlError::NeedsNamespace {
                        key: key.clone(),
                        ns: "network",
                    })
                }
                Some(Namespace {
                    path: Some(path), ..
                }) if is_host_netns(Path::new(path)) => {
                    return Err(SysctlError::HostNetwork {
                        key: key.clone(),
                        path: path.clone(),
                    })
                }
                Some(_) => continue,
            }
        }
        if key == "kernel.hostname" || key == "kernel.domainname" {
            if has_ns(namespaces, NamespaceType::Uts).is_none() {
                return Err(SysctlError::NeedsNamespace {
                    key: key.clone(),
                    ns: "uts",
                });
            }
            continue;
        }
        return Err(SysctlError::NotNamespaced(key.clone()));
    }
    Ok(())
}

/// Whether `path` is the same network namespace as our own (the host's, for the runtime).
fn is_host_netns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Write each value to `/proc/sys/<key with '.' replaced by '/'>`.
pub fn apply(sysctl: &BTreeMap<String, String>) -> Result<(), SysctlError> {
    apply_under(Path::new("/proc/sys"), sysctl)
}

/// [`apply`] with an injected `/proc/sys` root.
pub fn apply_under(root: &Path, sysctl: &BTreeMap<String, String>) -> Result<(), SysctlError> {
    for (key, value) in sysctl {
        check_key(key)?;
        let path = root.join(key.replace('.', "/"));
        std::fs::write(&path, value.as_bytes()).map_err(|source| SysctlError::Write {
            value: value.clone(),
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: NamespaceType, path: Option<&str>) -> Namespace {
        Namespace {
            typ: t,
            path: path.map(String::from),
        }
    }

    fn one(k: &str) -> BTreeMap<String, String> {
        [(k.to_string(), "1".to_string())].into_iter().collect()
    }

    #[test]
    fn ipc_keys_need_ipc_ns() {
        let e = validate(&one("kernel.shmmax"), &[]).unwrap_err();
        assert!(e.to_string().contains("ipc namespace"), "{e}");
        validate(&one("kernel.shmmax"), &[ns(NamespaceType::Ipc, None)]).unwrap();
        validate(&one("fs.mqueue.msg_max"), &[ns(NamespaceType::Ipc, None)]).unwrap();
        validate(&one("kernel.sem"), &[ns(NamespaceType::Ipc, None)]).unwrap();
    }

    #[test]
    fn net_keys_need_private_net_ns() {
        let k = one("net.ipv4.ip_forward");
        assert!(validate(&k, &[]).is_err());
        validate(&k, &[ns(NamespaceType::Network, None)]).unwrap();
        let e = validate(&k, &[ns(NamespaceType::Network, Some("/proc/self/ns/net"))]).unwrap_err();
        assert!(matches!(e, SysctlError::HostNetwork { .. }), "{e}");
    }

    #[test]
    fn uts_and_other_keys() {
        assert!(validate(&one("kernel.hostname"), &[]).is_err());
        validate(&one("kernel.hostname"), &[ns(NamespaceType::Uts, None)]).unwrap();
        let e = validate(&one("vm.swappiness"), &[ns(NamespaceType::Ipc, None)]).unwrap_err();
        assert!(e.to_string().contains("vm.swappiness"), "{e}");
    }

    #[test]
    fn traversal_refused() {
        for k in ["net/../../etc", "net...x", "net.ipv4..", ".net", ""] {
            let e = validate(&one(k), &[ns(NamespaceType::Network, None)]).unwrap_err();
            assert!(matches!(e, SysctlError::BadKey(_)), "{k}: {e}");
        }
    }

    #[test]
    fn apply_writes_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        apply_under(dir.path(), &one("net.ipv4.ip_forward")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        let e = apply_under(dir.path(), &one("kernel.nothere")).unwrap_err();
        assert!(e.to_string().contains("kernel/nothere"), "{e}");
    }
}

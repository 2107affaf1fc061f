//! Turns a bundle directory into a checked, ready-to-spawn plan, so every
//! user mistake is caught with a clear message before anything is created.

use crate::host::Host;
use silo_isolation::rlimits::Limit;
use silo_oci::{Process, Spec};
use std::path::{Path, PathBuf};

/// Why a bundle cannot become a compute system.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    Id(String),
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Spec(#[from] silo_oci::LoadError),
    #[error("{path}: field `process` is missing")]
    NoProcess { path: PathBuf },
    #[error("{path}: field `process.args` must not be empty")]
    NoArgs { path: PathBuf },
    #[error("{path}: field `root.path`: rootfs {rootfs} does not exist or is not a directory")]
    Rootfs { path: PathBuf, rootfs: PathBuf },
    #[error("{path}: field `root` is missing")]
    NoRoot { path: PathBuf },
    #[error(
        "{path}: field `hooks.{kind}[{index}].timeout`: must be greater than zero, got {value}"
    )]
    HookTimeout {
        path: PathBuf,
        kind: &'static str,
        index: usize,
        value: i64,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("seccomp: {0}")]
    Seccomp(#[from] silo_seccomp::CompileError),
}

/// A validated bundle.
pub struct Prepared {
    pub bundle: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub rlimits: Vec<Limit>,
    pub seccomp: Option<silo_seccomp::Program>,
    pub warnings: Vec<String>,
}

/// Container ids: what runc accepts.
pub fn validate_id(id: &str) -> Result<(), BundleError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Id(id.to_string()))
    }
}

/// Checks the process part of a spec (used for exec too).
pub(crate) fn check_process(
    process: &Process,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<Limit>, BundleError> {
    if process.args.is_empty() {
        return Err(BundleError::NoArgs {
            path: path.to_path_buf(),
        });
    }
    if let Some(caps) = &process.capabilities {
        silo_isolation::caps::validate(caps).map_err(|e| BundleError::Invalid(e.to_string()))?;
    }
    if process
        .apparmor_profile
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        warnings.push(
            "process.apparmorProfile is set but this kernel has no AppArmor; ignoring it".into(),
        );
    }
    if process
        .selinux_label
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        warnings
            .push("process.selinuxLabel is set but this kernel has no SELinux; ignoring it".into());
    }
    silo_isolation::rlimits::parse(&process.rlimits)
        .map_err(|e| BundleError::Invalid(e.to_string()))
}

/// Compiles (or fetches from the cache) the spec's seccomp filter.
pub(crate) fn seccomp_program(
    host: &Host,
    spec: &Spec,
) -> Result<Option<silo_seccomp::Program>, BundleError> {
    match spec.linux.as_ref().and_then(|l| l.seccomp.as_ref()) {
        Some(profile) => Ok(Some(silo_seccomp::compile_cached(
            profile,
            &host.seccomp_cache(),
        )?)),
        None => Ok(None),
    }
}

/// Loads and checks `<bundle>/config.json`.
pub fn prepare(host: &Host, bundle: &Path) -> Result<Prepared, BundleError> {
    let bundle = std::fs::canonicalize(bundle).map_err(|source| BundleError::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = bundle.join("config.json");
    let spec = silo_oci::load_spec(&path)?;
    let mut warnings = Vec::new();
    let process = spec
        .process
        .as_ref()
        .ok_or(BundleError::NoProcess { path: path.clone() })?;
    let rlimits = check_process(process, &path, &mut warnings)?;
    let root = spec
        .root
        .as_ref()
        .ok_or(BundleError::NoRoot { path: path.clone() })?;
    let rootfs = bundle.join(&root.path);
    if !rootfs.is_dir() {
        return Err(BundleError::Rootfs { path, rootfs });
    }
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|_| BundleError::Rootfs {
        path: path.clone(),
        rootfs: rootfs.clone(),
    })?;
    let linux = spec.linux.clone().unwrap_or_default();
    silo_isolation::ns::validate(&linux).map_err(|e| BundleError::Invalid(e.to_string()))?;
    silo_isolation::sysctl::validate(&linux.sysctl, &linux.namespaces)
        .map_err(|e| BundleError::Invalid(e.to_string()))?;
    if let Some(p) = &linux.personality {
        silo_isolation::personality::validate(p)
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
    }
    if linux.mount_label.as_deref().is_some_and(|l| !l.is_empty()) {
        warnings.push("linux.mountLabel is set but this kernel has no SELinux; ignoring it".into());
    }
    if let Some(hooks) = &spec.hooks {
        let kinds: [(&'static str, &Vec<silo_oci::Hook>); 6] = [
            ("prestart", &hooks.prestart),
            ("createRuntime", &hooks.create_runtime),
            ("createContainer", &hooks.create_container),
            ("startContainer", &hooks.start_container),
            ("poststart", &hooks.poststart),
            ("poststop", &hooks.poststop),
        ];
        for (kind, list) in kinds {
            for (index, h) in list.iter().enumerate() {
                if let Some(t) = h.timeout.filter(|t| *t <= 0) {
                    return Err(BundleError::HookTimeout {
                        path,
                        kind,
                        index,
                        value: t,
                    });
                }
            }
        }
    }
    let seccomp = seccomp_program(host, &spec)?;
    Ok(Prepared {
        bundle,
        spec,
        rootfs,
        rlimits,
        seccomp,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["abc", "a-b_c.1", "X+y"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..", ".hidden", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}

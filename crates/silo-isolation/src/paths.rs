//! `linux.maskedPaths` and `linux.readonlyPaths`, applied in the container's
//! view after the root switch.

use crate::mounts::{bind_remount, sys_mount};
use std::ffi::CString;
use std::path::PathBuf;

/// Failure of [`mask_paths`] or [`readonly_paths`].
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("{field}: {path:?} contains a NUL byte")]
    Nul { field: &'static str, path: String },
    #[error("{field}: {path}: {what}: {source}")]
    Mount {
        field: &'static str,
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn err(
    field: &'static str,
    path: &str,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> PathsError {
    let path = PathBuf::from(path);
    move |source| PathsError::Mount {
        field,
        path,
        what,
        source,
    }
}

fn c(field: &'static str, p: &str) -> Result<CString, PathsError> {
    CString::new(p).map_err(|_| PathsError::Nul {
        field,
        path: p.into(),
    })
}

/// Hide each path: a file gets /dev/null bound over it, a directory an empty
/// read-only tmpfs. Missing paths are skipped.
pub fn mask_paths(paths: &[String]) -> Result<(), PathsError> {
    const F: &str = "linux.maskedPaths";
    for p in paths {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(F, p, "stat")(e)),
        };
        let target = c(F, p)?;
        if meta.is_dir() {
            sys_mount(
                Some(c"tmpfs"),
                &target,
                Some(c"tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"size=0,mode=555"),
            )
            .map_err(err(F, p, "mounting an empty read-only tmpfs"))?;
        } else {
            sys_mount(Some(c"/dev/null"), &target, None, libc::MS_BIND, None).map_err(err(
                F,
                p,
                "binding /dev/null over it",
            ))?;
        }
    }
    Ok(())
}

/// Make each path read-only (bind it onto itself, then remount read-only,
/// keeping nosuid/nodev/noexec). Missing paths are skipped.
pub fn readonly_paths(paths: &[String]) -> Result<(), PathsError> {
    const F: &str = "linux.readonlyPaths";
    for p in paths {
        match std::fs::symlink_metadata(p) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(F, p, "stat")(e)),
        }
        let target = c(F, p)?;
        sys_mount(
            Some(&target),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(err(F, p, "binding it onto itself"))?;
        let kept = crate::mounts::kept_flags(&target).map_err(err(F, p, "statvfs"))?;
        bind_remount(&target, kept | libc::MS_RDONLY).map_err(err(F, p, "remounting read-only"))?;
    }
    Ok(())
}

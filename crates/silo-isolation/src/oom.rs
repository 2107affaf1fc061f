//! Writes `process.oomScoreAdj` to `/proc/<pid>/oom_score_adj`, explaining the
//! capability a lowered score needs when the kernel refuses it.

use std::path::{Path, PathBuf};

/// Failure of [`set_score_adj`].
#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("process.oomScoreAdj: {value} is outside -1000..=1000")]
    OutOfRange { value: i32 },
    #[error(
        "process.oomScoreAdj: lowering the score of pid {pid} from {current} to {value} \
         needs CAP_SYS_RESOURCE, which this runtime does not have ({path}: {source})"
    )]
    NeedsCapSysResource {
        pid: i32,
        current: String,
        value: i32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("process.oomScoreAdj: writing {value} to {path}: {source}")]
    Write {
        value: i32,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write `value` to `<proc_root>/<pid>/oom_score_adj`.
pub fn set_score_adj(proc_root: &Path, pid: i32, value: i32) -> Result<(), OomError> {
    if !(-1000..=1000).contains(&value) {
        return Err(OomError::OutOfRange { value });
    }
    let path = proc_root.join(pid.to_string()).join("oom_score_adj");
    match std::fs::write(&path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(source)
            if matches!(
                source.raw_os_error(),
                Some(libc::EACCES) | Some(libc::EPERM)
            ) =>
        {
            let current = std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            Err(OomError::NeedsCapSysResource {
                pid,
                current,
                value,
                path,
                source,
            })
        }
        Err(source) => Err(OomError::Write {
            value,
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_value_into_fixture_proc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("42")).unwrap();
        set_score_adj(dir.path(), 42, 500).unwrap();
        let got = std::fs::read_to_string(dir.path().join("42/oom_score_adj")).unwrap();
        assert_eq!(got, "500");
    }

    #[test]
    fn missing_pid_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = set_score_adj(dir.path(), 7, 1).unwrap_err();
        assert!(err.to_string().contains("7/oom_score_adj"), "{err}");
    }

    #[test]
    fn out_of_range_refused() {
        let err = set_score_adj(Path::new("/proc"), 1, 1001).unwrap_err();
        assert!(matches!(err, OomError::OutOfRange { value: 1001 }));
    }

    #[test]
    fn real_proc_raise_own_child_score() {
        // Raising the score never needs a capability.
        let mut child = std::process::Command::new("/bin/busybox")
            .args(["sleep", "5"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let res = set_score_adj(Path::new("/proc"), pid, 300);
        let got = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"));
        let _ = child.kill();
        let _ = child.wait();
        res.unwrap();
        assert_eq!(got.unwrap().trim(), "300");
    }
}

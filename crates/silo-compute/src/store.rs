//! Persistent per-container state: one directory per compute system under
//! the runtime root, holding a JSON record that is replaced atomically.

use serde::{Deserialize, Serialize};
use silo_oci::{Spec, Status};
use std::path::{Path, PathBuf};

/// What a compute system remembers between runtime invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/<pid>/stat), so a recycled
    /// pid is never mistaken for our init.
    pub pid_start: u64,
    pub created: String,
    pub owner: String,
    /// The last status an operation recorded; the live status is derived
    /// from this, the init's liveness and the freezer.
    pub status: Status,
    pub cgroup_path: String,
    pub spec: Spec,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt state record: {message}")]
    Corrupt { path: PathBuf, message: String },
}

pub const RECORD_FILE: &str = "state.json";

/// Writes a record: atomically, without fsync ([`silo_sys::fs::Durability::Atomic`]).
///
/// Runtime state describes live kernel objects that do not survive a
/// reboot (the root is normally under /run), so we skip fsync: it would
/// cost milliseconds on every lifecycle step for durability nobody needs.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    silo_sys::fs::write_atomic(path, bytes, silo_sys::fs::Durability::Atomic).map_err(|source| {
        StoreError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

impl Record {
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(self).map_err(|e| StoreError::Corrupt {
            path: dir.join(RECORD_FILE),
            message: e.to_string(),
        })?;
        write_atomic(&dir.join(RECORD_FILE), &bytes)
    }

    pub fn load(dir: &Path) -> Result<Record, StoreError> {
        let path = dir.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            message: e.to_string(),
        })
    }
}

/// RFC 3339 UTC timestamps with all nine nanosecond digits, like runc's
/// `created` ("2024-01-02T03:04:05.000000005Z"): the current time, and a
/// unix time (seconds, nanoseconds). The engine, the monitor and the
/// runtime's log write theirs through these too.
pub use silo_units::{format_rfc3339 as rfc3339, now_rfc3339 as rfc3339_now};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        // The calendar is silo-units'; here: runc's `created` shape.
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339_now().len(), "2000-02-29T00:00:00.000000005Z".len());
    }
}

//! The files silod reads to re-adopt a container (monitor.json, exit.json,
//! log-errors.json): written atomically and durably, plus a small space
//! reserve so a full disk cannot cost us the exit code.

use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably (fsynced): readers see
/// the old content or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

/// [`write_atomic`]; without `durable` there is no fsync: still atomic for
/// every reader and across a crash of silod or of the monitor, but not
/// across a host crash. For records that mean nothing after a reboot.
pub fn write_atomic_with(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use silo_sys::fs::Durability;
    let d = if durable {
        Durability::Durable
    } else {
        Durability::Atomic
    };
    silo_sys::fs::write_atomic(path, bytes, d)
}

/// Like [`write_atomic`] for a serializable value; on ENOSPC releases
/// `reserve` (if still held) and tries once more.
pub fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    reserve: Option<&mut Option<Reserve>>,
) -> std::io::Result<()> {
    write_json_with(path, value, reserve, true)
}

/// [`write_json`] with [`write_atomic_with`]'s `durable`.
pub fn write_json_with<T: Serialize>(
    path: &Path,
    value: &T,
    reserve: Option<&mut Option<Reserve>>,
    durable: bool,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    match write_atomic_with(path, &bytes, durable) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => match reserve.and_then(Option::take) {
            Some(r) => {
                r.release();
                write_atomic_with(path, &bytes, durable)
            }
            None => Err(e),
        },
        other => other,
    }
}

pub use silo_sys::fs::Reserve;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        write_atomic(&p, b"1").unwrap();
        write_json(&p, &serde_json::json!({"exit_code": 3}), None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), r#"{"exit_code":3}"#);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_error_names_nothing_left_behind() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing/exit.json");
        assert!(write_atomic(&p, b"x").is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn reserve_holds_real_blocks_until_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".reserve");
        let r = Reserve::create(&p, 10_000).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 10_000);
        use std::os::unix::fs::MetadataExt;
        assert!(m.blocks() * 512 >= 10_000, "not sparse");
        r.release();
        assert!(!p.exists());
    }
}

//! Atomic file writes: a reader sees the old content or the new, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every temporary file [`write_atomic`] creates, so a store that
/// finds one after a crash knows it may sweep it.
pub const TMP_PREFIX: &str = ".tmp-";

/// How far a write must have gone when [`write_atomic`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Renamed into place and fsynced (file and directory): survives a host
    /// crash. For state that must outlive a reboot.
    Durable,
    /// Renamed into place without fsync: atomic for every reader and across
    /// a crash of the writing process, not across a host crash. For records
    /// of kernel objects that a reboot ends anyway (runtime state under /run).
    Atomic,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name beside `target` (same directory, so the rename
/// is atomic), starting with [`TMP_PREFIX`].
pub fn tmp_sibling(target: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = format!("{TMP_PREFIX}{base}-{}-{n}", std::process::id());
    match target.parent() {
        Some(p) => p.join(name),
        None => PathBuf::from(name),
    }
}

/// Writes `bytes` to `path` through a temporary sibling renamed over it.
/// On failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let tmp = tmp_sibling(path);
    let durable = durability == Durability::Durable;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if durable {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// fsyncs a directory, so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A file of real (not sparse) blocks held on a filesystem, given back when the disk
/// fills up so the state that must still be written fits (the monitor's
/// files, the engine's database).
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    /// Creates `path` with `size` bytes written out. Best effort: returns
    /// None when there is no room even for that.
    pub fn create(path: &Path, size: usize) -> Option<Reserve> {
        let zeros = [0u8; 4096];
        let mut f = std::fs::File::create(path).ok()?;
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len());
            if f.write_all(&zeros[..n]).is_err() {
                drop(f);
                let _ = std::fs::remove_file(path);
                return None;
            }
            left -= n;
        }
        Some(Reserve {
            path: path.to_path_buf(),
        })
    }

    /// Takes over `path` when an earlier run left it whole (`size` bytes,
    /// which [`Reserve::create`] wrote out), else creates it: a restart
    /// does not write the reserve again.
    pub fn adopt_or_create(path: &Path, size: usize) -> Option<Reserve> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() == size as u64 => Some(Reserve {
                path: path.to_path_buf(),
            }),
            _ => Reserve::create(path, size),
        }
    }

    /// Frees the space.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_whole_reserve_is_adopted_not_rewritten() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r");
        let r = Reserve::create(&p, 8192).unwrap();
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        drop(r);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = Reserve::adopt_or_create(&p, 8192).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
        r.release();
        assert!(!p.exists());
        // A short one is made again at the right size.
        std::fs::write(&p, b"x").unwrap();
        let _r = Reserve::adopt_or_create(&p, 8192).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192);
    }

    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        for (bytes, d) in [
            (&b"one"[..], Durability::Durable),
            (b"two", Durability::Atomic),
        ] {
            write_atomic(&p, bytes, d).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), bytes);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the write.
        let p = dir.path().join("d");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), "x").unwrap();
        assert!(write_atomic(&p, b"x", Durability::Atomic).is_err());
        assert!(p.join("inside").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "the temporary file must be removed");
        let t = tmp_sibling(&p);
        assert!(t
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TMP_PREFIX));
        assert_ne!(t, tmp_sibling(&p), "temporary names are unique");
    }
}

//! Small filesystem helpers shared by the store: atomic metadata writes, sizes,
//! random names and mount-table lookups.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub(crate) use silo_sys::fs::{sync_dir, tmp_sibling, TMP_PREFIX};
pub(crate) use silo_sys::id::{hex, is_hex, random_hex};

/// Writes `data` to `path` atomically and durably (the store's metadata
/// must survive a host crash): [`silo_sys::fs::write_atomic`].
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    silo_sys::fs::write_atomic(path, data, silo_sys::fs::Durability::Durable)
}

/// Apparent size in bytes of everything under `path` (regular files and
/// symlinks; hard-linked inodes counted once). Missing paths count as 0.
pub(crate) fn tree_size(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() || md.file_type().is_symlink() {
            if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
                continue;
            }
            total += md.len();
        }
    }
    total
}

/// Whether `target` is a mount point according to a mountinfo file
/// (normally /proc/self/mountinfo).
pub(crate) fn is_mounted(mountinfo: &Path, target: &Path) -> io::Result<bool> {
    if mountinfo == Path::new("/proc/self/mountinfo") {
        if let Some(answer) = is_mount_point(target) {
            return Ok(answer);
        }
    }
    let text = fs::read_to_string(mountinfo)?;
    let want = target.as_os_str().as_encoded_bytes();
    Ok(text.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    }))
}

/// Whether `target` is the root of a mount in our mount namespace, from
/// the mount ids of it and its parent (statx, Linux 5.8+): O(1), where
/// scanning mountinfo costs O(mounts), which a busy host has hundreds of.
/// None when the kernel does not report mount ids or `target` has no parent.
pub(crate) fn is_mount_point(target: &Path) -> Option<bool> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let parent = target.parent()?;
    let id = |p: &Path| -> Option<u64> {
        match statx(CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID) {
            Ok(st) if StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::MNT_ID) => {
                Some(st.stx_mnt_id)
            }
            _ => None,
        }
    };
    match (id(target), id(parent)) {
        (Some(a), Some(b)) => Some(a != b),
        // A missing target is not mounted; anything else: ask mountinfo.
        (None, Some(_)) if !target.exists() => Some(false),
        _ => None,
    }
}

/// Undoes the octal escapes (`\040` etc.) the kernel uses in mountinfo fields.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0');
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), b"/a b");
        assert_eq!(unescape_mountinfo(r"/x\"), b"/x\\");
    }

    #[test]
    fn mountinfo_lookup_uses_field_five() {
        let dir = tempfile::tempdir().unwrap();
        let mi = dir.path().join("mountinfo");
        fs::write(
            &mi,
            "22 1 0:21 / /proc rw - proc proc rw\n30 22 0:40 / /a\\040b rw - tmpfs t rw\n",
        )
        .unwrap();
        assert!(is_mounted(&mi, Path::new("/a b")).unwrap());
        assert!(is_mounted(&mi, Path::new("/proc")).unwrap());
        assert!(!is_mounted(&mi, Path::new("/a")).unwrap());
        assert_eq!(is_mount_point(Path::new("/proc")), Some(true));
        assert_eq!(is_mount_point(Path::new("/proc/self")), Some(false));
        assert_eq!(
            is_mount_point(Path::new("/proc/no-such-entry")),
            Some(false)
        );
    }

    #[test]
    fn tree_size_counts_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), [0u8; 100]).unwrap();
        fs::hard_link(dir.path().join("f"), dir.path().join("g")).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/h"), [0u8; 7]).unwrap();
        assert_eq!(tree_size(dir.path()), 107);
    }
}

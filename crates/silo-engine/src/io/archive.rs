//! `docker cp` and `docker export`: paths inside a container's root
//! filesystem are resolved with openat2(RESOLVE_IN_ROOT), so a hostile
//! symlink in the container cannot lead the daemon outside the rootfs.

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Errors of the archive operations, naming the path concerned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("Could not find the file {path} in container")]
    NotFound { path: String },
    #[error("extraction point {path} is not a directory")]
    NotDir { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tar entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
}

fn io_err(path: &str, e: impl Into<std::io::Error>) -> ArchiveError {
    let source = e.into();
    if source.kind() == std::io::ErrorKind::NotFound {
        ArchiveError::NotFound { path: path.into() }
    } else {
        ArchiveError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A container path split into its parent (relative to the root) and the
/// last component (None for the root itself); `follow` when the path ends
/// in '/' or '/.' (the final symlink is followed then, as Docker does).
#[derive(Debug, PartialEq)]
pub(crate) struct Split {
    pub parent: PathBuf,
    pub name: Option<String>,
    pub follow: bool,
}

/// Splits a container path lexically; `..` is left to RESOLVE_IN_ROOT.
pub(crate) fn split(path: &str) -> Split {
    let follow = path.ends_with('/') || path.ends_with("/.") || path == ".";
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => parts.push("..".into()),
            _ => {}
        }
    }
    let name = parts.pop();
    Split {
        parent: parts.iter().collect(),
        name,
        follow,
    }
}

/// Opens the root directory of a container.
/// The text of `rel` inside the container's root (resolved inside it, so
/// a hostile image's symlinks cannot point at the host's files); empty
/// when it cannot be read.
pub(crate) fn read_in_root(rootfs: &Path, rel: &str) -> String {
    open_root(rootfs)
        .ok()
        .and_then(|r| open_in_root(&r, Path::new(rel), OFlags::RDONLY).ok())
        .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
        .unwrap_or_default()
}

pub(crate) fn open_root(rootfs: &Path) -> Result<OwnedFd, ArchiveError> {
    rfs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(&rootfs.display().to_string(), e))
}

/// Opens `rel` inside the root, every symlink resolved as if the root were `/`.
pub(crate) fn open_in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(rfs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// The host path an fd refers to now.
fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// What a container path resolved to.
struct Resolved {
    /// The host path (inside the rootfs at the time of resolution).
    host: PathBuf,
    /// The name Docker reports (the last component, "/" for the root).
    name: String,
    stat: rfs::Stat,
}

fn resolve(rootfs: &Path, path: &str) -> Result<Resolved, ArchiveError> {
    let root = open_root(rootfs)?;
    let real_root = fd_path(&root).map_err(|e| io_err(path, e))?;
    let sp = split(path);
    let (host, name, stat) = match (&sp.name, sp.follow) {
        (Some(n), false) if n != ".." => {
            let parent = open_in_root(&root, &sp.parent, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| io_err(path, e))?;
            let st = rfs::statat(&parent, n.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(path, e))?;
            let host = fd_path(&parent).map_err(|e| io_err(path, e))?.join(n);
            (host, n.clone(), st)
        }
        _ => {
            let full = match &sp.name {
                Some(n) => sp.parent.join(n),
                None => PathBuf::new(),
            };
            let fd = open_in_root(&root, &full, OFlags::PATH).map_err(|e| io_err(path, e))?;
            let st = rfs::fstat(&fd).map_err(|e| io_err(path, e))?;
            let host = fd_path(&fd).map_err(|e| io_err(path, e))?;
            let name = sp.name.clone().unwrap_or_else(|| "/".into());
            (host, name, st)
        }
    };
    if !host.starts_with(&real_root) {
        return Err(ArchiveError::Entry {
            entry: path.into(),
            reason: "resolves outside the container's root".into(),
        });
    }
    Ok(Resolved { host, name, stat })
}

/// What a path in the container is.
pub(crate) fn stat(rootfs: &Path, path: &str) -> Result<crate::io::PathStat, ArchiveError> {
    let r = resolve(rootfs, path)?;
    let mut link_target = String::new();
    if r.stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
        // The target as the container sees it, fully resolved.
        let root = open_root(rootfs)?;
        let real_root = fd_path(&root).map_err(|e| io_err(path, e))?;
        let sp = split(path);
        let full = sp.parent.join(sp.name.unwrap_or_default());
        if let Ok(fd) = open_in_root(&root, &full, OFlags::PATH) {
            if let Ok(p) = fd_path(&fd) {
                if let Ok(rel) = p.strip_prefix(&real_root) {
                    link_target = format!("/{}", rel.display());
                }
            }
        }
    }
    Ok(crate::io::PathStat {
        name: r.name,
        size: r.stat.st_size,
        mode: r.stat.st_mode,
        mtime: silo_units::format_rfc3339(r.stat.st_mtime, r.stat.st_mtime_nsec as u32),
        link_target,
    })
}

/// `path` made absolute with `.` and `..` resolved lexically ("/a/../b"
/// is "/b"; nothing goes above "/").
pub(crate) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The last component of a container path ("/" for the root).
pub(crate) fn basename(path: &str) -> String {
    let n = normalize(path);
    match n.rsplit('/').next() {
        Some("") | None => "/".into(),
        Some(b) => b.to_string(),
    }
}

/// Writes a tar of the file or directory at `path`, the top entry named
/// `top` (default: its basename).
pub(crate) fn get_named(
    rootfs: &Path,
    path: &str,
    top: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), ArchiveError> {
    let r = resolve(rootfs, path)?;
    let top = match top {
        Some(t) if t != "/" => t,
        _ if r.name == "/" => ".",
        _ => r.name.as_str(),
    };
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let res = if r.stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
        b.append_dir_all(top, &r.host)
    } else {
        b.append_path_with_name(&r.host, top)
    };
    res.and_then(|_| b.finish()).map_err(|e| io_err(path, e))
}

/// Writes a tar of the whole root filesystem.
pub(crate) fn export(rootfs: &Path, out: &mut dyn Write) -> Result<(), ArchiveError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs)
        .and_then(|_| b.finish())
        .map_err(|e| io_err(&rootfs.display().to_string(), e))
}

/// Opens (creating as needed) directory `rel` inside the root.
fn ensure_dir(root: &OwnedFd, rel: &Path) -> std::io::Result<OwnedFd> {
    match open_in_root(root, rel, OFlags::PATH | OFlags::DIRECTORY) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut cur = open_in_root(root, Path::new(""), OFlags::PATH | OFlags::DIRECTORY)?;
    let mut sofar = PathBuf::new();
    for c in rel.components() {
        sofar.push(c);
        match open_in_root(root, &sofar, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = c.as_os_str();
                match rfs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                cur = open_in_root(root, &sofar, OFlags::PATH | OFlags::DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Checks a tar entry's path: relative, no `..`; returns its components.
pub(crate) fn entry_rel(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("contains '..'".into()),
            Component::Prefix(_) => return Err("has a prefix".into()),
        }
    }
    Ok(out)
}

fn unlink_any(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        // A directory where a file goes: Docker replaces only empty ones.
        Err(Errno::ISDIR) => Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?),
        Err(e) => Err(e.into()),
    }
}

/// Extracts a tar into the existing directory `path` inside the root;
/// files become owned by root (Docker's default without copyUIDGID).
pub(crate) fn put(rootfs: &Path, path: &str, tar_in: &mut dyn Read) -> Result<(), ArchiveError> {
    let r = resolve(rootfs, &format!("{}/", path.trim_end_matches('/')))?;
    if r.stat.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(ArchiveError::NotDir { path: path.into() });
    }
    let root = open_root(rootfs)?;
    let real_root = fd_path(&root).map_err(|e| io_err(path, e))?;
    let base = r
        .host
        .strip_prefix(&real_root)
        .map(Path::to_path_buf)
        .map_err(|_| ArchiveError::NotFound { path: path.into() })?;
    let mut ar = tar::Archive::new(tar_in);
    let entries = ar.entries().map_err(|e| io_err(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(path, e))?;
        let raw = entry.path().map_err(|e| io_err(path, e))?.into_owned();
        let shown = raw.display().to_string();
        let bad = |reason: String| ArchiveError::Entry {
            entry: shown.clone(),
            reason,
        };
        let rel = entry_rel(&raw).map_err(&bad)?;
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue; // "./" itself
        };
        let parent_rel = base.join(rel.parent().unwrap_or(Path::new("")));
        let dir = ensure_dir(&root, &parent_rel).map_err(|e| bad(e.to_string()))?;
        let hdr = entry.header();
        let mode = Mode::from_raw_mode(hdr.mode().unwrap_or(0o644) & 0o7777);
        let mtime = hdr.mtime().unwrap_or(0) as i64;
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            },
        };
        let kind = hdr.entry_type();
        let io = |e: std::io::Error| bad(e.to_string());
        let errno = |e: Errno| bad(std::io::Error::from(e).to_string());
        match kind {
            tar::EntryType::Directory => {
                match rfs::mkdirat(&dir, &name, mode) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno(e)),
                }
                let d = rfs::openat(
                    &dir,
                    &name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
                    Mode::empty(),
                )
                .map_err(errno)?;
                rfs::fchmod(&d, mode).map_err(errno)?;
                rfs::fchown(&d, Some(rfs::Uid::ROOT), Some(rfs::Gid::ROOT)).map_err(errno)?;
                let _ = rfs::futimens(&d, &times);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::TRUNC
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = match rfs::openat(&dir, &name, flags, mode) {
                    Ok(fd) => fd,
                    Err(Errno::LOOP) | Err(Errno::ISDIR) => {
                        unlink_any(&dir, &name).map_err(io)?;
                        rfs::openat(&dir, &name, flags, mode).map_err(errno)?
                    }
                    Err(e) => return Err(errno(e)),
                };
                let mut f = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut f).map_err(io)?;
                rfs::fchmod(f.as_fd(), mode).map_err(errno)?;
                rfs::fchown(f.as_fd(), Some(rfs::Uid::ROOT), Some(rfs::Gid::ROOT))
                    .map_err(errno)?;
                let _ = rfs::futimens(f.as_fd(), &times);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| bad("symlink without a target".into()))?
                    .into_owned();
                unlink_any(&dir, &name).map_err(io)?;
                rfs::symlinkat(&target, &dir, &name).map_err(errno)?;
                let _ = rfs::chownat(
                    &dir,
                    &name,
                    Some(rfs::Uid::ROOT),
                    Some(rfs::Gid::ROOT),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| bad("hard link without a target".into()))?
                    .into_owned();
                let trel = entry_rel(&target).map_err(&bad)?;
                let src = open_in_root(&root, &base.join(trel), OFlags::PATH | OFlags::NOFOLLOW)
                    .map_err(io)?;
                unlink_any(&dir, &name).map_err(io)?;
                rfs::linkat(&src, "", &dir, &name, AtFlags::EMPTY_PATH).map_err(errno)?;
            }
            tar::EntryType::Fifo => {
                unlink_any(&dir, &name).map_err(io)?;
                rfs::mknodat(&dir, &name, rfs::FileType::Fifo, mode, 0).map_err(errno)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                tracing::warn!(entry = %shown, "docker cp: device node not extracted");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(normalize("/a/../b"), "/b");
        assert_eq!(normalize("../../etc//x/."), "/etc/x");
        assert_eq!(normalize(""), "/");
        assert_eq!(basename("/data/"), "data");
        assert_eq!(basename("/"), "/");
    }

    use super::*;

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/hostname"), "box\n").unwrap();
        std::fs::write(r.join("etc/sub/a"), "A").unwrap();
        std::os::unix::fs::symlink("/", r.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", r.join("hn")).unwrap();
        d
    }

    #[test]
    fn splits_paths() {
        assert_eq!(
            split("/etc/hostname"),
            Split {
                parent: "etc".into(),
                name: Some("hostname".into()),
                follow: false
            }
        );
        assert_eq!(split("/").name, None);
        assert!(split("/etc/").follow);
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let d = fixture();
        // "/escape" -> "/" is the container's root, not the host's.
        let root = open_root(d.path()).unwrap();
        let fd = open_in_root(&root, Path::new("escape/etc/hostname"), OFlags::RDONLY).unwrap();
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "box\n");
        // ".." chains clamp at the root too.
        let fd = open_in_root(&root, Path::new("etc/up/sub/a"), OFlags::RDONLY).unwrap();
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "A");
        // The host's /etc/passwd is not reachable through the symlink.
        assert!(matches!(
            stat(d.path(), "/escape/etc/passwd"),
            Err(ArchiveError::NotFound { .. })
        ));
    }

    #[test]
    fn stat_reports_modes_and_link_targets() {
        let d = fixture();
        let s = stat(d.path(), "/etc/hostname").unwrap();
        assert_eq!(s.name, "hostname");
        assert_eq!(s.size, 4);
        assert_eq!(s.link_target, "");
        let s = stat(d.path(), "/etc").unwrap();
        assert_eq!(s.mode & libc::S_IFMT, libc::S_IFDIR);
        let s = stat(d.path(), "/hn").unwrap();
        assert_eq!(s.mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(s.link_target, "/etc/hostname");
        assert!(matches!(
            stat(d.path(), "/nope"),
            Err(ArchiveError::NotFound { .. })
        ));
    }

    #[test]
    fn get_names_the_top_entry_by_basename() {
        let d = fixture();
        let mut buf = Vec::new();
        get_named(d.path(), "/etc", None, &mut buf).unwrap();
        let mut ar = tar::Archive::new(buf.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"etc".to_string()) || names.contains(&"etc/".to_string()));
        assert!(names.contains(&"etc/hostname".to_string()));
        assert!(names.contains(&"etc/sub/a".to_string()));
        // The escaping symlink is archived as a link, not followed.
        let mut buf = Vec::new();
        get_named(d.path(), "/escape", None, &mut buf).unwrap();
        let mut ar = tar::Archive::new(buf.as_slice());
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o640);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Write the name raw so "../" names can be tested.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn put_extracts_and_refuses_escapes() {
        let d = fixture();
        let t = tar_of(&[
            ("new/", tar::EntryType::Directory, b"", None),
            ("new/f", tar::EntryType::Regular, b"data", None),
            ("new/l", tar::EntryType::Symlink, b"", Some("/etc/hostname")),
        ]);
        put(d.path(), "/etc", &mut t.as_slice()).unwrap();
        assert_eq!(std::fs::read(d.path().join("etc/new/f")).unwrap(), b"data");
        let m = std::fs::metadata(d.path().join("etc/new/f")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(m.permissions().mode() & 0o777, 0o640);

        // Extracting "through" the escape symlink lands inside the root.
        let t = tar_of(&[("x", tar::EntryType::Regular, b"in", None)]);
        put(d.path(), "/escape/etc", &mut t.as_slice()).unwrap();
        assert_eq!(std::fs::read(d.path().join("etc/x")).unwrap(), b"in");

        // A file written over a symlink replaces the link, not its target.
        let t = tar_of(&[("hn", tar::EntryType::Regular, b"over", None)]);
        put(d.path(), "/", &mut t.as_slice()).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("etc/hostname")).unwrap(),
            b"box\n"
        );
        assert_eq!(std::fs::read(d.path().join("hn")).unwrap(), b"over");

        let t = tar_of(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(matches!(
            put(d.path(), "/etc", &mut t.as_slice()),
            Err(ArchiveError::Entry { .. })
        ));
        assert!(matches!(
            put(d.path(), "/etc/hostname", &mut t.as_slice()),
            Err(ArchiveError::NotDir { .. })
        ));
        assert!(matches!(
            put(d.path(), "/missing", &mut t.as_slice()),
            Err(ArchiveError::NotFound { .. })
        ));
    }
}

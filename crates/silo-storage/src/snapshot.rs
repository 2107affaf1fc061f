//! Container filesystems: an overlayfs per container whose lower dirs are the
//! image's layers (topmost first) and whose upper/work dirs are private to it —
//! the Linux stand-in for a Windows container's sandbox disk.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fsutil::{self, is_mounted, tree_size, write_atomic};
use crate::{NotFound, Store};

/// What a snapshot is made of (snapshots/<cid>/meta.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    pub image_id: String,
    /// Bottom layer first, as in the image config.
    pub diff_ids: Vec<String>,
    /// Mounted with overlayfs `volatile`: no syncs of the upper layer, so
    /// unmounting does not wait for a filesystem sync. For snapshots that
    /// are thrown away when their container exits (`--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volatile: bool,
    /// The size of the container's own disk (`disk.img`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
}

/// How to make a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Never sync the upper layer (containers removed when they exit).
    pub volatile: bool,
    /// Give the container a disk of this many bytes for what it writes.
    pub disk_size: Option<u64>,
}

/// The disk image in a snapshot directory.
pub(crate) const DISK_IMAGE: &str = "disk.img";
/// Names where a snapshot is attached on the host (`silo sandbox attach`).
pub(crate) const ATTACHED: &str = "attached";

/// A snapshot operation failed.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("container {id}: a sandbox disk of {size} bytes is too small (at least 16MiB)")]
    DiskSize { id: String, size: u64 },
    #[error("no sandbox is attached at {}", path.display())]
    NotAttached { path: PathBuf },
    #[error("container {id}: its sandbox is attached at {}; detach it first (silo sandbox detach {})", path.display(), path.display())]
    Attached { id: String, path: PathBuf },
    #[error(
        "invalid container id {id:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters"
    )]
    BadId { id: String },
    #[error("snapshot for container {id}: {source}")]
    Image { id: String, source: NotFound },
    #[error("snapshot for container {id} already exists from image {image_id}")]
    Exists { id: String, image_id: String },
    #[error("no snapshot for container {id}")]
    NoSuchSnapshot { id: String },
    #[error("snapshot for container {id}: mounting overlay at {path}: {source}")]
    Mount {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("snapshot for container {id}: unmounting {path}: {source}")]
    Unmount {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("snapshot for container {id}: {path} is still mounted; refusing to delete")]
    StillMounted { id: String, path: PathBuf },
    #[error("snapshot for container {id}: {op} {path}: {source}")]
    Io {
        id: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("exporting container {id}: {source}")]
    Export { id: String, source: io::Error },
}

fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(mountinfo: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string(mountinfo)?;
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(mp.replace("\\040", " ")))
        .filter(|mp| mp.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

pub(crate) fn unmount_path(p: &Path) -> io::Result<()> {
    match rustix::mount::unmount(p, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(p, UnmountFlags::DETACH).map_err(io::Error::from)
        }
        // Not a mount point (any more).
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One entry of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute, inside the container.
    pub path: String,
    pub kind: ChangeKind,
}

/// What happened to a path (Docker's Kind 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

/// The directories of a container's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    /// The container's root filesystem while mounted.
    pub merged: PathBuf,
    /// What the container wrote.
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// Mounts overlayfs at `<dir>/merged` over `lowers` with `<dir>/upper` and
/// `<dir>/work`. Uses the new mount API with one `lowerdir+` per layer (no
/// page-size limit on the option string), falling back to mount(2) with a
/// `lowerdir=a:b` string on kernels without it.
fn mount_overlay(lowers: &[PathBuf], paths: &SnapshotPaths, volatile: bool) -> io::Result<()> {
    match mount_overlay_once(lowers, paths, volatile) {
        // Kernels before 5.10 have no `volatile`: mount without it.
        Err(e) if volatile && e.raw_os_error() == Some(libc::EINVAL) => {
            mount_overlay_once(lowers, paths, false)
        }
        other => other,
    }
}

fn mount_overlay_once(lowers: &[PathBuf], paths: &SnapshotPaths, volatile: bool) -> io::Result<()> {
    let (upper, work, merged) = (
        paths.upper.as_path(),
        paths.work.as_path(),
        paths.merged.as_path(),
    );
    if volatile {
        // overlayfs refuses to mount a volatile work dir it used before
        // (it cannot know whether the upper layer survived a crash). Our
        // volatile snapshots are discarded with their container, so a
        // remount (restart of a --rm container) accepts the upper as is.
        let marker = work.join("work").join("incompat").join("volatile");
        if marker.exists() {
            fs::remove_dir_all(&marker)?;
        }
    }
    let new_api = (|| -> rustix::io::Result<()> {
        let fs_fd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in lowers {
            rustix::mount::fsconfig_set_string(&fs_fd, "lowerdir+", l.as_path())?;
        }
        rustix::mount::fsconfig_set_string(&fs_fd, "upperdir", upper)?;
        rustix::mount::fsconfig_set_string(&fs_fd, "workdir", work)?;
        if volatile {
            rustix::mount::fsconfig_set_flag(&fs_fd, "volatile")?;
        }
        rustix::mount::fsconfig_create(&fs_fd)?;
        let mnt = rustix::mount::fsmount(
            &fs_fd,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::empty(),
        )?;
        rustix::mount::move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            merged,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })();
    match new_api {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::INVAL) => {
            let esc = |p: &Path| p.to_string_lossy().replace(':', "\\:");
            let lower: Vec<String> = lowers.iter().map(|p| esc(p)).collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={}{}",
                lower.join(":"),
                upper.display(),
                work.display(),
                if volatile { ",volatile" } else { "" }
            );
            let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
            rustix::mount::mount(
                "overlay",
                merged,
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

impl Store {
    pub(crate) fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    fn check_id(id: &str) -> Result<(), SnapshotError> {
        if valid_id(id) {
            Ok(())
        } else {
            Err(SnapshotError::BadId { id: id.to_string() })
        }
    }

    /// Refuses while the snapshot at `dir` is attached on the host (its disk
    /// must never be mounted twice).
    pub(crate) fn check_not_attached(dir: &Path, id: &str) -> Result<(), SnapshotError> {
        match fs::read_to_string(dir.join(ATTACHED)) {
            Ok(target) => Err(SnapshotError::Attached {
                id: id.to_string(),
                path: PathBuf::from(target),
            }),
            Err(_) => Ok(()),
        }
    }

    /// Mounts the snapshot's own disk (if it has one) unless mounted, with
    /// the upper and work directories on it.
    pub(crate) fn ensure_disk(&self, id: &str, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        if meta.disk_size.is_none() {
            return Ok(());
        }
        let dir = self.snapshot_dir(id);
        let mnt = dir.join("disk");
        let mount_err = |source| SnapshotError::Mount {
            id: id.to_string(),
            path: mnt.clone(),
            source,
        };
        Self::check_not_attached(&dir, id)?;
        if !is_mounted(&self.mountinfo, &mnt).map_err(mount_err)? {
            crate::disk::mount(&dir.join(DISK_IMAGE), &mnt, false).map_err(mount_err)?;
        }
        for sub in ["upper", "work"] {
            let p = mnt.join(sub);
            if !p.is_dir() {
                fs::create_dir(&p).map_err(mount_err)?;
            }
        }
        Ok(())
    }

    /// Mounts the overlay of an existing snapshot unless already mounted.
    fn mount_meta(&self, id: &str, meta: &SnapshotMeta) -> Result<PathBuf, SnapshotError> {
        let dir = self.snapshot_dir(id);
        let merged = dir.join("merged");
        let mount_err = |source| SnapshotError::Mount {
            id: id.to_string(),
            path: merged.clone(),
            source,
        };
        if is_mounted(&self.mountinfo, &merged).map_err(mount_err)? {
            return Ok(merged);
        }
        Self::check_not_attached(&dir, id)?;
        self.ensure_disk(id, meta)?;
        let lowers: Vec<PathBuf> = meta
            .diff_ids
            .iter()
            .rev()
            .map(|d| self.layer_path(d))
            .collect();
        for l in &lowers {
            if !l.is_dir() {
                return Err(mount_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("layer directory {} is missing", l.display()),
                )));
            }
        }
        mount_overlay(&lowers, &self.snapshot_paths(id), meta.volatile).map_err(mount_err)?;
        Ok(merged)
    }

    /// Creates the snapshot for `container_id` from image `image_id` (any form
    /// [`Store::image`] accepts) and mounts it; returns the merged dir. Calling
    /// it again for the same image just makes sure it is mounted.
    pub fn create_snapshot(
        &self,
        container_id: &str,
        image_id: &str,
    ) -> Result<PathBuf, SnapshotError> {
        self.create_snapshot_with(container_id, image_id, false)
    }

    /// [`Store::create_snapshot`], optionally `volatile`: the upper layer is
    /// never synced (unmount is then cheap), and after a host crash its
    /// content is not to be trusted. For containers removed when they exit.
    pub fn create_snapshot_with(
        &self,
        container_id: &str,
        image_id: &str,
        volatile: bool,
    ) -> Result<PathBuf, SnapshotError> {
        self.create_snapshot_opts(
            container_id,
            image_id,
            SnapshotOptions {
                volatile,
                disk_size: None,
            },
        )
    }

    /// [`Store::create_snapshot`] with options (volatile, a disk of its own).
    pub fn create_snapshot_opts(
        &self,
        container_id: &str,
        image_id: &str,
        opts: SnapshotOptions,
    ) -> Result<PathBuf, SnapshotError> {
        let volatile = opts.volatile;
        Self::check_id(container_id)?;
        if let Some(size) = opts.disk_size {
            if size < crate::disk::MIN_DISK {
                return Err(SnapshotError::DiskSize {
                    id: container_id.to_string(),
                    size,
                });
            }
        }
        let id = container_id.to_string();
        let mut st = self.lock();
        let (h, _) = Self::resolve(&st, image_id).map_err(|source| SnapshotError::Image {
            id: id.clone(),
            source,
        })?;
        let full = format!("sha256:{h}");
        if let Some(m) = st.snapshot(&self.root, container_id) {
            if m.image_id != full {
                return Err(SnapshotError::Exists {
                    id,
                    image_id: m.image_id.clone(),
                });
            }
            let m = m.clone();
            return self.mount_meta(container_id, &m);
        }
        let diff_ids = st
            .images
            .get(&h)
            .map(|c| c.rootfs.diff_ids.clone())
            .unwrap_or_default();
        let meta = SnapshotMeta {
            image_id: full,
            diff_ids,
            volatile,
            disk_size: opts.disk_size,
        };
        let dir = self.snapshot_dir(container_id);
        let tmp = fsutil::tmp_sibling(&dir);
        let io_err = |op: &'static str, path: &Path| {
            let (id, path) = (id.clone(), path.to_path_buf());
            move |source| SnapshotError::Io {
                id,
                op,
                path,
                source,
            }
        };
        let build = (|| {
            let subs: &[&str] = if opts.disk_size.is_some() {
                &["", "disk", "merged"]
            } else {
                &["", "upper", "work", "merged"]
            };
            for sub in subs {
                let p = tmp.join(sub);
                fs::create_dir(&p).map_err(io_err("creating", &p))?;
            }
            if let Some(size) = opts.disk_size {
                let img = tmp.join(DISK_IMAGE);
                crate::disk::create(&img, size).map_err(io_err("making the disk", &img))?;
            }
            let bytes = serde_json::to_vec(&meta)
                .map_err(|e| io_err("encoding", &tmp)(io::Error::other(e)))?;
            let mp = tmp.join("meta.json");
            write_atomic(&mp, &bytes).map_err(io_err("writing", &mp))?;
            fs::rename(&tmp, &dir).map_err(io_err("renaming into place", &dir))
        })();
        if let Err(e) = build {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match self.mount_meta(container_id, &meta) {
            Ok(merged) => {
                st.snapshots.insert(id, Some(meta));
                Ok(merged)
            }
            Err(e) => {
                let _ = self.unmount_locked(container_id);
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Where a container's snapshot lives (whether or not it exists).
    pub fn snapshot_paths(&self, container_id: &str) -> SnapshotPaths {
        let dir = self.snapshot_dir(container_id);
        // With a disk of its own, what the container writes is on the disk.
        let rw = if dir.join(DISK_IMAGE).exists() {
            dir.join("disk")
        } else {
            dir.clone()
        };
        SnapshotPaths {
            merged: dir.join("merged"),
            upper: rw.join("upper"),
            work: rw.join("work"),
        }
    }

    /// Mounts an existing snapshot (no-op when mounted); returns the merged dir.
    pub fn mount_snapshot(&self, container_id: &str) -> Result<PathBuf, SnapshotError> {
        Self::check_id(container_id)?;
        let mut st = self.lock();
        let meta =
            st.snapshot(&self.root, container_id)
                .ok_or_else(|| SnapshotError::NoSuchSnapshot {
                    id: container_id.to_string(),
                })?;
        self.mount_meta(container_id, meta)
    }

    pub(crate) fn unmount_locked(&self, container_id: &str) -> Result<(), SnapshotError> {
        let dir = self.snapshot_dir(container_id);
        let err = |path: &Path| {
            let (id, path) = (container_id.to_string(), path.to_path_buf());
            move |source| SnapshotError::Unmount { id, path, source }
        };
        for mp in mounts_under(&self.mountinfo, &dir).map_err(err(&dir))? {
            unmount_path(&mp).map_err(err(&mp))?;
        }
        Ok(())
    }

    /// Unmounts the snapshot's overlay (and anything mounted below it).
    /// Not mounted is fine.
    pub fn unmount_snapshot(&self, container_id: &str) -> Result<(), SnapshotError> {
        Self::check_id(container_id)?;
        let st = self.lock();
        if !st.snapshots.contains_key(container_id) {
            return Err(SnapshotError::NoSuchSnapshot {
                id: container_id.to_string(),
            });
        }
        self.unmount_locked(container_id)
    }

    /// Unmounts and deletes the snapshot. A snapshot that does not exist is fine.
    pub fn remove_snapshot(&self, container_id: &str) -> Result<(), SnapshotError> {
        Self::check_id(container_id)?;
        let mut st = self.lock();
        let dir = self.snapshot_dir(container_id);
        self.detach_of(container_id);
        self.unmount_locked(container_id)?;
        let left =
            mounts_under(&self.mountinfo, &dir).map_err(|source| SnapshotError::Unmount {
                id: container_id.to_string(),
                path: dir.clone(),
                source,
            })?;
        if let Some(p) = left.into_iter().next() {
            return Err(SnapshotError::StillMounted {
                id: container_id.to_string(),
                path: p,
            });
        }
        // Read the metadata (lazily loaded) before its file goes with the tree.
        st.snapshot(&self.root, container_id);
        crate::remove_tree(&dir).map_err(|source| SnapshotError::Io {
            id: container_id.to_string(),
            op: "deleting",
            path: dir.clone(),
            source,
        })?;
        // Layers of an image deleted while this container still used them.
        if let Some(meta) = st.snapshots.remove(container_id).flatten() {
            for d in &meta.diff_ids {
                self.drop_layer_if_unused(&mut st, d)
                    .map_err(|(op, path, source)| SnapshotError::Io {
                        id: container_id.to_string(),
                        op,
                        path,
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// What the container changed in its filesystem (`docker diff`), from
    /// its upper dir: an overlay whiteout is a deletion; an entry that a
    /// layer below also has is a change (a directory holding changes is
    /// one too, as in Docker); anything else was added. Sorted by path.
    pub fn changes(&self, container_id: &str) -> Result<Vec<Change>, SnapshotError> {
        Self::check_id(container_id)?;
        let lowers: Vec<PathBuf> = {
            let mut st = self.lock();
            let meta = st.snapshot(&self.root, container_id).ok_or_else(|| {
                SnapshotError::NoSuchSnapshot {
                    id: container_id.to_string(),
                }
            })?;
            let meta = meta.clone();
            self.ensure_disk(container_id, &meta)?;
            meta.diff_ids.iter().map(|d| self.layer_path(d)).collect()
        };
        let upper = self.snapshot_paths(container_id).upper;
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = upper.join(&rel);
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(SnapshotError::Io {
                        id: container_id.to_string(),
                        op: "reading",
                        path: dir,
                        source,
                    })
                }
            };
            for e in entries.flatten() {
                let rel = rel.join(e.file_name());
                let Ok(meta) = e.metadata() else { continue };
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
                // Lower paths are only looked at, never followed out of the layer.
                let below = lowers
                    .iter()
                    .any(|l| std::fs::symlink_metadata(l.join(&rel)).is_ok());
                let kind = if whiteout {
                    ChangeKind::Deleted
                } else if below {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                out.push(Change {
                    path: format!("/{}", rel.display()),
                    kind,
                });
                if meta.is_dir() {
                    stack.push(rel);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Bytes written by the container (its upper dir).
    pub fn snapshot_size(&self, container_id: &str) -> u64 {
        if !valid_id(container_id) {
            return 0;
        }
        tree_size(&self.snapshot_paths(container_id).upper)
    }

    /// `docker export`: writes a tar of the container's merged filesystem to
    /// `out`, mounting the snapshot for the duration if it was not mounted.
    pub fn export_snapshot(
        &self,
        container_id: &str,
        out: impl Write,
    ) -> Result<(), SnapshotError> {
        Self::check_id(container_id)?;
        let (merged, mounted_here) = {
            let mut st = self.lock();
            let meta = st.snapshot(&self.root, container_id).ok_or_else(|| {
                SnapshotError::NoSuchSnapshot {
                    id: container_id.to_string(),
                }
            })?;
            let merged = self.snapshot_dir(container_id).join("merged");
            let was = is_mounted(&self.mountinfo, &merged).unwrap_or(false);
            self.mount_meta(container_id, meta)?;
            (merged, !was)
        };
        let res = write_tree_tar(&merged, out, false).map_err(|source| SnapshotError::Export {
            id: container_id.to_string(),
            source,
        });
        if mounted_here {
            let _st = self.lock();
            let r = self.unmount_locked(container_id);
            res?;
            return r;
        }
        res
    }
}

/// Writes every file under `dir` (sorted, not following symlinks, sockets
/// skipped) to a tar stream on `out`, with paths relative to `dir`. With
/// `overlay`, `dir` is an overlay upper dir and its whiteouts become the
/// image-spec ones: a 0:0 character device `x` is written as an empty
/// `.wh.x`, an opaque directory gets a `.wh..wh..opq` entry.
pub(crate) fn write_tree_tar(dir: &Path, out: impl Write, overlay: bool) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&full)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        // Push in reverse so the walk comes out in order.
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let p = dir.join(&r);
            let md = fs::symlink_metadata(&p)?;
            let ft = md.file_type();
            let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
            if ft.is_socket() {
                continue;
            }
            if overlay && ft.is_char_device() && md.rdev() == 0 {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                let mut wh = std::ffi::OsString::from(".wh.");
                wh.push(&n);
                b.append_data(&mut h, rel.join(wh), io::empty())
                    .map_err(named)?;
                continue;
            }
            if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
                // Built by hand: the tar crate's own path for special files
                // mishandles relative names.
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                h.set_size(0);
                b.append_data(&mut h, &r, io::empty()).map_err(named)?;
            } else {
                b.append_path_with_name(&p, &r).map_err(named)?;
            }
            if ft.is_dir() {
                if overlay && is_opaque(&p) {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_data(&mut h, r.join(".wh..wh..opq"), io::empty())
                        .map_err(named)?;
                }
                subdirs.push(r);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    b.into_inner()?.flush()
}

/// Whether an overlay upper directory is marked opaque.
fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        assert!(valid_id("abc123"));
        assert!(valid_id("my_ctr.1-x"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(129)));
    }

    #[test]
    fn mounts_under_sorts_deepest_first() {
        let d = tempfile::tempdir().unwrap();
        let mi = d.path().join("mi");
        fs::write(
            &mi,
            "1 0 0:1 / /s/c rw - x x rw\n2 1 0:2 / /s/c/m/proc rw - x x rw\n3 0 0:3 / /s/cd rw - x x rw\n",
        )
        .unwrap();
        let v = mounts_under(&mi, Path::new("/s/c")).unwrap();
        assert_eq!(v, [PathBuf::from("/s/c/m/proc"), PathBuf::from("/s/c")]);
    }
}

//! The host's view of a stopped container's sandbox (`diskpart attach
//! vdisk` on Windows): its disk mounted read-only somewhere on the host, or
//! for a container without a disk its upper directory bind-mounted
//! read-only; and a disk image file of it for export. While attached, the
//! container cannot start (its disk must never be mounted twice).

use std::fs;
use std::path::{Path, PathBuf};

use crate::fsutil::{is_mounted, random_hex, tree_size, write_atomic, TMP_PREFIX};
use crate::snapshot::{unmount_path, ATTACHED, DISK_IMAGE};
use crate::{SnapshotError, Store};

impl Store {
    /// Mounts container `id`'s sandbox read-only at `target` (an existing
    /// directory). The container must be stopped; its overlay is unmounted.
    pub fn attach_sandbox(&self, id: &str, target: &Path) -> Result<(), SnapshotError> {
        let _st = self.lock();
        let dir = self.snapshot_dir(id);
        if !dir.is_dir() {
            return Err(SnapshotError::NoSuchSnapshot { id: id.to_string() });
        }
        Self::check_not_attached(&dir, id)?;
        let err = |source| SnapshotError::Mount {
            id: id.to_string(),
            path: target.to_path_buf(),
            source,
        };
        let target = target.canonicalize().map_err(err)?;
        if !target.is_dir() {
            return Err(err(std::io::Error::other("not a directory")));
        }
        self.unmount_locked(id)?;
        let image = dir.join(DISK_IMAGE);
        if image.exists() {
            crate::disk::mount(&image, &target, true).map_err(err)?;
        } else {
            let upper = self.snapshot_paths(id).upper;
            rustix::mount::mount_bind(&upper, &target).map_err(|e| err(e.into()))?;
            let ro = rustix::mount::mount_remount(
                &target,
                rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                c"",
            );
            if let Err(e) = ro {
                let _ = unmount_path(&target);
                return Err(err(e.into()));
            }
        }
        let record = dir.join(ATTACHED);
        if let Err(e) = write_atomic(&record, target.as_os_str().as_encoded_bytes()) {
            let _ = unmount_path(&target);
            return Err(SnapshotError::Io {
                id: id.to_string(),
                op: "recording the attachment in",
                path: record,
                source: e,
            });
        }
        Ok(())
    }

    /// Undoes [`Store::attach_sandbox`] at `target`; returns the container id.
    pub fn detach_sandbox(&self, target: &Path) -> Result<String, SnapshotError> {
        let _st = self.lock();
        let want = target
            .canonicalize()
            .unwrap_or_else(|_| target.to_path_buf());
        let snaps = self.root.join("snapshots");
        for e in fs::read_dir(&snaps).into_iter().flatten().flatten() {
            let record = e.path().join(ATTACHED);
            let Ok(t) = fs::read_to_string(&record) else {
                continue;
            };
            if Path::new(&t) != want {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            if is_mounted(&self.mountinfo, &want).unwrap_or(true) {
                unmount_path(&want).map_err(|source| SnapshotError::Unmount {
                    id: id.clone(),
                    path: want.clone(),
                    source,
                })?;
            }
            fs::remove_file(&record).map_err(|source| SnapshotError::Io {
                id: id.clone(),
                op: "removing",
                path: record,
                source,
            })?;
            return Ok(id);
        }
        Err(SnapshotError::NotAttached { path: want })
    }

    /// Detaches whatever of container `id` is attached (teardown).
    pub(crate) fn detach_of(&self, id: &str) {
        let record = self.snapshot_dir(id).join(ATTACHED);
        if let Ok(t) = fs::read_to_string(&record) {
            let _ = unmount_path(Path::new(&t));
            let _ = fs::remove_file(&record);
        }
    }

    /// A raw ext4 image of container `id`'s sandbox, for export: its own
    /// disk (unmounted first; the container must be stopped), or one built
    /// from its upper directory. The bool says the file is a temporary the
    /// caller deletes.
    pub fn sandbox_image(&self, id: &str) -> Result<(PathBuf, bool), SnapshotError> {
        let _st = self.lock();
        let dir = self.snapshot_dir(id);
        if !dir.is_dir() {
            return Err(SnapshotError::NoSuchSnapshot { id: id.to_string() });
        }
        Self::check_not_attached(&dir, id)?;
        let image = dir.join(DISK_IMAGE);
        if image.exists() {
            self.unmount_locked(id)?;
            return Ok((image, false));
        }
        let upper = self.snapshot_paths(id).upper;
        let tmp = self
            .root
            .join("blobs")
            .join("sha256")
            .join(format!("{TMP_PREFIX}sandbox-{}.img", random_hex(8)));
        let size = tree_size(&upper) * 2 + (64 << 20);
        crate::disk::create_from_dir(&tmp, &upper, size).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            SnapshotError::Io {
                id: id.to_string(),
                op: "building a disk image of",
                path: upper.clone(),
                source,
            }
        })?;
        Ok((tmp, true))
    }
}

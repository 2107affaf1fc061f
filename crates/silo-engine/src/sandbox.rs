//! A stopped container's sandbox seen from the host: attached read-only at
//! a directory, detached, or exported as a disk image (raw ext4, or VHDX and
//! qcow2 through `qemu-img`, so it opens in Hyper-V and QEMU).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::error::{Error, Kind, Result};
use crate::Engine;

/// Formats `silo sandbox export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Vhdx,
    Qcow2,
}

impl DiskFormat {
    pub fn parse(s: &str) -> Option<DiskFormat> {
        match s {
            "raw" => Some(DiskFormat::Raw),
            "vhdx" => Some(DiskFormat::Vhdx),
            "qcow2" => Some(DiskFormat::Qcow2),
            _ => None,
        }
    }

    fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

fn snapshot_error(id: &str, e: silo_storage::SnapshotError) -> Error {
    use silo_storage::SnapshotError as S;
    match e {
        S::Attached { .. } => Error::conflict(e.to_string()),
        S::NotAttached { .. } => Error::invalid("path", e.to_string()),
        S::NoSuchSnapshot { .. } => Error::not_found(Kind::Container, id),
        S::Mount { .. } => Error::invalid("path", e.to_string()),
        other => Error::internal("sandbox", other),
    }
}

impl Engine {
    fn stopped(&self, id: &str) -> Result<crate::Container> {
        let c = self.container(id)?;
        if c.state.status.run().is_some() || matches!(c.state.status, crate::Status::Restarting(_))
        {
            return Err(Error::conflict(format!(
                "container {} is running: stop it before using its sandbox from the host",
                c.name
            )));
        }
        Ok(c)
    }

    /// Mounts a stopped container's sandbox read-only at `target`.
    pub fn attach_sandbox(&self, id: &str, target: &Path) -> Result<()> {
        let c = self.stopped(id)?;
        let lock = self.op_lock(&c.id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.storage
            .attach_sandbox(&c.id, target)
            .map_err(|e| snapshot_error(&c.id, e))
    }

    /// Unmounts what [`Engine::attach_sandbox`] mounted at `target`.
    pub fn detach_sandbox(&self, target: &Path) -> Result<String> {
        self.storage
            .detach_sandbox(target)
            .map_err(|e| snapshot_error("", e))
    }

    /// Writes a stopped container's sandbox as a disk image to `out`.
    pub fn export_sandbox(&self, id: &str, format: DiskFormat, out: &mut dyn Write) -> Result<()> {
        let c = self.stopped(id)?;
        let lock = self.op_lock(&c.id);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (image, temporary) = self
            .storage
            .sandbox_image(&c.id)
            .map_err(|e| snapshot_error(&c.id, e))?;
        let result = (|| {
            let converted = image.with_extension(format!("export.{}", format.qemu_name()));
            let run = Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", format.qemu_name()])
                .arg(&image)
                .arg(&converted)
                .output()
                .map_err(|e| {
                    Error::Unavailable(format!(
                        "running qemu-img (install Debian's qemu-utils): {e}"
                    ))
                })?;
            let copied = if run.status.success() {
                std::fs::File::open(&converted)
                    .and_then(|mut f| {
                        let mut buf = vec![0u8; 1 << 20];
                        loop {
                            let n = f.read(&mut buf)?;
                            if n == 0 {
                                break Ok(());
                            }
                            out.write_all(&buf[..n])?;
                        }
                    })
                    .map_err(|e| Error::internal("writing the disk image", e))
            } else {
                Err(Error::internal(
                    "converting the disk image",
                    std::io::Error::other(String::from_utf8_lossy(&run.stderr).trim().to_string()),
                ))
            };
            let _ = std::fs::remove_file(&converted);
            copied
        })();
        if temporary {
            let _ = std::fs::remove_file(&image);
        }
        result
    }
}

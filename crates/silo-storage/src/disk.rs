//! The per-container sandbox disk (Windows' `sandbox.vhdx`): a sparse file
//! formatted ext4, attached to a loop device and mounted; the overlay's
//! upper and work directories live on it, so a container can write at most
//! the disk's size (ENOSPC inside, nothing outside). Loop devices are set up
//! with `LOOP_CONFIGURE` and autoclear, so unmounting the disk frees its
//! loop device; no loop is ever tracked by hand.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// The smallest disk accepted: ext4 with a journal needs a few MiB.
pub const MIN_DISK: u64 = 16 << 20;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Creates a sparse file of `size` bytes at `path` and formats it ext4.
pub(crate) fn create(path: &Path, size: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.set_len(size)?;
    drop(f);
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "silo-sandbox"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(path)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running mke2fs (e2fsprogs): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mke2fs {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Builds an ext4 image at `path` holding the files of `dir` (for the
/// export of a container that has no disk of its own).
pub(crate) fn create_from_dir(path: &Path, dir: &Path, size: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.set_len(size.max(MIN_DISK))?;
    drop(f);
    let out = Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-m",
            "0",
            "-L",
            "silo-sandbox",
            "-d",
        ])
        .arg(dir)
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mke2fs -d {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Attaches `image` to a free loop device (autoclear) and mounts it at
/// `target`; read-only when asked. The loop device goes away with the mount.
pub(crate) fn mount(image: &Path, target: &Path, read_only: bool) -> io::Result<()> {
    let backing = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(image)?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let dev_path = format!("/dev/loop{n}");
        let dev: File = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&dev_path)?;
        let mut flags = LO_FLAGS_AUTOCLEAR;
        if read_only {
            flags |= LO_FLAGS_READ_ONLY;
        }
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: flags,
                lo_file_name: [0; 64],
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: `cfg` is a valid, initialised loop_config that outlives
        // the call; the kernel only reads it.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // Taken by someone else between GET_FREE and CONFIGURE: next one.
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(io::Error::new(
                e.kind(),
                format!("configuring {dev_path}: {e}"),
            ));
        }
        let src = CString::new(dev_path.clone()).map_err(io::Error::other)?;
        let flags = if read_only {
            rustix::mount::MountFlags::RDONLY
        } else {
            rustix::mount::MountFlags::NOATIME
        };
        let mounted = rustix::mount::mount(src.as_c_str(), target, "ext4", flags, c"");
        // Closing `dev` now: with autoclear the device detaches once the
        // mount (if any) is gone.
        drop(dev);
        return mounted.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "mounting {} ({dev_path}) at {}: {e}",
                    image.display(),
                    target.display()
                ),
            )
        });
    }
    Err(io::Error::other("no free loop device"))
}

//! Pinned namespaces: a network, IPC or UTS namespace made before any
//! process lives in it and kept alive by a bind mount of its nsfs file
//! (what `ip netns add` does), so it can be configured first (a network
//! service moves a veth into it) and then joined by path, by one
//! container or by every container of a pod.
//!
//! The namespaces are made by `unshare` on a thread of their own, which
//! ends right after: `unshare` and `setns` act on the calling thread only,
//! so this never disturbs the caller's threads (an async runtime's
//! workers above all).

use crate::ns::clone_flag;
use silo_oci::NamespaceType;
use std::path::{Path, PathBuf};

/// nsfs's `f_type` (linux/magic.h).
/// The file system type of namespace files (`NSFS_MAGIC`).
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Why a namespace could not be pinned or released.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0} namespaces cannot be pinned (only network, ipc and uts)")]
    Unsupported(&'static str),
    #[error("pinning namespaces: unshare: {0}")]
    Unshare(std::io::Error),
    #[error("pinning namespaces: bringing loopback up: {0}")]
    Loopback(std::io::Error),
    #[error("pinning namespaces: setting the hostname {hostname:?}: {source}")]
    Hostname {
        hostname: String,
        source: std::io::Error,
    },
    #[error("pinning the {typ} namespace at {path}: {source}")]
    Pin {
        typ: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("releasing the pinned namespace at {path}: {source}")]
    Unpin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pinning namespaces: the pinning thread: {0}")]
    Thread(std::io::Error),
}

/// Makes a new namespace of each listed type and pins it at its path (a
/// file, created). A new network namespace gets its loopback up; a new
/// UTS namespace gets `hostname`. On failure nothing stays pinned.
pub fn pin(ns: &[(NamespaceType, PathBuf)], hostname: Option<&str>) -> Result<(), PinError> {
    let mut flags = 0;
    for (t, _) in ns {
        match t {
            NamespaceType::Network | NamespaceType::Ipc | NamespaceType::Uts => {
                flags |= clone_flag(*t)
            }
            other => return Err(PinError::Unsupported(other.name())),
        }
    }
    let ns = ns.to_vec();
    let hostname = hostname.map(str::to_string);
    let worker = std::thread::Builder::new()
        .name("ns-pin".into())
        .spawn(move || pin_here(flags, &ns, hostname.as_deref()))
        .map_err(PinError::Thread)?;
    match worker.join() {
        Ok(r) => r,
        Err(_) => Err(PinError::Thread(std::io::Error::other(
            "the pinning thread panicked",
        ))),
    }
}

/// Runs on the throw-away thread: unshare, configure, bind-mount.
fn pin_here(
    flags: i32,
    ns: &[(NamespaceType, PathBuf)],
    hostname: Option<&str>,
) -> Result<(), PinError> {
    // SAFETY: unshare takes flags only; it changes this thread alone for
    // the namespace types pinned here (net, ipc, uts).
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(PinError::Unshare(std::io::Error::last_os_error()));
    }
    if flags & libc::CLONE_NEWNET != 0 {
        loopback_up().map_err(PinError::Loopback)?;
    }
    if let (Some(h), true) = (hostname, flags & libc::CLONE_NEWUTS != 0) {
        rustix::system::sethostname(h.as_bytes()).map_err(|e| PinError::Hostname {
            hostname: h.to_string(),
            source: e.into(),
        })?;
    }
    let mut done: Vec<&Path> = Vec::new();
    for (t, path) in ns {
        if let Err(source) = bind_ns(*t, path) {
            for p in done {
                let _ = unpin(p);
            }
            return Err(PinError::Pin {
                typ: t.name(),
                path: path.clone(),
                source,
            });
        }
        done.push(path);
    }
    Ok(())
}

fn bind_ns(t: NamespaceType, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let src = format!("/proc/thread-self/ns/{}", t.proc_name());
    rustix::mount::mount_bind(src.as_str(), path).map_err(|e| {
        let _ = std::fs::remove_file(path);
        std::io::Error::from(e)
    })
}

/// Sets IFF_UP on `lo` in this thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of a live ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifru_flags is the union member SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags of a live ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the open file `f` is a namespace (checked on the descriptor,
/// so it cannot change between the check and a `setns` on it).
pub fn is_namespace(f: &std::fs::File) -> bool {
    match rustix::fs::fstatfs(f) {
        Ok(st) => st.f_type == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Whether `path` is a pinned namespace (an nsfs file mounted there).
pub fn is_pinned(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        Ok(st) => st.f_type == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Releases a pin: unmounts it (the namespace goes once nothing else uses
/// it) and removes the file. A missing or unmounted pin is not an error.
pub fn unpin(path: &Path) -> Result<(), PinError> {
    let err = |source: std::io::Error| PinError::Unpin {
        path: path.to_path_buf(),
        source,
    };
    if is_pinned(path) {
        rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| err(e.into()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn refuses_what_cannot_be_pinned_without_touching_anything() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pid");
        let e = pin(&[(NamespaceType::Pid, p.clone())], None).unwrap_err();
        assert!(e.to_string().contains("pid"), "{e}");
        assert!(!p.exists());
        // Releasing what is not there is fine.
        unpin(&p).unwrap();
    }

    /// Needs root (CAP_SYS_ADMIN): pins a network, IPC and UTS namespace,
    /// checks them from inside, and releases them.
    #[test]
    fn pins_configures_and_releases() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        let uts = dir.path().join("uts");
        let ipc = dir.path().join("ipc");
        pin(
            &[
                (NamespaceType::Network, net.clone()),
                (NamespaceType::Uts, uts.clone()),
                (NamespaceType::Ipc, ipc.clone()),
            ],
            Some("pod-host"),
        )
        .unwrap();
        for p in [&net, &uts, &ipc] {
            assert!(is_pinned(p), "{}", p.display());
        }
        assert_ne!(inode(&net), inode(Path::new("/proc/self/ns/net")));
        // From inside (threads that join them): the hostname is set, lo is up.
        let u2 = uts.clone();
        let host = std::thread::spawn(move || {
            crate::ns::join(NamespaceType::Uts, &u2).unwrap();
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        })
        .join()
        .unwrap();
        assert_eq!(host, "pod-host");
        let n3 = net.clone();
        let lo_up = std::thread::spawn(move || {
            crate::ns::join(NamespaceType::Network, &n3).unwrap();
            // Connecting to a closed port on 127.0.0.1 is refused (not
            // unreachable) only when lo is up.
            std::net::TcpStream::connect("127.0.0.1:9").map_err(|e| e.kind())
        })
        .join()
        .unwrap();
        assert_eq!(lo_up.unwrap_err(), std::io::ErrorKind::ConnectionRefused);
        for p in [&net, &uts, &ipc] {
            unpin(p).unwrap();
            assert!(!p.exists());
        }
        // Pinning onto a path that exists fails and leaves no pin.
        std::fs::write(&net, "taken").unwrap();
        let e = pin(
            &[
                (NamespaceType::Uts, uts.clone()),
                (NamespaceType::Network, net.clone()),
            ],
            None,
        )
        .unwrap_err();
        assert!(matches!(e, PinError::Pin { .. }), "{e}");
        assert!(!uts.exists(), "the first pin is undone");
        assert_eq!(std::fs::read_to_string(&net).unwrap(), "taken");
    }
}

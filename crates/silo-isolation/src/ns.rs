//! Namespace helpers (the Linux side of a Windows Silo): clone flags,
//! validation of `linux.namespaces`, joining by path, and uid/gid maps.

use silo_oci::{IdMapping, NamespaceType};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Failure of a namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("linux.namespaces: duplicate type {0:?}")]
    Duplicate(&'static str),
    #[error("linux.namespaces: {typ:?} path {path}: {source}")]
    Open {
        typ: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.namespaces: {typ:?} path {path} is not a namespace file: {source}")]
    NotNamespace {
        typ: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.namespaces: {typ:?} path {path} is a {actual} namespace, not {typ}")]
    WrongType {
        typ: &'static str,
        path: PathBuf,
        actual: String,
    },
    #[error(
        "linux.namespaces: a new user namespace needs linux.uidMappings and linux.gidMappings"
    )]
    UserNsWithoutMappings,
    #[error("linux.uidMappings/gidMappings: mappings are given but there is no user namespace")]
    MappingsWithoutUserNs,
    #[error("setns into the {typ} namespace at {path}: {source}")]
    Join {
        typ: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    WriteMap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `CLONE_NEWTIME`, missing from some libc versions.
pub const CLONE_NEWTIME: i32 = 0x80;

/// The `clone`/`unshare`/`setns` flag of a namespace type.
pub fn clone_flag(t: NamespaceType) -> i32 {
    match t {
        NamespaceType::Pid => libc::CLONE_NEWPID,
        NamespaceType::Network => libc::CLONE_NEWNET,
        NamespaceType::Mount => libc::CLONE_NEWNS,
        NamespaceType::Ipc => libc::CLONE_NEWIPC,
        NamespaceType::Uts => libc::CLONE_NEWUTS,
        NamespaceType::User => libc::CLONE_NEWUSER,
        NamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        NamespaceType::Time => CLONE_NEWTIME,
    }
}

fn type_of_flag(flag: i32) -> String {
    NamespaceType::ALL
        .iter()
        .find(|t| clone_flag(**t) == flag)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|| format!("unknown ({flag:#x})"))
}

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

fn open_ns(t: NamespaceType, path: &Path) -> Result<std::fs::File, NsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| NsError::Open {
            typ: t.name(),
            path: path.to_path_buf(),
            source,
        })?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns an integer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
    if rc < 0 {
        return Err(NsError::NotNamespace {
            typ: t.name(),
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    if rc != clone_flag(t) {
        return Err(NsError::WrongType {
            typ: t.name(),
            path: path.to_path_buf(),
            actual: type_of_flag(rc),
        });
    }
    Ok(f)
}

/// Parent-side checks of `linux.namespaces` and the id mappings.
pub fn validate(spec_linux: &silo_oci::Linux) -> Result<(), NsError> {
    let mut seen: Vec<NamespaceType> = Vec::new();
    for ns in &spec_linux.namespaces {
        if seen.contains(&ns.typ) {
            return Err(NsError::Duplicate(ns.typ.name()));
        }
        seen.push(ns.typ);
        if let Some(p) = &ns.path {
            open_ns(ns.typ, Path::new(p))?;
        }
    }
    let has_maps = !spec_linux.uid_mappings.is_empty() || !spec_linux.gid_mappings.is_empty();
    match spec_linux
        .namespaces
        .iter()
        .find(|n| n.typ == NamespaceType::User)
    {
        Some(u)
            if u.path.is_none()
                && (spec_linux.uid_mappings.is_empty() || spec_linux.gid_mappings.is_empty()) =>
        {
            return Err(NsError::UserNsWithoutMappings)
        }
        Some(_) => {}
        None if has_maps => return Err(NsError::MappingsWithoutUserNs),
        None => {}
    }
    Ok(())
}

/// Join the namespace of type `t` at `path`.
pub fn join(t: NamespaceType, path: &Path) -> Result<(), NsError> {
    let f = open_ns(t, path)?;
    // SAFETY: setns on a valid fd we own, with the matching flag.
    let rc = unsafe { libc::setns(f.as_raw_fd(), clone_flag(t)) };
    if rc != 0 {
        return Err(NsError::Join {
            typ: t.name(),
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Render mappings in the `/proc/<pid>/uid_map` format.
pub fn format_map(m: &[IdMapping]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}\n", e.container_id, e.host_id, e.size))
        .collect()
}

fn write_once(path: PathBuf, data: &str) -> Result<(), NsError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|source| NsError::WriteMap {
            path: path.clone(),
            source,
        })?;
    // One write() call: the kernel accepts a map only in a single write.
    let n = f
        .write(data.as_bytes())
        .map_err(|source| NsError::WriteMap {
            path: path.clone(),
            source,
        })?;
    if n != data.len() {
        return Err(NsError::WriteMap {
            path,
            source: std::io::Error::other(format!("short write: {n} of {} bytes", data.len())),
        });
    }
    Ok(())
}

/// Parent: write `setgroups` ("deny", only if asked), `uid_map` and `gid_map` of `pid`.
pub fn write_id_maps(
    proc_root: &Path,
    pid: i32,
    uid: &[IdMapping],
    gid: &[IdMapping],
    deny_setgroups: bool,
) -> Result<(), NsError> {
    let dir = proc_root.join(pid.to_string());
    if deny_setgroups {
        write_once(dir.join("setgroups"), "deny")?;
    }
    if !uid.is_empty() {
        write_once(dir.join("uid_map"), &format_map(uid))?;
    }
    if !gid.is_empty() {
        write_once(dir.join("gid_map"), &format_map(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_oci::Namespace;

    fn linux(ns: &[(NamespaceType, Option<&str>)]) -> silo_oci::Linux {
        silo_oci::Linux {
            namespaces: ns
                .iter()
                .map(|(t, p)| Namespace {
                    typ: *t,
                    path: p.map(String::from),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn flags() {
        assert_eq!(clone_flag(NamespaceType::Pid), 0x2000_0000);
        assert_eq!(clone_flag(NamespaceType::Time), 0x80);
        assert_eq!(clone_flag(NamespaceType::Mount), 0x0002_0000);
    }

    #[test]
    fn duplicates_refused() {
        let l = linux(&[(NamespaceType::Pid, None), (NamespaceType::Pid, None)]);
        assert_eq!(
            validate(&l).unwrap_err().to_string(),
            "linux.namespaces: duplicate type \"pid\""
        );
    }

    #[test]
    fn paths_checked_for_type() {
        validate(&linux(&[(
            NamespaceType::Network,
            Some("/proc/self/ns/net"),
        )]))
        .unwrap();
        let e = validate(&linux(&[(
            NamespaceType::Network,
            Some("/proc/self/ns/uts"),
        )]))
        .unwrap_err();
        assert!(matches!(e, NsError::WrongType { .. }), "{e}");
        assert!(e.to_string().contains("uts"), "{e}");
        let e = validate(&linux(&[(NamespaceType::Ipc, Some("/etc/hostname"))])).unwrap_err();
        assert!(matches!(e, NsError::NotNamespace { .. }), "{e}");
        let e = validate(&linux(&[(NamespaceType::Ipc, Some("/nonexistent/ns"))])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ns"), "{e}");
    }

    #[test]
    fn user_ns_needs_mappings() {
        let mut l = linux(&[(NamespaceType::User, None)]);
        assert!(matches!(validate(&l), Err(NsError::UserNsWithoutMappings)));
        let m = IdMapping {
            container_id: 0,
            host_id: 100000,
            size: 65536,
        };
        l.uid_mappings = vec![m];
        l.gid_mappings = vec![m];
        validate(&l).unwrap();
        let mut l2 = linux(&[]);
        l2.uid_mappings = vec![m];
        assert!(matches!(validate(&l2), Err(NsError::MappingsWithoutUserNs)));
    }

    #[test]
    fn id_maps_written_to_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("9");
        std::fs::create_dir(&p).unwrap();
        for f in ["uid_map", "gid_map", "setgroups"] {
            std::fs::write(p.join(f), "").unwrap();
        }
        let u = [
            IdMapping {
                container_id: 0,
                host_id: 1000,
                size: 1,
            },
            IdMapping {
                container_id: 1,
                host_id: 100000,
                size: 65535,
            },
        ];
        let g = [IdMapping {
            container_id: 0,
            host_id: 1000,
            size: 1,
        }];
        write_id_maps(dir.path(), 9, &u, &g, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(p.join("uid_map")).unwrap(),
            "0 1000 1\n1 100000 65535\n"
        );
        assert_eq!(
            std::fs::read_to_string(p.join("gid_map")).unwrap(),
            "0 1000 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(p.join("setgroups")).unwrap(),
            "deny"
        );
    }

    #[test]
    fn id_maps_written_for_real_user_namespace() {
        use std::io::{BufRead, Write};
        use std::os::unix::process::CommandExt;
        // The child unshares a user namespace, then waits on stdin until the
        // maps are written, then reports what it sees.
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["sh", "-c", "echo ready; read x; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        // SAFETY: only unshare() in the closure.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        // Host uid 0 (us) maps to 0; a second range shows multi-line maps work.
        let m = [
            IdMapping {
                container_id: 0,
                host_id: 0,
                size: 1,
            },
            IdMapping {
                container_id: 1,
                host_id: 100000,
                size: 1000,
            },
        ];
        let res = write_id_maps(Path::new("/proc"), child.id() as i32, &m, &m, true);
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"go\n");
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let _ = child.wait();
        res.unwrap();
        let words: Vec<&str> = rest.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "0", "0", "1", "1", "100000", "1000", "0", "0", "1", "1", "100000", "1000", "deny",
                "0"
            ],
            "{rest}"
        );
    }

    #[test]
    fn join_uts_in_child() {
        use std::os::unix::process::CommandExt;
        // A child unshares uts, sets a hostname, and we check a second child
        // that joins it by path sees the name.
        let mut holder = std::process::Command::new("/bin/busybox");
        holder.args(["sh", "-c", "hostname silo-ns-test && sleep 10"]);
        // SAFETY: only unshare() in the closure.
        unsafe {
            holder.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut holder = holder.spawn().unwrap();
        let path = PathBuf::from(format!("/proc/{}/ns/uts", holder.id()));
        let mut got = String::new();
        for _ in 0..100 {
            let mut cmd = std::process::Command::new("/bin/busybox");
            cmd.arg("hostname");
            let p2 = path.clone();
            // SAFETY: the closure opens a file and calls setns.
            unsafe {
                cmd.pre_exec(move || join(NamespaceType::Uts, &p2).map_err(std::io::Error::other));
            }
            got = String::from_utf8_lossy(&cmd.output().unwrap().stdout)
                .trim()
                .to_string();
            if got == "silo-ns-test" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(got, "silo-ns-test");
    }
}

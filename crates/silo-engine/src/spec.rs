//! A container's OCI spec, made from its [`ContainerConfig`]: at create
//! the part that never changes (stored with the container), at each start
//! the part decided then (the user's ids from the container's own
//! /etc/passwd, the rootfs path, the namespaces it joins, the seccomp
//! program). Nothing here touches the host: mounts arrive resolved.

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, NetworkMode, SeccompPolicy, Sharing};
use silo_oci::{
    mount, Capabilities, Linux, Mount, Namespace, NamespaceType, Process, Root, Spec, User,
};
use std::path::Path;

/// Every capability this kernel knows (privileged containers and execs get them all).
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Where `init` puts the init binary inside the container (Docker's path,
/// so tools that look for it find it).
pub const INIT_TARGET: &str = "/sbin/docker-init";

/// The device node `host` as a device the container gets at `inside`
/// (its type, numbers and mode read from the host); the error names it.
pub fn host_device(host: &str, inside: &str) -> std::result::Result<silo_oci::Device, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(host).map_err(|e| {
        format!("error gathering device information while adding custom device {host:?}: {e}")
    })?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(format!(
            "{host} is not a device node (directories of devices are not supported by silo yet)"
        ));
    };
    let rdev = meta.rdev();
    Ok(silo_oci::Device {
        typ: typ.into(),
        path: inside.to_string(),
        major: i64::from(libc::major(rdev)),
        minor: i64::from(libc::minor(rdev)),
        file_mode: Some(meta.mode() & 0o7777),
        uid: Some(0),
        gid: Some(0),
    })
}

/// /dev/shm's size when the config says 0.
const DEFAULT_SHM: u64 = 64 * 1024 * 1024;

/// The namespaces a container's spec lists at create: every type it does
/// not share with the host. Joined ones get their paths at each start
/// ([`join`]).
fn namespaces(cfg: &ContainerConfig, cgroupns: bool) -> Vec<Namespace> {
    let ns = &cfg.namespaces;
    let mut out = vec![NamespaceType::Mount];
    if ns.pid != Sharing::Host {
        out.push(NamespaceType::Pid);
    }
    if ns.ipc != Sharing::Host {
        out.push(NamespaceType::Ipc);
    }
    if ns.uts != Sharing::Host {
        out.push(NamespaceType::Uts);
    }
    if ns.network != NetworkMode::Host {
        out.push(NamespaceType::Network);
    }
    if cgroupns {
        out.push(NamespaceType::Cgroup);
    }
    out.into_iter()
        .map(|typ| Namespace { typ, path: None })
        .collect()
}

/// Makes the stored spec. `etc_dir` holds the generated hostname, hosts
/// and resolv.conf; `user_mounts` are the config's mounts, resolved.
pub(crate) fn generate(
    id: &str,
    hostname: &str,
    cfg: &ContainerConfig,
    etc_dir: &Path,
    cgroupns: bool,
    user_mounts: Vec<Mount>,
) -> Result<Spec> {
    let p = &cfg.process;
    if p.args.is_empty() {
        return Err(Error::invalid("process.args", "no command specified"));
    }
    if !p.cwd.starts_with('/') {
        return Err(Error::invalid(
            "process.cwd",
            format!(
                "the working directory {:?} is invalid, it needs to be an absolute path",
                p.cwd
            ),
        ));
    }
    if cfg.namespaces.network == NetworkMode::Host {
        if let Some(k) = cfg.security.sysctls.keys().find(|k| k.starts_with("net.")) {
            return Err(Error::invalid(
                "security.sysctls",
                format!("sysctl {k} cannot be set with the host network namespace"),
            ));
        }
    }
    let privileged = cfg.security.privileged;
    let caps = Some(p.capabilities.clone());
    let process = Process {
        terminal: p.terminal,
        user: User::default(),
        args: p.args.clone(),
        env: p.env.clone(),
        cwd: p.cwd.clone(),
        capabilities: Some(Capabilities {
            bounding: caps.clone(),
            effective: caps.clone(),
            permitted: caps,
            inheritable: None,
            ambient: None,
        }),
        rlimits: p.rlimits.clone(),
        no_new_privileges: p.no_new_privileges,
        oom_score_adj: p.oom_score_adj,
        ..Default::default()
    };
    let shm = if cfg.shm_size == 0 {
        DEFAULT_SHM
    } else {
        cfg.shm_size
    };
    let mut mounts = silo_oci::system_mounts(shm.div_ceil(1024) as i64, privileged);
    for f in ["hostname", "hosts", "resolv.conf"] {
        let src = etc_dir.join(f);
        mounts.push(mount(
            &format!("/etc/{f}"),
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate", "rw"],
        ));
    }
    // A user mount replaces a default one at the same place.
    for m in user_mounts {
        mounts.retain(|x| x.destination != m.destination);
        mounts.push(m);
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut spec = Spec {
        oci_version: silo_oci::OCI_VERSION.into(),
        process: Some(process),
        root: Some(Root {
            path: String::new(),
            readonly: cfg.security.readonly_rootfs,
        }),
        hostname: Some(hostname.to_string()),
        mounts,
        linux: Some(Linux {
            sysctl: cfg.security.sysctls.clone(),
            resources: Some(cfg.resources.clone()),
            devices: cfg.devices.clone(),
            cgroups_path: Some(format!(
                "{}/{id}",
                cfg.cgroup_parent
                    .as_deref()
                    .unwrap_or("/silo")
                    .trim_end_matches('/')
            )),
            namespaces: namespaces(cfg, cgroupns),
            seccomp: None,
            masked_paths: match &cfg.security.masked_paths {
                Some(p) => p.clone(),
                None if privileged => vec![],
                None => strings(&silo_oci::MASKED_PATHS),
            },
            readonly_paths: match &cfg.security.readonly_paths {
                Some(p) => p.clone(),
                None if privileged => vec![],
                None => strings(&silo_oci::READONLY_PATHS),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    if cfg.namespaces.uts == Sharing::Host {
        spec.hostname = None;
    }
    Ok(spec)
}

/// Makes the container join the namespace of type `t` at `path` (one it
/// shares with a pod, another container, or its own pinned one); a shared
/// UTS namespace keeps its owner's hostname.
pub(crate) fn join(spec: &mut Spec, t: NamespaceType, path: &Path) {
    let Some(linux) = spec.linux.as_mut() else {
        return;
    };
    let path = Some(path.to_string_lossy().into_owned());
    match linux.namespaces.iter_mut().find(|n| n.typ == t) {
        Some(n) => n.path = path,
        None => linux.namespaces.push(Namespace { typ: t, path }),
    }
    if t == NamespaceType::Uts {
        spec.hostname = None;
    }
}

/// `init`: bind-mounts the init binary read-only at [`INIT_TARGET`] and
/// makes it PID 1 with the container's command as its child
/// (`/sbin/docker-init -- cmd…`). It must be static: it runs inside the
/// image's rootfs.
pub(crate) fn add_init(spec: &mut Spec, init: &Path) {
    if let Some(p) = spec.process.as_mut() {
        let mut args = vec![INIT_TARGET.to_string(), "--".to_string()];
        args.append(&mut p.args);
        p.args = args;
    }
    spec.mounts.push(mount(
        INIT_TARGET,
        "bind",
        &init.to_string_lossy(),
        &["bind", "ro", "nosuid", "nodev"],
    ));
}

/// The seccomp filter a start installs.
pub(crate) fn seccomp(
    policy: &SeccompPolicy,
    privileged: bool,
    default: impl FnOnce() -> silo_oci::Seccomp,
) -> Option<silo_oci::Seccomp> {
    match policy {
        SeccompPolicy::Unconfined => None,
        SeccompPolicy::Profile(p) => Some((**p).clone()),
        SeccompPolicy::Default if privileged => None,
        SeccompPolicy::Default => Some(default()),
    }
}

/// Resolves a user ("uid", "uid:gid", "name", "name:group") in the
/// container's root filesystem (/etc/passwd and /etc/group there).
pub(crate) fn resolve_user(rootfs: &Path, user: &str, groups: &[String]) -> Result<User> {
    if user.is_empty() && groups.is_empty() {
        return Ok(User::default());
    }
    let read = |rel: &str| crate::io::archive::read_in_root(rootfs, rel);
    let group = read("etc/group");
    let mut u = if user.is_empty() {
        User::default()
    } else {
        user_from_files(user, &read("etc/passwd"), &group)
            .map_err(|e| Error::invalid("process.user", e))?
    };
    add_groups(&mut u, groups, &group)?;
    Ok(u)
}

/// Adds `groups` (see [`group_ids`]) to the user's supplementary groups.
pub(crate) fn add_groups(u: &mut User, groups: &[String], group_file: &str) -> Result<()> {
    let ids = group_ids(groups, group_file).map_err(|e| Error::invalid("process.groups", e))?;
    for gid in ids {
        if gid != u.gid && !u.additional_gids.contains(&gid) {
            u.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// Supplementary groups by number or by name in the container's
/// /etc/group (Docker's `--group-add`).
pub(crate) fn group_ids(
    groups: &[String],
    group_file: &str,
) -> std::result::Result<Vec<u32>, String> {
    groups
        .iter()
        .map(|g| {
            if let Ok(n) = g.parse::<u32>() {
                return Ok(n);
            }
            group_file
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|e| e.first() == Some(&g.as_str()))
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("Unable to find group {g}: no matching entries in group file")
                })
        })
        .collect()
}

/// [`resolve_user`] over the contents of /etc/passwd and /etc/group (the
/// start of a container and an exec both use it). Numeric ids need no
/// entry, names must exist; supplementary groups come from /etc/group
/// membership when no group is named, as with runc. An empty user is root.
pub(crate) fn user_from_files(
    user: &str,
    passwd: &str,
    group: &str,
) -> std::result::Result<User, String> {
    if user.is_empty() {
        return Ok(User::default());
    }
    // "uid:" names no group.
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (user, None),
    };
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(|s| s.to_string()).collect())
            .collect()
    };
    let pw = entries(passwd);
    let gr = entries(group);
    let (uid, mut gid, name) = if let Ok(uid) = u.parse::<u32>() {
        let e = pw
            .iter()
            .find(|e| e.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid));
        (
            uid,
            e.and_then(|e| e.get(3)?.parse().ok()).unwrap_or(0),
            e.map(|e| e[0].clone()),
        )
    } else {
        let e = pw.iter().find(|e| e[0] == u).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?;
        let uid = e
            .get(2)
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| format!("corrupt passwd entry for {u}"))?;
        (
            uid,
            e.get(3).and_then(|x| x.parse().ok()).unwrap_or(0),
            Some(u.to_string()),
        )
    };
    if let Some(g) = g {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            gr.iter()
                .find(|e| e[0] == g)
                .and_then(|e| e.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
        };
    }
    let mut additional = Vec::new();
    if let (Some(name), None) = (&name, g) {
        for e in &gr {
            let member = e.get(3).is_some_and(|m| m.split(',').any(|x| x == name));
            if member {
                if let Some(id) = e.get(2).and_then(|x| x.parse::<u32>().ok()) {
                    if id != gid && !additional.contains(&id) {
                        additional.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NamespaceConfig, ProcessConfig, SecurityConfig};

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            process: ProcessConfig {
                args: vec!["sleep".into(), "5".into()],
                cwd: "/".into(),
                capabilities: vec!["CAP_KILL".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn types(spec: &Spec) -> Vec<NamespaceType> {
        spec.linux
            .as_ref()
            .unwrap()
            .namespaces
            .iter()
            .map(|n| n.typ)
            .collect()
    }

    #[test]
    fn generates_mounts_namespaces_and_process() {
        let user = mount("/data", "bind", "/srv", &["rbind", "ro"]);
        let shm = mount("/dev/shm", "tmpfs", "shm", &["size=1k"]);
        let s = generate("abc", "h", &cfg(), Path::new("/d"), true, vec![user, shm]).unwrap();
        let p = s.process.as_ref().unwrap();
        assert_eq!(p.args, ["sleep", "5"]);
        assert_eq!(
            p.capabilities.as_ref().unwrap().bounding.as_deref(),
            Some(&["CAP_KILL".to_string()][..])
        );
        assert_eq!(s.hostname.as_deref(), Some("h"));
        let dests: Vec<_> = s.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert!(dests.contains(&"/etc/hosts") && dests.contains(&"/data"));
        assert_eq!(
            dests.iter().filter(|d| **d == "/dev/shm").count(),
            1,
            "a user mount replaces the default"
        );
        assert!(types(&s).contains(&NamespaceType::Cgroup));
        assert!(types(&s).contains(&NamespaceType::Network));
        let l = s.linux.as_ref().unwrap();
        assert!(!l.masked_paths.is_empty());
        assert_eq!(l.cgroups_path.as_deref(), Some("/silo/abc"));
    }

    #[test]
    fn host_namespaces_are_left_out_and_joined_ones_get_paths() {
        let mut c = cfg();
        c.namespaces = NamespaceConfig {
            network: NetworkMode::Host,
            pid: Sharing::Host,
            ipc: Sharing::Private,
            uts: Sharing::Host,
        };
        let mut s = generate("abc", "h", &c, Path::new("/d"), false, vec![]).unwrap();
        assert_eq!(
            types(&s),
            [NamespaceType::Mount, NamespaceType::Ipc],
            "host ones are inherited"
        );
        assert_eq!(s.hostname, None, "the host's UTS keeps its hostname");
        join(&mut s, NamespaceType::Ipc, Path::new("/proc/7/ns/ipc"));
        join(
            &mut s,
            NamespaceType::Network,
            Path::new("/run/silo/netns/x"),
        );
        let l = s.linux.as_ref().unwrap();
        assert_eq!(l.namespaces[1].path.as_deref(), Some("/proc/7/ns/ipc"));
        assert_eq!(l.namespaces.len(), 3);
        // net sysctls need a network namespace of its own.
        c.security = SecurityConfig {
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let e = generate("abc", "h", &c, Path::new("/d"), false, vec![]).unwrap_err();
        assert!(e.to_string().contains("net.ipv4.ip_forward"), "{e}");
    }

    #[test]
    fn refuses_no_command_and_relative_cwd() {
        let mut c = cfg();
        c.process.args.clear();
        let e = generate("a", "h", &c, Path::new("/d"), false, vec![]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { ref field, .. } if field == "process.args"));
        let mut c = cfg();
        c.process.cwd = "rel".into();
        assert!(generate("a", "h", &c, Path::new("/d"), false, vec![]).is_err());
    }

    #[test]
    fn init_becomes_pid_1() {
        let mut s = generate("a", "h", &cfg(), Path::new("/d"), false, vec![]).unwrap();
        add_init(&mut s, Path::new("/usr/bin/tini-static"));
        assert_eq!(
            s.process.as_ref().unwrap().args,
            [INIT_TARGET, "--", "sleep", "5"]
        );
        let m = s.mounts.last().unwrap();
        assert_eq!(m.destination, INIT_TARGET);
        assert!(m.options.iter().any(|o| o == "ro"));
    }

    #[test]
    fn seccomp_follows_the_policy() {
        let p = silo_oci::Seccomp::default();
        assert!(seccomp(&SeccompPolicy::Default, false, || p.clone()).is_some());
        assert!(seccomp(&SeccompPolicy::Default, true, || p.clone()).is_none());
        assert!(seccomp(&SeccompPolicy::Unconfined, false, || p.clone()).is_none());
        assert!(
            seccomp(&SeccompPolicy::Profile(Box::new(p.clone())), true, || p
                .clone())
            .is_some()
        );
    }

    #[test]
    fn user_lookup_in_rootfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,bob\naudio:x:29:www\n",
        )
        .unwrap();
        let r = root.path();
        let u = resolve_user(r, "www", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (33, 33, vec![50, 29]));
        let u = resolve_user(r, "www:staff", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        assert!(
            u.additional_gids.is_empty(),
            "a named group means no supplementary groups"
        );
        assert_eq!(resolve_user(r, "", &[]).unwrap(), User::default());
        // --group-add: by name and by number, on top of membership.
        let u = resolve_user(r, "www", &["staff".into(), "4242".into(), "audio".into()]).unwrap();
        assert_eq!(u.additional_gids, vec![50, 29, 4242]);
        let u = resolve_user(r, "", &["audio".into()]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (0, 0, vec![29]));
        let e = resolve_user(r, "www", &["nogroup".into()]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { ref field, .. } if field == "process.groups"));
        assert!(
            e.to_string().contains("Unable to find group nogroup"),
            "{e}"
        );
        let e = resolve_user(r, "nobody", &[]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { ref field, .. } if field == "process.user"));
        assert!(e.to_string().contains("nobody"));
    }

    #[test]
    fn users_resolve_from_file_contents() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:www\n";
        let ids =
            |u: &str| user_from_files(u, passwd, group).map(|u| (u.uid, u.gid, u.additional_gids));
        assert_eq!(ids("www"), Ok((33, 34, vec![50])));
        assert_eq!(ids("33"), Ok((33, 34, vec![50])));
        assert_eq!(ids("www:staff"), Ok((33, 50, vec![])));
        assert_eq!(ids("1000:7"), Ok((1000, 7, vec![])));
        assert_eq!(ids("www:"), Ok((33, 34, vec![50])));
        assert_eq!(ids(""), Ok((0, 0, vec![])));
        assert_eq!(
            ids("nobody"),
            Err("unable to find user nobody: no matching entries in passwd file".into())
        );
        assert_eq!(
            ids("www:nogroup"),
            Err("unable to find group nogroup: no matching entries in group file".into())
        );
    }
}

//! Rootfs preparation inside the container's mount namespace: propagation,
//! spec mounts (resolved inside the rootfs with `openat2(RESOLVE_IN_ROOT)` so a
//! symlink in the image can never redirect a mount onto the host), /dev, and
//! the switch of root (`pivot_root` or `MS_MOVE` + `chroot`).

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Everything [`prepare_rootfs`] needs.
pub struct RootfsConfig<'a> {
    /// Absolute host path of the rootfs directory.
    pub rootfs: &'a Path,
    pub mounts: &'a [silo_oci::Mount],
    /// `linux.rootfsPropagation`.
    pub propagation: Option<&'a str>,
    /// `linux.devices` (extra devices).
    pub devices: &'a [silo_oci::Device],
    /// In a user namespace devices are bind-mounted from the host instead of mknod.
    pub in_userns: bool,
    /// A cgroup namespace was created.
    pub cgroupns: bool,
    /// For `cgroup` mounts without cgroupns: (controller name, or "" for the v2
    /// unified hierarchy; host directory of this container's group).
    pub cgroup_paths: &'a [(String, PathBuf)],
    /// The spec lists no mount namespace: the container shares the
    /// runtime's, so the host's propagation is left alone and the rootfs
    /// becomes a private mount of its own (see [`host_ns_root`]).
    pub host_mount_ns: bool,
}

/// Failure of a rootfs step.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("linux.rootfsPropagation: unknown propagation {0:?}")]
    UnknownPropagation(String),
    #[error("{what}: {path}: {source}")]
    Sys {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts[{index}] (destination {dest:?}): {what}: {source}")]
    Mount {
        index: usize,
        dest: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts[{index}]: destination {dest:?} must be an absolute path")]
    RelativeDestination { index: usize, dest: String },
    #[error("mounts[{index}] (destination {dest:?}): a {typ} mount needs a source")]
    MissingSource {
        index: usize,
        dest: String,
        typ: String,
    },
    #[error("linux.devices[{index}] ({path}): {reason}")]
    BadDevice {
        index: usize,
        path: String,
        reason: String,
    },
    #[error("linux.devices[{index}] ({path}): {what}: {source}")]
    Device {
        index: usize,
        path: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

fn sys_err(what: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> MountError {
    let what = what.into();
    let path = path.to_path_buf();
    move |source| MountError::Sys { what, path, source }
}

fn cstr(s: &[u8]) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| MountError::Nul(String::from_utf8_lossy(s).into_owned()))
}

/// Thin mount(2) wrapper.
pub(crate) fn sys_mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> std::io::Result<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a valid NUL-terminated string
    // that outlives the call.
    let rc = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data).cast::<libc::c_void>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The mount flag of a propagation name.
pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

fn root_propagation(propagation: Option<&str>) -> Result<libc::c_ulong, MountError> {
    match propagation {
        None => Ok(libc::MS_SLAVE | libc::MS_REC),
        Some(p) => propagation_flag(p).ok_or_else(|| MountError::UnknownPropagation(p.into())),
    }
}

/// Mount options split into flags, propagation changes and fs data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags for the mount call (includes MS_BIND/MS_REC for binds).
    pub flags: libc::c_ulong,
    /// Propagation changes applied with separate mount calls afterwards.
    pub propagation: Vec<libc::c_ulong>,
    /// Everything else, joined with ",".
    pub data: String,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// Split OCI mount options into flags, propagation and data.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
            "rec" => (libc::MS_REC, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            p => {
                if let Some(f) = propagation_flag(p) {
                    out.propagation.push(f);
                } else {
                    data.push(p);
                }
                continue;
            }
        };
        out.flags = (out.flags | set) & !clear;
    }
    out.data = data.join(",");
    out
}

/// Lexically normalise an absolute in-container path to components below "/"
/// (".." is clamped at the root, as the container would see it).
pub fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// What to create when the destination is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DestKind {
    Dir,
    File,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn open_in_root(root: &OwnedFd, rel: &str) -> rustix::io::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve_flags(),
    )
}

/// Open (creating when missing) `path` inside the directory `root` as an
/// `O_PATH` fd; every lookup is confined to `root`.
pub fn resolve_in_root(root: &OwnedFd, path: &str, kind: DestKind) -> std::io::Result<OwnedFd> {
    let comps = clean_components(path);
    let full = comps.join("/");
    match open_in_root(root, &full) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let mut parent = open_in_root(root, "")?;
    for i in 0..comps.len() {
        let prefix = comps[..=i].join("/");
        match open_in_root(root, &prefix) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let name = comps[i].as_str();
        let last = i + 1 == comps.len();
        if last && kind == DestKind::File {
            match rustix::fs::openat(
                &parent,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A dangling symlink makes this fail with ENOENT, which is the safe outcome.
        parent = open_in_root(root, &prefix)?;
    }
    Ok(parent)
}

/// The magic-link path through which a mount reaches an O_PATH fd.
pub fn fd_path(fd: &OwnedFd) -> CString {
    // Digits only: no NUL possible.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// The MS_* flags of the mount at `path` that a bind remount must keep.
pub fn kept_flags(path: &CStr) -> std::io::Result<libc::c_ulong> {
    let st = rustix::fs::statvfs(path)?;
    let f = st.f_flag;
    use rustix::fs::StatVfsMountFlags as S;
    let mut out = 0;
    for (s, m) in [
        (S::NOSUID, libc::MS_NOSUID),
        (S::NODEV, libc::MS_NODEV),
        (S::NOEXEC, libc::MS_NOEXEC),
        (S::NOATIME, libc::MS_NOATIME),
        (S::NODIRATIME, libc::MS_NODIRATIME),
        (S::RELATIME, libc::MS_RELATIME),
        (S::RDONLY, libc::MS_RDONLY),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    Ok(out)
}

/// Remount the bind mount at `target` with `flags` (MS_REMOUNT|MS_BIND added);
/// on EPERM retries with the flags the mount already has (locked in a userns).
pub fn bind_remount(target: &CStr, flags: libc::c_ulong) -> std::io::Result<()> {
    let f = (flags & !(libc::MS_REC | libc::MS_BIND)) | libc::MS_REMOUNT | libc::MS_BIND;
    match sys_mount(None, target, None, f, None) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let kept = kept_flags(target)? & !libc::MS_RDONLY;
            sys_mount(None, target, None, f | kept, None)
        }
        r => r,
    }
}

/// Rootfs steps 1–4 (see the module docs).
pub fn prepare_rootfs(cfg: &RootfsConfig) -> Result<(), MountError> {
    // The asked propagation goes on the new "/" after the switch of root
    // ([`finish_rootfs`]): applied here, "unbindable" would forbid the
    // bind of the rootfs onto itself below, and "shared" would let the
    // container's mounts reach the host. Until then everything is rslave.
    root_propagation(cfg.propagation)?;
    if !cfg.host_mount_ns {
        sys_mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(sys_err("making \"/\" rslave", Path::new("/")))?;
    }
    let rootfs_c = cstr(cfg.rootfs.as_os_str().as_bytes())?;
    sys_mount(
        Some(&rootfs_c),
        &rootfs_c,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(sys_err("bind-mounting the rootfs onto itself", cfg.rootfs))?;
    if cfg.host_mount_ns {
        // In the host's namespace: what is mounted under the rootfs must
        // not spread to other namespaces, and goes when the container is
        // deleted (silo-compute unmounts the rootfs tree).
        sys_mount(None, &rootfs_c, None, libc::MS_PRIVATE | libc::MS_REC, None)
            .map_err(sys_err("making the rootfs private", cfg.rootfs))?;
    }

    let root = rustix::fs::open(
        cfg.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys_err("opening the rootfs", cfg.rootfs)(e.into()))?;

    let mut dev_is_tmpfs = false;
    let mut has_proc = false;
    for (index, m) in cfg.mounts.iter().enumerate() {
        mount_one(cfg, &root, index, m)?;
        let comps = clean_components(&m.destination);
        if comps == ["dev"] {
            dev_is_tmpfs = m.typ.as_deref() == Some("tmpfs");
        }
        if comps == ["proc"] && m.typ.as_deref() == Some("proc") {
            has_proc = true;
        }
    }
    if dev_is_tmpfs {
        default_devices(&root, cfg.in_userns, has_proc)?;
    }
    for (index, d) in cfg.devices.iter().enumerate() {
        create_device(&root, index, d, cfg.in_userns)?;
    }
    Ok(())
}

fn mount_one(
    cfg: &RootfsConfig,
    root: &OwnedFd,
    index: usize,
    m: &silo_oci::Mount,
) -> Result<(), MountError> {
    let dest = m.destination.clone();
    if !m.destination.starts_with('/') {
        return Err(MountError::RelativeDestination { index, dest });
    }
    let merr = |what: &str| {
        let what = what.to_string();
        let dest = dest.clone();
        move |source: std::io::Error| MountError::Mount {
            index,
            dest,
            what,
            source,
        }
    };
    let mut opts = parse_options(&m.options);
    let typ = m.typ.clone().unwrap_or_default();
    if typ == "bind" {
        opts.flags |= libc::MS_BIND;
    }

    if opts.is_bind() {
        let Some(src) = m.source.as_deref() else {
            return Err(MountError::MissingSource {
                index,
                dest,
                typ: "bind".into(),
            });
        };
        let meta = std::fs::metadata(src).map_err(merr(&format!("bind source {src}")))?;
        let kind = if meta.is_dir() {
            DestKind::Dir
        } else {
            DestKind::File
        };
        let reopen = || resolve_in_root(root, &m.destination, kind);
        let target = reopen().map_err(merr("resolving the destination"))?;
        let mounted = bind_onto(&cstr(src.as_bytes())?, &target, &opts, &reopen)
            .map_err(merr(&format!("bind mount of {src}")))?;
        return apply_propagation(&mounted, &opts).map_err(merr("changing propagation"));
    }

    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(cfg, root, index, m, &typ, &opts);
    }

    let reopen = || resolve_in_root(root, &m.destination, DestKind::Dir);
    let target = reopen().map_err(merr("resolving the destination"))?;
    let tpath = fd_path(&target);
    let fstype = cstr(typ.as_bytes())?;
    let source = cstr(m.source.as_deref().unwrap_or(&typ).as_bytes())?;
    let data = cstr(opts.data.as_bytes())?;
    let data_opt = (!opts.data.is_empty()).then_some(data.as_c_str());
    let res = sys_mount(Some(&source), &tpath, Some(&fstype), opts.flags, data_opt);
    match res {
        Ok(()) => {}
        // sysfs cannot be mounted in a userns without a new netns: fall back to the host's.
        Err(e) if typ == "sysfs" && cfg.in_userns && e.raw_os_error() == Some(libc::EPERM) => {
            let bind = MountOptions {
                flags: opts.flags | libc::MS_BIND | libc::MS_REC,
                ..Default::default()
            };
            bind_onto(c"/sys", &target, &bind, &reopen)
                .map_err(merr("bind mount of /sys (userns fallback)"))?;
        }
        Err(e) => return Err(merr(&format!("mounting {typ}"))(e)),
    }
    if opts.propagation.is_empty() {
        return Ok(());
    }
    let mounted = reopen().map_err(merr("resolving the destination after mounting"))?;
    apply_propagation(&mounted, &opts).map_err(merr("changing propagation"))
}

/// Bind `src` onto `target`, then remount with the remaining flags. An fd
/// opened before a mount still names the directory *under* it, so `reopen`
/// resolves the destination again; the returned fd names the new mount.
fn bind_onto(
    src: &CStr,
    target: &OwnedFd,
    opts: &MountOptions,
    reopen: &dyn Fn() -> std::io::Result<OwnedFd>,
) -> std::io::Result<OwnedFd> {
    let tpath = fd_path(target);
    let bind_flags = opts.flags & (libc::MS_BIND | libc::MS_REC);
    sys_mount(Some(src), &tpath, None, libc::MS_BIND | bind_flags, None)?;
    let mounted = reopen()?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra != 0 {
        bind_remount(&fd_path(&mounted), extra)?;
    }
    Ok(mounted)
}

fn apply_propagation(target: &OwnedFd, opts: &MountOptions) -> std::io::Result<()> {
    let tpath = fd_path(target);
    for p in &opts.propagation {
        sys_mount(None, &tpath, None, *p, None)?;
    }
    Ok(())
}

fn mount_cgroup(
    cfg: &RootfsConfig,
    root: &OwnedFd,
    index: usize,
    m: &silo_oci::Mount,
    typ: &str,
    opts: &MountOptions,
) -> Result<(), MountError> {
    let dest = m.destination.clone();
    let merr = |what: String| {
        let dest = dest.clone();
        move |source: std::io::Error| MountError::Mount {
            index,
            dest,
            what,
            source,
        }
    };
    let flags = opts.flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let ro = flags & libc::MS_RDONLY != 0;
    let v2_only = cfg.cgroup_paths.iter().all(|(c, _)| c.is_empty());
    let unified_host = cfg.cgroup_paths.iter().find(|(c, _)| c.is_empty());

    let target = resolve_in_root(root, &m.destination, DestKind::Dir)
        .map_err(merr("resolving the destination".into()))?;
    let tpath = fd_path(&target);

    if typ == "cgroup2" || (v2_only && (cfg.cgroupns || unified_host.is_some())) {
        if !cfg.cgroupns {
            if let Some((_, host)) = unified_host {
                let bind = MountOptions {
                    flags: flags | libc::MS_BIND | libc::MS_REC,
                    ..Default::default()
                };
                let reopen = || resolve_in_root(root, &m.destination, DestKind::Dir);
                return bind_onto(&cstr(host.as_os_str().as_bytes())?, &target, &bind, &reopen)
                    .map(drop)
                    .map_err(merr(format!("bind mount of {}", host.display())));
            }
        }
        return sys_mount(Some(c"cgroup2"), &tpath, Some(c"cgroup2"), flags, None)
            .map_err(merr("mounting cgroup2".into()));
    }

    // v1 / hybrid: a tmpfs with one directory per hierarchy.
    sys_mount(
        Some(c"tmpfs"),
        &tpath,
        Some(c"tmpfs"),
        flags & !libc::MS_RDONLY,
        Some(c"mode=755"),
    )
    .map_err(merr("mounting the cgroup tmpfs".into()))?;
    // Re-resolve: the old fd names the directory under the new tmpfs.
    let top = resolve_in_root(root, &m.destination, DestKind::Dir)
        .map_err(merr("resolving the destination".into()))?;
    for (controller, host) in cfg.cgroup_paths {
        let sub_name = if controller.is_empty() {
            "unified"
        } else {
            // Named hierarchies (name=systemd) appear as their bare name.
            controller.strip_prefix("name=").unwrap_or(controller)
        };
        let sub_dest = format!("{}/{}", m.destination.trim_end_matches('/'), sub_name);
        let what = format!("cgroup hierarchy {sub_name:?}");
        let sub = resolve_in_root(root, &sub_dest, DestKind::Dir).map_err(merr(what.clone()))?;
        if cfg.cgroupns {
            let spath = fd_path(&sub);
            let res = if controller.is_empty() {
                sys_mount(Some(c"cgroup2"), &spath, Some(c"cgroup2"), flags, None)
            } else {
                let data = cstr(controller.as_bytes())?;
                sys_mount(Some(c"cgroup"), &spath, Some(c"cgroup"), flags, Some(&data))
            };
            res.map_err(merr(format!("mounting {what}")))?;
        } else {
            let bind = MountOptions {
                flags: flags | libc::MS_BIND | libc::MS_REC,
                ..Default::default()
            };
            let reopen = || resolve_in_root(root, &sub_dest, DestKind::Dir);
            bind_onto(&cstr(host.as_os_str().as_bytes())?, &sub, &bind, &reopen)
                .map_err(merr(format!("bind mount of {} for {what}", host.display())))?;
        }
        // Aliases like cpu -> cpu,cpuacct, as on the host.
        if controller.contains(',') {
            for alias in controller.split(',') {
                let _ = rustix::fs::symlinkat(controller.as_str(), &top, alias);
            }
        }
    }
    if ro {
        let tp = fd_path(&top);
        sys_mount(
            None,
            &tp,
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | (flags & !libc::MS_BIND),
            Some(c"mode=755"),
        )
        .map_err(merr("remounting the cgroup tmpfs read-only".into()))?;
    }
    apply_propagation(&top, opts).map_err(merr("changing propagation".into()))
}

/// (name, major, minor) of the devices every container gets.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn default_devices(root: &OwnedFd, in_userns: bool, has_proc: bool) -> Result<(), MountError> {
    let dev = resolve_in_root(root, "/dev", DestKind::Dir)
        .map_err(sys_err("resolving /dev in the rootfs", Path::new("/dev")))?;
    // A real directory fd for the *at calls (O_PATH works too, but be explicit).
    for &(name, major, minor) in DEFAULT_DEVICES {
        let p = PathBuf::from("/dev").join(name);
        make_node(
            root,
            &dev,
            name,
            FileType::CharacterDevice,
            major,
            minor,
            0o666,
            0,
            0,
            in_userns,
        )
        .map_err(sys_err(format!("creating device {}:{}", major, minor), &p))?;
    }
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if has_proc {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(sys_err(
                    format!("creating symlink to {target}"),
                    &PathBuf::from("/dev").join(name),
                )(e.into()))
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    root: &OwnedFd,
    dir: &OwnedFd,
    name: &str,
    ft: FileType,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    in_userns: bool,
) -> std::io::Result<()> {
    // Replace whatever is there (not a directory).
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    if in_userns {
        // mknod is not allowed: bind the host's node over an empty file.
        let host = match ft {
            FileType::CharacterDevice => format!("/sys/dev/char/{major}:{minor}"),
            _ => format!("/sys/dev/block/{major}:{minor}"),
        };
        let host_node = host_dev_path(&host).unwrap_or_else(|| PathBuf::from("/dev").join(name));
        let f = rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        drop(f);
        let target = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let src = CString::new(host_node.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let _ = root;
        return sys_mount(Some(&src), &fd_path(&target), None, libc::MS_BIND, None);
    }
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(dir, name, ft, Mode::from_raw_mode(mode & 0o7777), dev)?;
    // The umask trimmed the mode: set it exactly.
    let node = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let np = fd_path(&node);
    rustix::fs::chmod(np.as_c_str(), Mode::from_raw_mode(mode & 0o7777))?;
    if uid != 0 || gid != 0 {
        rustix::fs::chown(
            np.as_c_str(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
    }
    Ok(())
}

/// `/sys/dev/char/M:m` → `/dev/<DEVNAME>` read from its uevent.
fn host_dev_path(sys: &str) -> Option<PathBuf> {
    let uevent = std::fs::read_to_string(Path::new(sys).join("uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    Some(PathBuf::from("/dev").join(name))
}

fn create_device(
    root: &OwnedFd,
    index: usize,
    d: &silo_oci::Device,
    in_userns: bool,
) -> Result<(), MountError> {
    let bad = |reason: String| MountError::BadDevice {
        index,
        path: d.path.clone(),
        reason,
    };
    let ft = match d.typ.as_str() {
        "c" | "u" => FileType::CharacterDevice,
        "b" => FileType::BlockDevice,
        "p" => FileType::Fifo,
        other => {
            return Err(bad(format!(
                "unknown type {other:?} (expected c, u, b or p)"
            )))
        }
    };
    if !d.path.starts_with('/') {
        return Err(bad("path must be absolute".into()));
    }
    let comps = clean_components(&d.path);
    if comps.len() < 2 || comps[0] != "dev" {
        return Err(bad("path must be below /dev".into()));
    }
    let (major, minor) = match (u32::try_from(d.major), u32::try_from(d.minor)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            return Err(bad(format!(
                "major {} / minor {} out of range",
                d.major, d.minor
            )))
        }
    };
    let parent = format!("/{}", comps[..comps.len() - 1].join("/"));
    let name = &comps[comps.len() - 1];
    let derr = |what: &str| {
        let what = what.to_string();
        move |source: std::io::Error| MountError::Device {
            index,
            path: d.path.clone(),
            what,
            source,
        }
    };
    let dir = resolve_in_root(root, &parent, DestKind::Dir)
        .map_err(derr("resolving the parent directory"))?;
    let mode = d.file_mode.unwrap_or(0o666);
    let (uid, gid) = (d.uid.unwrap_or(0), d.gid.unwrap_or(0));
    let userns = in_userns && ft != FileType::Fifo;
    make_node(root, &dir, name, ft, major, minor, mode, uid, gid, userns)
        .map_err(derr("creating the node"))
}

/// pivot_root into `rootfs`, detach the old root, and chdir("/").
pub fn pivot_root(rootfs: &Path) -> Result<(), MountError> {
    let e = |what: &'static str| sys_err(what, rootfs);
    let old = rustix::fs::open(
        "/",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|x| e("opening the old root")(x.into()))?;
    let new = rustix::fs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|x| e("opening the new root")(x.into()))?;
    sys_mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(e("making \"/\" rslave"))?;
    rustix::process::fchdir(&new).map_err(|x| e("chdir into the rootfs")(x.into()))?;
    rustix::process::pivot_root(".", ".").map_err(|x| e("pivot_root")(x.into()))?;
    // The old root is now stacked under "."; detach it without telling the host.
    rustix::process::fchdir(&old).map_err(|x| e("chdir to the old root")(x.into()))?;
    sys_mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(e("making the old root rslave"))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(|x| e("detaching the old root")(x.into()))?;
    rustix::process::chdir("/").map_err(|x| e("chdir(\"/\")")(x.into()))?;
    drop(new);
    drop(old);
    Ok(())
}

/// Without a mount namespace of its own, the container's root is a
/// `chroot` into the rootfs (pivot_root or a move would change the host's
/// root).
pub fn host_ns_root(rootfs: &Path) -> Result<(), MountError> {
    let e = |what: &'static str| sys_err(what, rootfs);
    rustix::process::chdir(rootfs).map_err(|x| e("chdir into the rootfs")(x.into()))?;
    rustix::process::chroot(".").map_err(|x| e("chroot(\".\")")(x.into()))?;
    rustix::process::chdir("/").map_err(|x| e("chdir(\"/\")")(x.into()))?;
    Ok(())
}

/// The mount points at or under `dir` in this mount namespace, deepest
/// first (for the clean-up of a container without a mount namespace).
pub fn mounts_below(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| {
            PathBuf::from(
                mp.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|mp| mp.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    Ok(out)
}

/// `--no-pivot`: move the rootfs mount onto "/" and chroot into it.
pub fn move_root(rootfs: &Path) -> Result<(), MountError> {
    let e = |what: &'static str| sys_err(what, rootfs);
    rustix::process::chdir(rootfs).map_err(|x| e("chdir into the rootfs")(x.into()))?;
    let rc = cstr(rootfs.as_os_str().as_bytes())?;
    sys_mount(Some(&rc), c"/", None, libc::MS_MOVE, None)
        .map_err(e("moving the rootfs onto \"/\""))?;
    rustix::process::chroot(".").map_err(|x| e("chroot(\".\")")(x.into()))?;
    rustix::process::chdir("/").map_err(|x| e("chdir(\"/\")")(x.into()))?;
    Ok(())
}

/// After the root switch: propagation of "/" and a read-only root.
pub fn finish_rootfs(propagation: Option<&str>, readonly: bool) -> Result<(), MountError> {
    if let Some(p) = propagation {
        let f = propagation_flag(p).ok_or_else(|| MountError::UnknownPropagation(p.into()))?;
        sys_mount(None, c"/", None, f, None).map_err(sys_err(
            "setting linux.rootfsPropagation on \"/\"",
            Path::new("/"),
        ))?;
    }
    if readonly {
        let kept = kept_flags(c"/").map_err(sys_err("statvfs", Path::new("/")))?;
        sys_mount(
            None,
            c"/",
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | kept,
            None,
        )
        .map_err(sys_err(
            "remounting root read-only (root.readonly)",
            Path::new("/"),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::os::unix::process::CommandExt;

    const CHILD_ENV: &str = "SILO_ISOLATION_TEST_CHILD";
    const DIR_ENV: &str = "SILO_ISOLATION_TEST_DIR";

    /// Run `body` in a re-executed copy of this test binary inside a private
    /// mount namespace; the parent owns `dir` (created here, removed after the
    /// child exited, when its mounts are gone).
    pub(crate) fn in_mount_ns(test: &str, body: impl FnOnce(&Path)) {
        if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
            let dir = PathBuf::from(std::env::var(DIR_ENV).expect("test dir env"));
            body(&dir);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, test)
            .env(DIR_ENV, dir.path());
        // SAFETY: only unshare() and mount() between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing done in the child may propagate back to the host.
                sys_mount(None, c"/", None, libc::MS_PRIVATE | libc::MS_REC, None)
            });
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed: {text}");
        assert!(text.contains("1 passed"), "child ran no test: {text}");
    }

    fn mount(dest: &str, typ: Option<&str>, src: Option<&str>, opts: &[&str]) -> silo_oci::Mount {
        silo_oci::Mount {
            destination: dest.into(),
            typ: typ.map(String::from),
            source: src.map(String::from),
            options: opts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// (mount point, fs type) of every mount, from /proc/self/mountinfo.
    fn mountinfo() -> Vec<(String, String)> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let sep = f.iter().position(|x| *x == "-").unwrap();
                (f[4].replace("\\040", " "), f[sep + 1].to_string())
            })
            .collect()
    }

    fn fstype_at(p: &Path) -> Option<String> {
        let p = p.to_string_lossy();
        mountinfo()
            .into_iter()
            .rev()
            .find(|(m, _)| *m == p)
            .map(|(_, t)| t)
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rprivate".into(),
            "ro".into(),
            "rw".into(),
            "rbind".into(),
        ]);
        assert_eq!(
            o.flags,
            libc::MS_NOSUID | libc::MS_STRICTATIME | libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.is_bind());
        let o = parse_options(&[
            "nodev".into(),
            "dev".into(),
            "noexec".into(),
            "newinstance".into(),
        ]);
        assert_eq!(o.flags, libc::MS_NOEXEC);
        assert_eq!(o.data, "newinstance");
    }

    #[test]
    fn propagation_names() {
        assert_eq!(
            propagation_flag("rslave"),
            Some(libc::MS_SLAVE | libc::MS_REC)
        );
        assert_eq!(propagation_flag("unbindable"), Some(libc::MS_UNBINDABLE));
        assert_eq!(propagation_flag("bogus"), None);
        let e = root_propagation(Some("bogus")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.rootfsPropagation: unknown propagation \"bogus\""
        );
        assert_eq!(
            root_propagation(None).unwrap(),
            libc::MS_SLAVE | libc::MS_REC
        );
    }

    #[test]
    fn clean_components_clamps_dotdot() {
        assert_eq!(clean_components("/../../etc/./x"), ["etc", "x"]);
        assert_eq!(clean_components("/a/b/../c"), ["a", "c"]);
        assert!(clean_components("/").is_empty());
    }

    #[test]
    fn resolve_in_root_never_leaves_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", root.join("rel")).unwrap();
        std::fs::create_dir(root.join("tmp")).unwrap();
        let rfd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let name = format!("silo-resolve-{}", std::process::id());
        resolve_in_root(&rfd, &format!("/abs/{name}/d"), DestKind::Dir).unwrap();
        resolve_in_root(&rfd, &format!("/rel/{name}"), DestKind::File).unwrap();
        assert!(root.join(&name).join("d").is_dir());
        assert!(root.join("tmp").join(&name).is_file());
        assert!(!Path::new("/").join(&name).exists());
        assert!(!Path::new("/tmp").join(&name).exists());
    }

    /// Builds a rootfs with hostile symlinks, mounts into it, pivots, and
    /// applies the post-pivot steps.
    #[test]
    fn rootfs_mounts_pivot_and_paths() {
        in_mount_ns("mounts::tests::rootfs_mounts_pivot_and_paths", |dir| {
            let rootfs = dir.join("rootfs");
            for d in ["bin", "etc", "proc", "dev", "tmp", "sys"] {
                std::fs::create_dir_all(rootfs.join(d)).unwrap();
            }
            std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
            std::fs::write(rootfs.join("etc/secret"), "top").unwrap();
            std::os::unix::fs::symlink("/", rootfs.join("evil")).unwrap();
            std::os::unix::fs::symlink("../../etc", rootfs.join("evil2")).unwrap();
            let src = dir.join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("file"), "data").unwrap();
            let srcfile = dir.join("srcfile");
            std::fs::write(&srcfile, "single").unwrap();
            let marker = format!("silo-escape-{}", std::process::id());

            let mounts = vec![
                mount(
                    "/proc",
                    Some("proc"),
                    Some("proc"),
                    &["nosuid", "noexec", "nodev"],
                ),
                mount(
                    "/dev",
                    Some("tmpfs"),
                    Some("tmpfs"),
                    &["nosuid", "strictatime", "mode=755", "size=65536k"],
                ),
                mount(
                    "/dev/pts",
                    Some("devpts"),
                    Some("devpts"),
                    &[
                        "nosuid",
                        "noexec",
                        "newinstance",
                        "ptmxmode=0666",
                        "mode=0620",
                    ],
                ),
                mount(
                    "/dev/mqueue",
                    Some("mqueue"),
                    Some("mqueue"),
                    &["nosuid", "noexec", "nodev"],
                ),
                mount(
                    "/tmp",
                    Some("tmpfs"),
                    Some("tmpfs"),
                    &["size=1m", "mode=1777"],
                ),
                mount(
                    "/mnt/data",
                    None,
                    Some(src.to_str().unwrap()),
                    &["rbind", "ro"],
                ),
                mount(
                    "/etc/single",
                    Some("bind"),
                    Some(srcfile.to_str().unwrap()),
                    &["bind"],
                ),
                mount(
                    &format!("/evil/{marker}"),
                    Some("tmpfs"),
                    Some("tmpfs"),
                    &[],
                ),
                mount(
                    &format!("/evil2/{marker}"),
                    Some("tmpfs"),
                    Some("tmpfs"),
                    &[],
                ),
            ];
            let devices = vec![silo_oci::Device {
                typ: "c".into(),
                path: "/dev/extra/kmsg0".into(),
                major: 1,
                minor: 11,
                file_mode: Some(0o600),
                uid: Some(7),
                gid: Some(8),
            }];
            let cfg = RootfsConfig {
                rootfs: &rootfs,
                mounts: &mounts,
                propagation: None,
                devices: &devices,
                in_userns: false,
                cgroupns: false,
                cgroup_paths: &[],
                host_mount_ns: false,
            };
            prepare_rootfs(&cfg).unwrap();

            // Before pivot: check placement from the host view of this namespace.
            assert_eq!(fstype_at(&rootfs.join("proc")).as_deref(), Some("proc"));
            assert_eq!(fstype_at(&rootfs.join("tmp")).as_deref(), Some("tmpfs"));
            assert_eq!(
                fstype_at(&rootfs.join("dev/pts")).as_deref(),
                Some("devpts")
            );
            assert_eq!(fstype_at(&rootfs.join(&marker)).as_deref(), Some("tmpfs"));
            assert_eq!(
                fstype_at(&rootfs.join("etc").join(&marker)).as_deref(),
                Some("tmpfs")
            );
            assert!(!Path::new("/").join(&marker).exists(), "escaped to host /");
            assert!(
                !Path::new("/etc").join(&marker).exists(),
                "escaped to host /etc"
            );
            assert_eq!(
                std::fs::read_to_string(rootfs.join("mnt/data/file")).unwrap(),
                "data"
            );
            let e = std::fs::write(rootfs.join("mnt/data/file"), "x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EROFS));
            assert_eq!(
                std::fs::read_to_string(rootfs.join("etc/single")).unwrap(),
                "single"
            );
            let null = std::fs::metadata(rootfs.join("dev/null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
            assert_eq!(null.mode() & 0o777, 0o666);
            assert_eq!(
                std::fs::read_link(rootfs.join("dev/fd")).unwrap(),
                Path::new("/proc/self/fd")
            );
            assert_eq!(
                std::fs::read_link(rootfs.join("dev/ptmx")).unwrap(),
                Path::new("pts/ptmx")
            );
            assert_eq!(
                std::fs::read_link(rootfs.join("dev/core")).unwrap(),
                Path::new("/proc/kcore")
            );
            let extra = std::fs::metadata(rootfs.join("dev/extra/kmsg0")).unwrap();
            assert_eq!(extra.rdev(), rustix::fs::makedev(1, 11));
            assert_eq!(
                (extra.mode() & 0o777, extra.uid(), extra.gid()),
                (0o600, 7, 8)
            );

            pivot_root(&rootfs).unwrap();
            assert!(Path::new("/bin/busybox").exists());
            assert_eq!(std::fs::read_to_string("/etc/secret").unwrap(), "top");
            assert!(!Path::new("/work").exists(), "host root still visible");
            assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
            assert!(!mountinfo()
                .iter()
                .any(|(m, _)| m.starts_with(&*rootfs.to_string_lossy())));

            readonly_and_mask_checks();

            finish_rootfs(Some("rprivate"), true).unwrap();
            let e = std::fs::write("/newfile", "x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EROFS));
            // Other mounts stay writable.
            std::fs::write("/tmp/ok", "x").unwrap();
        });
    }

    fn readonly_and_mask_checks() {
        use crate::paths::{mask_paths, readonly_paths};
        std::fs::create_dir_all("/tmp/ro/sub").unwrap();
        std::fs::write("/tmp/ro/f", "x").unwrap();
        readonly_paths(&["/tmp/ro".into(), "/does/not/exist".into()]).unwrap();
        let e = std::fs::write("/tmp/ro/f", "y").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
        std::fs::write("/tmp/rw", "still writable").unwrap();

        mask_paths(&["/etc/secret".into(), "/mnt/data".into(), "/nope".into()]).unwrap();
        assert_eq!(std::fs::read_to_string("/etc/secret").unwrap(), "");
        assert_eq!(std::fs::read_dir("/mnt/data").unwrap().count(), 0);
        let e = std::fs::write("/mnt/data/new", "x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    }

    #[test]
    fn userns_mode_binds_host_devices() {
        in_mount_ns("mounts::tests::userns_mode_binds_host_devices", |dir| {
            let rootfs = dir.join("rootfs");
            std::fs::create_dir_all(rootfs.join("dev")).unwrap();
            let mounts = vec![mount("/dev", Some("tmpfs"), Some("tmpfs"), &["mode=755"])];
            let devices = vec![silo_oci::Device {
                typ: "c".into(),
                path: "/dev/kmsg".into(),
                major: 1,
                minor: 11,
                ..Default::default()
            }];
            let cfg = RootfsConfig {
                rootfs: &rootfs,
                mounts: &mounts,
                propagation: None,
                devices: &devices,
                in_userns: true,
                cgroupns: false,
                cgroup_paths: &[],
                host_mount_ns: false,
            };
            prepare_rootfs(&cfg).unwrap();
            for (name, maj, min) in [("null", 1, 3), ("urandom", 1, 9), ("kmsg", 1, 11)] {
                let p = rootfs.join("dev").join(name);
                let m = std::fs::metadata(&p).unwrap();
                assert!(m.file_type().is_char_device(), "{name}");
                assert_eq!(m.rdev(), rustix::fs::makedev(maj, min), "{name}");
                assert!(fstype_at(&p).is_some(), "{name} is not a bind mount");
            }
            std::fs::write(rootfs.join("dev/null"), "discarded").unwrap();
        });
    }

    #[test]
    fn move_root_chroots() {
        in_mount_ns("mounts::tests::move_root_chroots", |dir| {
            let rootfs = dir.join("rootfs");
            std::fs::create_dir_all(rootfs.join("etc")).unwrap();
            std::fs::write(rootfs.join("etc/marker"), "moved").unwrap();
            let cfg = RootfsConfig {
                rootfs: &rootfs,
                mounts: &[],
                propagation: Some("rprivate"),
                devices: &[],
                in_userns: false,
                cgroupns: false,
                cgroup_paths: &[],
                host_mount_ns: false,
            };
            prepare_rootfs(&cfg).unwrap();
            move_root(&rootfs).unwrap();
            assert_eq!(std::fs::read_to_string("/etc/marker").unwrap(), "moved");
            assert!(!Path::new("/work").exists());
        });
    }

    #[test]
    fn cgroup_v1_mount_binds_host_groups_read_only() {
        in_mount_ns(
            "mounts::tests::cgroup_v1_mount_binds_host_groups_read_only",
            |dir| {
                let rootfs = dir.join("rootfs");
                std::fs::create_dir_all(&rootfs).unwrap();
                // Fixture "host groups": plain directories stand in for cgroup dirs.
                let mem = dir.join("host-memory");
                std::fs::create_dir_all(&mem).unwrap();
                std::fs::write(mem.join("memory.limit_in_bytes"), "1234").unwrap();
                let paths = vec![("memory".to_string(), mem.clone())];
                let mounts = vec![mount(
                    "/sys/fs/cgroup",
                    Some("cgroup"),
                    Some("cgroup"),
                    &["ro", "nosuid"],
                )];
                let cfg = RootfsConfig {
                    rootfs: &rootfs,
                    mounts: &mounts,
                    propagation: None,
                    devices: &[],
                    in_userns: false,
                    cgroupns: false,
                    cgroup_paths: &paths,
                    host_mount_ns: false,
                };
                prepare_rootfs(&cfg).unwrap();
                let cg = rootfs.join("sys/fs/cgroup");
                assert_eq!(fstype_at(&cg).as_deref(), Some("tmpfs"));
                assert_eq!(
                    std::fs::read_to_string(cg.join("memory/memory.limit_in_bytes")).unwrap(),
                    "1234"
                );
                let e = std::fs::write(cg.join("memory/memory.limit_in_bytes"), "1").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EROFS));
                let e = std::fs::create_dir(cg.join("x")).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EROFS));
            },
        );
    }

    #[test]
    fn bad_devices_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rfd =
            rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let d = |t: &str, p: &str| silo_oci::Device {
            typ: t.into(),
            path: p.into(),
            major: 1,
            minor: 3,
            ..Default::default()
        };
        let e = create_device(&rfd, 0, &d("x", "/dev/foo"), false).unwrap_err();
        assert!(e.to_string().contains("linux.devices[0] (/dev/foo)"), "{e}");
        let e = create_device(&rfd, 1, &d("c", "/etc/../dev/../etc/foo"), false).unwrap_err();
        assert!(e.to_string().contains("below /dev"), "{e}");
        let e = create_device(&rfd, 2, &d("c", "dev/foo"), false).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }
}

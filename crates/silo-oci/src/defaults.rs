//! The default config.json that `spec` writes, equal in shape to runc's.

use crate::spec::*;

/// The capability set Docker and runc give a container by default.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The kernel filesystems every container gets: /proc, /dev, /dev/pts,
/// /dev/shm (`shm_kib` KiB), /dev/mqueue, /sys and /sys/fs/cgroup, with
/// Docker's options. `privileged` makes /sys and /sys/fs/cgroup writable.
pub fn system_mounts(shm_kib: i64, privileged: bool) -> Vec<Mount> {
    let shm = format!("size={shm_kib}k");
    let sys = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
    ]
}

/// A mount entry.
pub fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        typ: Some(typ.into()),
        source: Some(src.into()),
        options: opts.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A default spec: `sh` in a busybox-like rootfs at `rootfs`, with the
/// default capabilities, mounts, masked paths and namespaces. The seccomp
/// profile is added by the caller (see `silo-seccomp`).
pub fn default_spec() -> Spec {
    let caps = strings(&DEFAULT_CAPS);
    Spec {
        oci_version: crate::OCI_VERSION.into(),
        process: Some(Process {
            terminal: true,
            user: User::default(),
            args: vec!["sh".into()],
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "TERM=xterm".into(),
            ],
            cwd: "/".into(),
            capabilities: Some(Capabilities {
                bounding: Some(caps.clone()),
                effective: Some(caps.clone()),
                permitted: Some(caps),
                inheritable: None,
                ambient: None,
            }),
            rlimits: vec![Rlimit {
                typ: "RLIMIT_NOFILE".into(),
                hard: 1024,
                soft: 1024,
            }],
            no_new_privileges: true,
            ..Default::default()
        }),
        root: Some(Root {
            path: "rootfs".into(),
            readonly: true,
        }),
        hostname: Some("silo".into()),
        mounts: system_mounts(64 * 1024, false),
        linux: Some(Linux {
            resources: Some(Resources {
                devices: vec![DeviceCgroup {
                    allow: false,
                    access: Some("rwm".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            namespaces: [
                NamespaceType::Pid,
                NamespaceType::Network,
                NamespaceType::Ipc,
                NamespaceType::Uts,
                NamespaceType::Mount,
                NamespaceType::Cgroup,
            ]
            .into_iter()
            .map(|typ| Namespace { typ, path: None })
            .collect(),
            masked_paths: strings(&MASKED_PATHS),
            readonly_paths: strings(&READONLY_PATHS),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Paths Docker masks in every container.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in every container.
pub const READONLY_PATHS: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/interrupts",
];

//! Capability sets of the container process (the Windows sandbox's privilege
//! trimming): validation of names in the parent, and the bounding, permitted,
//! effective, inheritable and ambient sets in the child.

use caps::Capability;
use std::str::FromStr;

/// Failure of [`validate`], [`apply`] or [`keep_caps_across_setuid`].
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("process.capabilities.{set}: unknown capability {name:?}")]
    Unknown { set: &'static str, name: String },
    #[error("process.capabilities: {op}: {source}")]
    Syscall {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

fn sets(c: &silo_oci::Capabilities) -> [(&'static str, Option<&Vec<String>>); 5] {
    [
        ("bounding", c.bounding.as_ref()),
        ("effective", c.effective.as_ref()),
        ("inheritable", c.inheritable.as_ref()),
        ("permitted", c.permitted.as_ref()),
        ("ambient", c.ambient.as_ref()),
    ]
}

/// Parse one name; `CAP_` prefix required, case-insensitive.
pub fn parse_name(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    if !upper.starts_with("CAP_") {
        return None;
    }
    Capability::from_str(&upper).ok()
}

/// The bitmask of a set (None = empty).
fn mask(set: &'static str, names: Option<&Vec<String>>) -> Result<u64, CapsError> {
    let mut m = 0u64;
    for n in names.into_iter().flatten() {
        let c = parse_name(n).ok_or_else(|| CapsError::Unknown {
            set,
            name: n.clone(),
        })?;
        m |= c.bitmask();
    }
    Ok(m)
}

/// Check that every name in every set is a known capability.
pub fn validate(c: &silo_oci::Capabilities) -> Result<(), CapsError> {
    for (set, names) in sets(c) {
        mask(set, names)?;
    }
    Ok(())
}

fn sys_err(op: impl Into<String>) -> CapsError {
    CapsError::Syscall {
        op: op.into(),
        source: std::io::Error::last_os_error(),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn capget() -> Result<(u64, u64, u64), CapsError> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: hdr and a two-element data array are what v3 capget expects.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(sys_err("capget"));
    }
    let join = |lo: u32, hi: u32| (lo as u64) | ((hi as u64) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

fn capset(eff: u64, perm: u64, inh: u64) -> Result<(), CapsError> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: hdr and a two-element data array are what v3 capset expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(sys_err(format!(
            "capset(effective={eff:#x}, permitted={perm:#x}, inheritable={inh:#x})"
        )));
    }
    Ok(())
}

/// Apply all five sets. Call after the uid switch (with keep-caps set before it).
pub fn apply(c: &silo_oci::Capabilities) -> Result<(), CapsError> {
    let bounding = mask("bounding", c.bounding.as_ref())?;
    let effective = mask("effective", c.effective.as_ref())?;
    let inheritable = mask("inheritable", c.inheritable.as_ref())?;
    let permitted = mask("permitted", c.permitted.as_ref())?;
    let ambient = mask("ambient", c.ambient.as_ref())?;

    // After setuid to a non-root uid the effective set is empty; raise it to
    // the permitted set so CAP_SETPCAP is usable for the bounding drops.
    let (_, cur_perm, cur_inh) = capget()?;
    capset(cur_perm, cur_perm, cur_inh)?;

    // Drop what is not wanted without asking first: dropping a capability
    // that is already gone succeeds, and EINVAL marks the kernel's last one.
    for cap in 0..64u32 {
        if bounding & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(sys_err(format!(
                "dropping capability {cap} from the bounding set"
            )));
        }
    }

    capset(effective, permitted, inheritable)?;

    // SAFETY: prctl with integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(sys_err("clearing the ambient set"));
    }
    // The kernel only lets a capability be ambient if it is also permitted
    // and inheritable. runc's default spec lists ambient caps without an
    // inheritable set and runc silently skips them; we skip them the same way.
    let raisable = ambient & permitted & inheritable;
    for cap in 0..64u32 {
        if raisable & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(sys_err(format!(
                "raising ambient capability {cap} (it must be in permitted and inheritable)"
            )));
        }
    }
    Ok(())
}

/// `prctl(PR_SET_KEEPCAPS, 1)` so the permitted set survives `setresuid`.
pub fn keep_caps_across_setuid() -> Result<(), CapsError> {
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(sys_err("prctl(PR_SET_KEEPCAPS, 1)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn v(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn validate_names() {
        let ok = silo_oci::Capabilities {
            bounding: v(&["CAP_CHOWN", "cap_net_raw", "CAP_BPF"]),
            ..Default::default()
        };
        validate(&ok).unwrap();
        let bad = silo_oci::Capabilities {
            permitted: v(&["CAP_CHOWN", "CAP_FOO"]),
            ..Default::default()
        };
        let e = validate(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "process.capabilities.permitted: unknown capability \"CAP_FOO\""
        );
        let noprefix = silo_oci::Capabilities {
            ambient: v(&["CHOWN"]),
            ..Default::default()
        };
        assert!(validate(&noprefix).is_err());
    }

    fn status_field(status: &str, field: &str) -> u64 {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    #[test]
    fn apply_after_uid_switch_in_child() {
        let set = v(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        let c = silo_oci::Capabilities {
            bounding: set.clone(),
            effective: set.clone(),
            permitted: set.clone(),
            inheritable: v(&["CAP_KILL"]),
            ambient: v(&["CAP_KILL"]),
        };
        let user = silo_oci::User {
            uid: 1000,
            gid: 1000,
            ..Default::default()
        };
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["cat", "/proc/self/status"]);
        // SAFETY: the closure only makes prctl/capget/capset/id syscalls.
        unsafe {
            cmd.pre_exec(move || {
                keep_caps_across_setuid().map_err(std::io::Error::other)?;
                crate::user::switch(&user, true).map_err(std::io::Error::other)?;
                apply(&c).map_err(std::io::Error::other)
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let s = String::from_utf8_lossy(&out.stdout);
        let want = Capability::CAP_CHOWN.bitmask()
            | Capability::CAP_KILL.bitmask()
            | Capability::CAP_NET_BIND_SERVICE.bitmask();
        assert_eq!(status_field(&s, "CapBnd:"), want);
        assert_eq!(status_field(&s, "CapInh:"), Capability::CAP_KILL.bitmask());
        assert_eq!(status_field(&s, "CapAmb:"), Capability::CAP_KILL.bitmask());
        // A non-root exec keeps only the ambient caps in permitted/effective.
        assert_eq!(status_field(&s, "CapPrm:"), Capability::CAP_KILL.bitmask());
        assert_eq!(status_field(&s, "CapEff:"), Capability::CAP_KILL.bitmask());
    }
}

//! Parses `process.rlimits` in the parent and applies them in the child.

/// One resource limit ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `RLIMIT_*` value.
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
    /// The spec name, e.g. `RLIMIT_NOFILE`.
    pub name: String,
}

/// Failure of [`parse`] or [`apply`].
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("process.rlimits[{index}].type: unknown rlimit {name:?}")]
    Unknown { index: usize, name: String },
    #[error("process.rlimits[{index}] ({name}): soft limit {soft} is above hard limit {hard}")]
    SoftAboveHard {
        index: usize,
        name: String,
        soft: u64,
        hard: u64,
    },
    #[error("process.rlimits[{index}].type: {name} appears more than once")]
    Duplicate { index: usize, name: String },
    #[error(
        "{name}: raising the hard limit to {hard} above the current hard limit {current_hard} \
         needs CAP_SYS_RESOURCE, which this runtime does not have"
    )]
    NeedsCapSysResource {
        name: String,
        hard: u64,
        current_hard: String,
    },
    #[error("{name}: setrlimit(soft={soft}, hard={hard}): {source}")]
    Apply {
        name: String,
        soft: u64,
        hard: u64,
        #[source]
        source: std::io::Error,
    },
}

const TABLE: &[(&str, i32)] = &[
    ("RLIMIT_AS", libc::RLIMIT_AS as i32),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as i32),
    ("RLIMIT_CPU", libc::RLIMIT_CPU as i32),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as i32),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as i32),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as i32),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as i32),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as i32),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as i32),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as i32),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as i32),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as i32),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as i32),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as i32),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as i32),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as i32),
];

/// Resolve names and check `soft <= hard`.
pub fn parse(r: &[silo_oci::Rlimit]) -> Result<Vec<Limit>, RlimitError> {
    let mut out: Vec<Limit> = Vec::with_capacity(r.len());
    for (index, rl) in r.iter().enumerate() {
        let Some(&(name, resource)) = TABLE.iter().find(|(n, _)| *n == rl.typ) else {
            return Err(RlimitError::Unknown {
                index,
                name: rl.typ.clone(),
            });
        };
        if rl.soft > rl.hard {
            return Err(RlimitError::SoftAboveHard {
                index,
                name: name.into(),
                soft: rl.soft,
                hard: rl.hard,
            });
        }
        if out.iter().any(|l| l.resource == resource) {
            return Err(RlimitError::Duplicate {
                index,
                name: name.into(),
            });
        }
        out.push(Limit {
            resource,
            soft: rl.soft,
            hard: rl.hard,
            name: name.into(),
        });
    }
    Ok(out)
}

fn get(resource: i32) -> Option<libc::rlimit64> {
    let mut cur = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves (pid 0) with a null new-limit pointer
    // only writes into `cur`, a valid rlimit64.
    let rc = unsafe { libc::prlimit64(0, resource as _, std::ptr::null(), &mut cur) };
    (rc == 0).then_some(cur)
}

fn fmt_limit(v: u64) -> String {
    if v == libc::RLIM64_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Apply each limit to the calling process.
pub fn apply(l: &[Limit]) -> Result<(), RlimitError> {
    for lim in l {
        let new = libc::rlimit64 {
            rlim_cur: lim.soft,
            rlim_max: lim.hard,
        };
        // SAFETY: `new` is a valid rlimit64; the old-limit pointer is null.
        let rc = unsafe { libc::prlimit64(0, lim.resource as _, &new, std::ptr::null_mut()) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EPERM) {
                let current_hard = get(lim.resource)
                    .map(|c| fmt_limit(c.rlim_max))
                    .unwrap_or_else(|| "unknown".into());
                return Err(RlimitError::NeedsCapSysResource {
                    name: lim.name.clone(),
                    hard: lim.hard,
                    current_hard,
                });
            }
            return Err(RlimitError::Apply {
                name: lim.name.clone(),
                soft: lim.soft,
                hard: lim.hard,
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(t: &str, soft: u64, hard: u64) -> silo_oci::Rlimit {
        silo_oci::Rlimit {
            typ: t.into(),
            soft,
            hard,
        }
    }

    #[test]
    fn parse_known_names() {
        let l = parse(&[rl("RLIMIT_NOFILE", 10, 20), rl("RLIMIT_CORE", 0, 0)]).unwrap();
        assert_eq!(l[0].resource, libc::RLIMIT_NOFILE as i32);
        assert_eq!((l[0].soft, l[0].hard), (10, 20));
        assert_eq!(l[1].name, "RLIMIT_CORE");
    }

    #[test]
    fn parse_errors_name_index() {
        let e = parse(&[rl("RLIMIT_NOFILE", 1, 1), rl("RLIMIT_FOO", 1, 1)]).unwrap_err();
        assert!(e.to_string().contains("process.rlimits[1]"), "{e}");
        assert!(e.to_string().contains("RLIMIT_FOO"), "{e}");
        let e = parse(&[rl("RLIMIT_NOFILE", 5, 4)]).unwrap_err();
        assert!(
            matches!(e, RlimitError::SoftAboveHard { index: 0, .. }),
            "{e}"
        );
        let e = parse(&[rl("RLIMIT_NOFILE", 1, 1), rl("RLIMIT_NOFILE", 1, 1)]).unwrap_err();
        assert!(matches!(e, RlimitError::Duplicate { index: 1, .. }), "{e}");
    }

    #[test]
    fn eperm_message_names_limit_and_capability() {
        let e = RlimitError::NeedsCapSysResource {
            name: "RLIMIT_NOFILE".into(),
            hard: 4096,
            current_hard: "1024".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("RLIMIT_NOFILE") && m.contains("CAP_SYS_RESOURCE") && m.contains("1024")
        );
    }

    /// Runs `apply` in a child (pre_exec) and reports the limits busybox sees.
    #[test]
    fn apply_lowers_limits_and_explains_eperm() {
        use std::os::unix::process::CommandExt;
        let lims = parse(&[rl("RLIMIT_NOFILE", 100, 200)]).unwrap();
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["sh", "-c", "ulimit -n; ulimit -Hn"]);
        let l2 = lims.clone();
        // SAFETY: the closure only calls prlimit64.
        unsafe {
            cmd.pre_exec(move || apply(&l2).map_err(std::io::Error::other));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "100\n200\n");

        // Raising the hard limit above the current one (root lacks CAP_SYS_RESOURCE here).
        let cur = get(libc::RLIMIT_NOFILE as i32).unwrap();
        if cur.rlim_max != libc::RLIM64_INFINITY {
            let up = vec![Limit {
                resource: libc::RLIMIT_NOFILE as i32,
                soft: 1,
                hard: cur.rlim_max.saturating_mul(2).min(1 << 30),
                name: "RLIMIT_NOFILE".into(),
            }];
            let mut cmd = std::process::Command::new("/bin/true");
            // SAFETY: only prlimit64 and error formatting.
            unsafe {
                cmd.pre_exec(move || match apply(&up) {
                    // std reports only an errno from pre_exec: use a sentinel one.
                    Err(RlimitError::NeedsCapSysResource { .. }) => {
                        Err(std::io::Error::from_raw_os_error(libc::EOWNERDEAD))
                    }
                    Err(_) => Err(std::io::Error::from_raw_os_error(libc::ENOTRECOVERABLE)),
                    Ok(()) => Ok(()),
                });
            }
            match cmd.status() {
                // Either we have CAP_SYS_RESOURCE (raise works) or the error is the explained one.
                Ok(s) => assert!(s.success()),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOWNERDEAD), "{e}"),
            }
        }
    }
}

//! Switches the child to `process.user`: supplementary groups, gid, uid and umask.

/// Failure of [`switch`].
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("process.user.additionalGids: setgroups({gids:?}): {source}")]
    SetGroups {
        gids: Vec<u32>,
        #[source]
        source: std::io::Error,
    },
    #[error("process.user.gid: setresgid({gid}): {source}")]
    SetGid {
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("process.user.uid: setresuid({uid}): {source}")]
    SetUid {
        uid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("process.user.umask: {0:#o} is not a valid mode mask")]
    BadUmask(u32),
}

/// Set groups, gid, uid, then the umask (default 0o022).
///
/// Uses raw syscalls, which change only the calling thread: call it in the
/// single-threaded child only.
pub fn switch(user: &silo_oci::User, setgroups_allowed: bool) -> Result<(), UserError> {
    let umask = user.umask.unwrap_or(0o022);
    if umask > 0o777 {
        return Err(UserError::BadUmask(umask));
    }
    if setgroups_allowed {
        let gids: Vec<libc::gid_t> = user.additional_gids.clone();
        // SAFETY: the pointer and length describe `gids`, which outlives the call.
        let rc = unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) };
        if rc != 0 {
            return Err(UserError::SetGroups {
                gids,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, user.gid, user.gid, user.gid) };
    if rc != 0 {
        return Err(UserError::SetGid {
            gid: user.gid,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, user.uid, user.uid, user.uid) };
    if rc != 0 {
        return Err(UserError::SetUid {
            uid: user.uid,
            source: std::io::Error::last_os_error(),
        });
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn switch_in_child_sets_ids_groups_and_umask() {
        let user = silo_oci::User {
            uid: 1234,
            gid: 2345,
            umask: Some(0o027),
            additional_gids: vec![11, 12],
            username: None,
        };
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["sh", "-c", "id -u; id -g; id -G; umask"]);
        // SAFETY: the closure only makes raw id syscalls and umask.
        unsafe {
            cmd.pre_exec(move || switch(&user, true).map_err(std::io::Error::other));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let s = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "1234");
        assert_eq!(lines[1], "2345");
        let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
        groups.sort();
        assert_eq!(groups, ["11", "12", "2345"]);
        assert_eq!(lines[3], "0027");
    }

    #[test]
    fn bad_umask_refused() {
        let user = silo_oci::User {
            umask: Some(0o1777),
            ..Default::default()
        };
        assert!(matches!(switch(&user, false), Err(UserError::BadUmask(_))));
    }
}

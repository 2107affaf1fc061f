//! Installing a compiled filter on the calling thread. This runs in a forked child right
//! before `execve`, so it allocates nothing and takes no locks.

use crate::program::Program;

/// Why the kernel refused the filter. Building this value does not allocate; only formatting
/// it does.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("refusing to load an empty seccomp program")]
    Empty,
    #[error("seccomp program has {len} instructions; the kernel takes at most 65535")]
    TooLong { len: usize },
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}) failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Seccomp { flags: u32, errno: i32 },
    #[error("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Prctl { errno: i32 },
    #[error("seccomp TSYNC could not synchronize thread {tid} (it has a diverging filter)")]
    Tsync { tid: i64 },
}

fn errno() -> i32 {
    // `last_os_error` just reads errno; it does not allocate.
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Installs `prog` on the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog)`.
/// The caller must have set `no_new_privs` or hold CAP_SYS_ADMIN. Falls back to
/// `prctl(PR_SET_SECCOMP)` only when there are no flags and seccomp(2) is missing (ENOSYS).
/// Async-signal-safe: no allocation, no locks.
pub fn load(prog: &Program) -> Result<(), LoadError> {
    if prog.is_empty() {
        return Err(LoadError::Empty);
    }
    let len = u16::try_from(prog.len()).map_err(|_| LoadError::TooLong { len: prog.len() })?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; `SockFilter` is `#[repr(C)]` with the
        // same layout as `struct sock_filter` (checked by a unit test).
        filter: prog.instructions().as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the call; seccomp(2)
    // copies the program into the kernel before returning and touches no other memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            prog.flags() as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    if rc > 0 {
        return Err(LoadError::Tsync { tid: rc as i64 });
    }
    let e = errno();
    if e == libc::ENOSYS && prog.flags() == 0 {
        // SAFETY: same program pointer as above; prctl(PR_SET_SECCOMP) copies it too.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        return Err(LoadError::Prctl { errno: errno() });
    }
    Err(LoadError::Seccomp {
        flags: prog.flags(),
        errno: e,
    })
}

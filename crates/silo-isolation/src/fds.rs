//! Marks every runtime file descriptor close-on-exec right before `execve`, so
//! no descriptor of ours (a directory fd into the host, a socket) leaks into
//! the container (the CVE-2024-21626 class of escapes).

use std::path::{Path, PathBuf};

/// Failure of [`cloexec_from`].
#[derive(Debug, thiserror::Error)]
pub enum FdsError {
    #[error("cloexec_from: first fd {0} is negative")]
    NegativeFirst(i32),
    #[error("cloexec_from: reading the fd list {path}: {source}")]
    ListFds {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cloexec_from: setting FD_CLOEXEC on fd {fd}: {source}")]
    SetCloexec {
        fd: i32,
        #[source]
        source: std::io::Error,
    },
}

/// Mark every fd `>= first` as close-on-exec.
///
/// Uses `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`; on kernels without it,
/// walks `/proc/self/fd`.
pub fn cloexec_from(first: i32) -> Result<(), FdsError> {
    if first < 0 {
        return Err(FdsError::NegativeFirst(first));
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor
    // flags; it closes nothing and touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    cloexec_from_proc(Path::new("/proc/self/fd"), first)
}

/// The fallback: set `FD_CLOEXEC` on each fd listed in `fd_dir` that is `>= first`.
pub fn cloexec_from_proc(fd_dir: &Path, first: i32) -> Result<(), FdsError> {
    let list_err = |source| FdsError::ListFds {
        path: fd_dir.to_path_buf(),
        source,
    };
    // Collect first: the directory handle itself is one of the listed fds.
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(fd_dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        {
            if fd >= first {
                fds.push(fd);
            }
        }
    }
    for fd in fds {
        // SAFETY: fcntl on a plain integer fd; F_GETFD/F_SETFD only read or
        // change the descriptor flags. A stale fd yields EBADF, which we skip.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            continue; // closed since listing (e.g. the read_dir handle)
        }
        // SAFETY: as above.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        if rc < 0 {
            return Err(FdsError::SetCloexec {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::Mutex;

    /// The two tests change flags on ranges of fds; keep them from overlapping.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn raw_dup_without_cloexec() -> OwnedFd {
        // SAFETY: open with a valid NUL-terminated path; no O_CLOEXEC on purpose.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        // SAFETY: fd was just opened and is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn has_cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD only reads flags.
        let f = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(f >= 0);
        f & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn proc_fallback_marks_fds_above_first() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let a = raw_dup_without_cloexec();
        assert!(!has_cloexec(a.as_raw_fd()));
        cloexec_from_proc(Path::new("/proc/self/fd"), a.as_raw_fd()).unwrap();
        assert!(has_cloexec(a.as_raw_fd()));
    }

    #[test]
    fn close_range_marks_fds_and_leaves_lower_ones() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let a = raw_dup_without_cloexec();
        let b = raw_dup_without_cloexec();
        let (lo, hi) = if a.as_raw_fd() < b.as_raw_fd() {
            (a, b)
        } else {
            (b, a)
        };
        cloexec_from(hi.as_raw_fd()).unwrap();
        assert!(has_cloexec(hi.as_raw_fd()));
        assert!(!has_cloexec(lo.as_raw_fd()));
    }

    #[test]
    fn negative_first_is_refused() {
        assert!(matches!(cloexec_from(-1), Err(FdsError::NegativeFirst(-1))));
    }
}

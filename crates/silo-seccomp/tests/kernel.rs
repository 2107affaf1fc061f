//! Tests against the real kernel: filters are loaded in forked children and the errno a
//! syscall returns under them is checked; plus the on-disk cache and compile timings.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_oci::{Seccomp, SeccompSyscall};
use silo_seccomp::{compile, compile_cached, docker_default, load, Program};
use std::time::Instant;

/// Exit codes the child uses besides a raw errno (errnos are < 200).
const OK: i32 = 200;
const NNP_FAILED: i32 = 201;
const LOAD_FAILED: i32 = 202;

fn default_caps() -> Vec<String> {
    silo_oci::DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Forks; the child optionally loads `prog` (after setting no_new_privs), runs `call`, and
/// exits with the errno it got (or `OK`). Returns the child's exit code.
///
/// The child only makes raw syscalls and `_exit`s, so forking a multi-threaded test harness
/// is fine; `load` is async-signal-safe by contract, which this also exercises.
fn in_child(prog: Option<&Program>, call: impl Fn() -> libc::c_long) -> i32 {
    // SAFETY: fork has no preconditions; the child below only calls async-signal-safe code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = (|| {
            if let Some(prog) = prog {
                // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) only sets a flag on this process.
                if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                    return NNP_FAILED;
                }
                if load(prog).is_err() {
                    return LOAD_FAILED;
                }
            }
            if call() < 0 {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(255)
            } else {
                OK
            }
        })();
        // SAFETY: _exit ends the child immediately without running the parent's atexit state.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just forked, into a local.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

fn mkdirat(path: &std::ffi::CStr) -> libc::c_long {
    // SAFETY: mkdirat with AT_FDCWD and a valid NUL-terminated path.
    unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path.as_ptr(), 0o700) }
}

fn clone3_bogus() -> libc::c_long {
    // SAFETY: the args pointer is deliberately invalid; the kernel answers EFAULT (or the
    // filter answers first) and nothing is created.
    unsafe { libc::syscall(libc::SYS_clone3, 1usize, 88usize) }
}

fn unshare_ns() -> libc::c_long {
    // SAFETY: runs only in the forked child; a new mount namespace dies with it.
    unsafe { libc::unshare(libc::CLONE_NEWNS) as libc::c_long }
}

#[test]
fn custom_errno_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("made-by-child");
    let c = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
    let profile = Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        syscalls: vec![SeccompSyscall {
            names: vec!["mkdir".into(), "mkdirat".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: Some(42),
            args: vec![],
        }],
        ..Default::default()
    };
    let prog = compile(&profile).unwrap();
    assert_eq!(in_child(Some(&prog), || mkdirat(&c)), 42);
    assert!(!target.exists());
    // Control: without the filter the same call succeeds.
    assert_eq!(in_child(None, || mkdirat(&c)), OK);
    assert!(target.is_dir());
}

#[test]
fn docker_default_blocks_clone3_and_unshare() {
    let prog = compile(&docker_default(&default_caps())).unwrap();
    // Controls first: the kernel itself says EFAULT for the bogus clone3, and root may unshare.
    assert_eq!(in_child(None, clone3_bogus), libc::EFAULT);
    assert_eq!(in_child(None, unshare_ns), OK);
    assert_eq!(in_child(Some(&prog), clone3_bogus), libc::ENOSYS);
    assert_eq!(in_child(Some(&prog), unshare_ns), libc::EPERM);
    // Ordinary syscalls still work under the profile.
    let dir = tempfile::tempdir().unwrap();
    let c = std::ffi::CString::new(dir.path().join("d").to_str().unwrap()).unwrap();
    assert_eq!(in_child(Some(&prog), || mkdirat(&c)), OK);
}

#[test]
fn docker_default_with_sys_admin_allows_unshare() {
    let mut caps = default_caps();
    caps.push("CAP_SYS_ADMIN".into());
    let prog = compile(&docker_default(&caps)).unwrap();
    assert_eq!(in_child(Some(&prog), unshare_ns), OK);
    assert_eq!(in_child(Some(&prog), clone3_bogus), libc::EFAULT);
}

#[test]
fn default_profile_compiles_for_other_targets() {
    // s390x is left out: libseccomp cannot mix a big-endian ABI into an x86_64 filter.
    for arch in ["arm64", "riscv64", "ppc64le"] {
        let target = silo_seccomp::Target {
            arch: arch.into(),
            kernel: (6, 1),
        };
        let mut caps = default_caps();
        for extra in [None, Some("CAP_SYS_ADMIN")] {
            caps.extend(extra.map(String::from));
            let p = silo_seccomp::resolve_docker_profile_for(
                silo_seccomp::DOCKER_DEFAULT_PROFILE.as_bytes(),
                &caps,
                &target,
            )
            .unwrap();
            let prog = compile(&p).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert!(
                prog.len() > 100 && prog.len() < 4096,
                "{arch}: {}",
                prog.len()
            );
        }
    }
}

#[test]
fn tsync_and_log_flags_load() {
    let mut profile = Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        syscalls: vec![SeccompSyscall {
            names: vec!["mkdirat".into()],
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: Some(7),
            args: vec![],
        }],
        ..Default::default()
    };
    profile.flags = vec![
        "SECCOMP_FILTER_FLAG_TSYNC".into(),
        "SECCOMP_FILTER_FLAG_LOG".into(),
    ];
    let prog = compile(&profile).unwrap();
    assert_eq!(prog.flags(), 3);
    let c = std::ffi::CString::new("/nonexistent-silo-dir/x").unwrap();
    assert_eq!(in_child(Some(&prog), || mkdirat(&c)), 7);
}

#[test]
fn cache_hits_and_recovers_from_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let profile = docker_default(&default_caps());
    let fresh = compile(&profile).unwrap();
    assert!(!fresh.is_empty());

    let first = compile_cached(&profile, &cache).unwrap();
    assert_eq!(first, fresh);
    let file = cache.join(format!("{}.bpf", silo_seccomp::cache_key(&profile)));
    assert!(file.is_file());
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temp files left behind");

    // A valid cache file with a different (but well-formed) program proves the second call
    // reads the file instead of recompiling.
    let other = compile(&Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    })
    .unwrap();
    let stored = std::fs::read(&file).unwrap();
    let original = stored.clone();
    std::fs::remove_file(&file).unwrap();
    compile_cached(
        &Seccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            ..Default::default()
        },
        &cache,
    )
    .unwrap();
    let other_file = cache.join(format!(
        "{}.bpf",
        silo_seccomp::cache_key(&Seccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            ..Default::default()
        })
    ));
    std::fs::rename(&other_file, &file).unwrap();
    assert_eq!(
        compile_cached(&profile, &cache).unwrap(),
        other,
        "served from cache"
    );

    // Restore, then damage it in two ways: truncation and a flipped body byte.
    std::fs::write(&file, &original).unwrap();
    assert_eq!(compile_cached(&profile, &cache).unwrap(), fresh);
    std::fs::write(&file, &original[..original.len() - 3]).unwrap();
    assert_eq!(compile_cached(&profile, &cache).unwrap(), fresh);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        original,
        "rewritten after truncation"
    );
    let mut flipped = original.clone();
    let n = flipped.len();
    flipped[n - 5] ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    assert_eq!(compile_cached(&profile, &cache).unwrap(), fresh);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        original,
        "rewritten after corruption"
    );
}

#[test]
fn timing_report() {
    let profile = docker_default(&default_caps());
    let dir = tempfile::tempdir().unwrap();
    let n = 20;
    let t = Instant::now();
    let mut prog = None;
    for _ in 0..n {
        prog = Some(compile(&profile).unwrap());
    }
    let uncached = t.elapsed() / n;
    compile_cached(&profile, dir.path()).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        compile_cached(&profile, dir.path()).unwrap();
    }
    let cached = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        docker_default(&default_caps());
    }
    let resolve = t.elapsed() / n;
    println!(
        "docker default ({} insns, {} arches): resolve {:?}, compile uncached {:?}, cached {:?}",
        prog.map(|p| p.len()).unwrap_or(0),
        profile.architectures.len(),
        resolve,
        uncached,
        cached
    );
}

#[test]
fn default_profile_with_every_capability_compiles() {
    // Overlapping conditional blocks (ptrace twice, syslog twice, bpf twice) must not trip
    // libseccomp's duplicate-rule checks.
    let caps: Vec<String> = [
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_SYSLOG",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_BOOT",
        "CAP_SYS_MODULE",
        "CAP_SYS_PACCT",
        "CAP_SYS_RAWIO",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_SYS_NICE",
        "CAP_DAC_READ_SEARCH",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(default_caps())
    .collect();
    let prog = compile(&docker_default(&caps)).unwrap();
    assert!(!prog.is_empty());
}

//! Signal names and numbers, as users type them (`TERM`, `SIGTERM`,
//! `sigkill`, `9`, `RTMIN+3`) and as they are shown.

/// A signal that is neither a known name nor a number from 1 to 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signal {0:?}: use a number or a name like SIGTERM")]
pub struct InvalidSignal(pub String);

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal: a number from 1 to 64, or a name with or without
/// `SIG`, in any case, including `RTMIN`, `RTMAX`, `RTMIN+n` and `RTMAX-n`.
pub fn parse(s: &str) -> Result<i32, InvalidSignal> {
    let bad = || InvalidSignal(s.to_string());
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let rt = match name {
        "RTMIN" => Some(rtmin),
        "RTMAX" => Some(rtmax),
        _ => {
            if let Some(k) = name.strip_prefix("RTMIN+") {
                k.parse::<i32>().ok().map(|k| rtmin + k)
            } else if let Some(k) = name.strip_prefix("RTMAX-") {
                k.parse::<i32>().ok().map(|k| rtmax - k)
            } else {
                None
            }
        }
    };
    rt.filter(|n| (rtmin..=rtmax).contains(n)).ok_or_else(bad)
}

/// The name of signal `n` (`SIGTERM`), or None for one without a name.
pub fn name(n: i32) -> Option<String> {
    NAMES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(k, _)| format!("SIG{k}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse("SIGTERM"), Ok(libc::SIGTERM));
        assert_eq!(parse("kill"), Ok(libc::SIGKILL));
        assert_eq!(parse(" 9 "), Ok(9));
        assert_eq!(parse("SIGRTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert_eq!(parse("rtmax-1"), Ok(libc::SIGRTMAX() - 1));
        for bad in ["NOPE", "0", "65", "RTMIN+99", ""] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid signal"), "{e}");
        }
        assert_eq!(name(libc::SIGTERM).as_deref(), Some("SIGTERM"));
        assert_eq!(name(0), None);
    }
}

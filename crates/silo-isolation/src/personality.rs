//! Applies `linux.personality` (the execution domain: LINUX or LINUX32).

/// Failure of [`validate`] or [`apply`].
#[derive(Debug, thiserror::Error)]
pub enum PersonalityError {
    #[error("linux.personality.domain: unknown domain {0:?} (expected \"LINUX\" or \"LINUX32\")")]
    UnknownDomain(String),
    #[error("linux.personality.flags: flags are not supported: {0:?}")]
    FlagsUnsupported(Vec<String>),
    #[error("linux.personality: personality({domain}) failed: {source}")]
    Apply {
        domain: String,
        #[source]
        source: std::io::Error,
    },
}

/// `PER_LINUX` and `PER_LINUX32` from `<sys/personality.h>`.
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

fn domain_value(p: &silo_oci::Personality) -> Result<libc::c_ulong, PersonalityError> {
    if !p.flags.is_empty() {
        return Err(PersonalityError::FlagsUnsupported(p.flags.clone()));
    }
    match p.domain.as_str() {
        "LINUX" => Ok(PER_LINUX),
        "LINUX32" => Ok(PER_LINUX32),
        other => Err(PersonalityError::UnknownDomain(other.to_string())),
    }
}

/// Check the domain name and that no flags are requested.
pub fn validate(p: &silo_oci::Personality) -> Result<(), PersonalityError> {
    domain_value(p).map(|_| ())
}

/// Set the execution domain of the calling process.
pub fn apply(p: &silo_oci::Personality) -> Result<(), PersonalityError> {
    let v = domain_value(p)?;
    // SAFETY: personality() takes a plain integer and touches no memory.
    let rc = unsafe { libc::personality(v) };
    if rc == -1 {
        return Err(PersonalityError::Apply {
            domain: p.domain.clone(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(domain: &str, flags: &[&str]) -> silo_oci::Personality {
        silo_oci::Personality {
            domain: domain.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn validate_domains() {
        validate(&p("LINUX", &[])).unwrap();
        validate(&p("LINUX32", &[])).unwrap();
        let e = validate(&p("BSD", &[])).unwrap_err();
        assert!(e.to_string().contains("\"BSD\""), "{e}");
        let e = validate(&p("LINUX", &["ADDR_NO_RANDOMIZE"])).unwrap_err();
        assert!(e.to_string().contains("ADDR_NO_RANDOMIZE"), "{e}");
    }

    #[test]
    fn apply_linux32_in_child_changes_uname() {
        // Run in a child so the test process keeps its personality.
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["uname", "-m"]);
        // SAFETY: the closure only calls personality(), async-signal-safe.
        unsafe {
            cmd.pre_exec(|| apply(&p("LINUX32", &[])).map_err(std::io::Error::other));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let m = String::from_utf8_lossy(&out.stdout);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(m.trim(), "i686");
        }
    }
}

//! Parsing of the symbolic names a seccomp profile uses (actions, architectures, comparison
//! operators, filter flags), shared by the OCI compiler and the Docker-profile resolver so both
//! reject the same bad values with the same words.

use libseccomp::{ScmpAction, ScmpArch, ScmpCompareOp};
use std::str::FromStr;

/// What is wrong with one field of a profile. Callers pair it with the field's JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("unknown {kind} \"{value}\"")]
    Unknown { kind: &'static str, value: String },
    #[error(
        "{value} is not supported (seccomp user notification via listenerPath is not implemented)"
    )]
    Unsupported { value: String },
    #[error("{0}")]
    Invalid(String),
}

/// `SECCOMP_FILTER_FLAG_TSYNC`: synchronize the filter onto every thread of the process.
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`: log every action except `SECCOMP_RET_ALLOW`.
pub const FLAG_LOG: u32 = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: do not force speculative store bypass mitigation.
pub const FLAG_SPEC_ALLOW: u32 = 4;

/// Largest errno the kernel passes through from `SECCOMP_RET_ERRNO` (MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;

/// Checks that `name` is an action this crate knows, without building it.
pub(crate) fn check_action(name: &str) -> Result<(), FieldError> {
    parse_action(name, None).map(|_| ())
}

/// Maps an `SCMP_ACT_*` name plus its optional errno/trace value to a libseccomp action.
/// ERRNO and TRACE default to EPERM, as runc does.
pub(crate) fn parse_action(name: &str, ret: Option<u32>) -> Result<ScmpAction, FieldError> {
    let eperm = libc::EPERM as u32;
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_ERRNO" => {
            let v = ret.unwrap_or(eperm);
            if v > MAX_ERRNO {
                return Err(FieldError::Invalid(format!(
                    "errno {v} is out of range (at most {MAX_ERRNO})"
                )));
            }
            ScmpAction::Errno(v as i32)
        }
        "SCMP_ACT_TRACE" => {
            let v = ret.unwrap_or(eperm);
            let v = u16::try_from(v).map_err(|_| {
                FieldError::Invalid(format!("trace message {v} is out of range (at most 65535)"))
            })?;
            ScmpAction::Trace(v)
        }
        "SCMP_ACT_NOTIFY" => {
            return Err(FieldError::Unsupported {
                value: name.to_string(),
            })
        }
        other => {
            return Err(FieldError::Unknown {
                kind: "action",
                value: other.to_string(),
            })
        }
    })
}

/// Maps an `SCMP_ARCH_*` name to a libseccomp architecture token.
pub(crate) fn parse_arch(name: &str) -> Result<ScmpArch, FieldError> {
    if name == "SCMP_ARCH_NATIVE" {
        return Ok(ScmpArch::native());
    }
    ScmpArch::from_str(name).map_err(|_| FieldError::Unknown {
        kind: "architecture",
        value: name.to_string(),
    })
}

/// Maps an `SCMP_CMP_*` name to a libseccomp operator; `value` is the mask for MASKED_EQ.
pub(crate) fn parse_op(name: &str, value: u64) -> Result<ScmpCompareOp, FieldError> {
    Ok(match name {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(value),
        other => {
            return Err(FieldError::Unknown {
                kind: "operator",
                value: other.to_string(),
            })
        }
    })
}

/// Maps a `SECCOMP_FILTER_FLAG_*` name to its kernel bit.
pub(crate) fn parse_flag(name: &str) -> Result<u32, FieldError> {
    match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => Ok(FLAG_TSYNC),
        "SECCOMP_FILTER_FLAG_LOG" => Ok(FLAG_LOG),
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => Ok(FLAG_SPEC_ALLOW),
        other => Err(FieldError::Unknown {
            kind: "flag",
            value: other.to_string(),
        }),
    }
}

/// Syscall arguments are numbered 0..=5.
pub(crate) fn check_arg_index(index: u32) -> Result<(), FieldError> {
    if index > 5 {
        return Err(FieldError::Invalid(format!(
            "argument index {index} is out of range (0..=5)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(
            parse_action("SCMP_ACT_KILL", None),
            Ok(ScmpAction::KillThread)
        );
        assert_eq!(
            parse_action("SCMP_ACT_ERRNO", None),
            Ok(ScmpAction::Errno(libc::EPERM))
        );
        assert_eq!(
            parse_action("SCMP_ACT_ERRNO", Some(38)),
            Ok(ScmpAction::Errno(38))
        );
        assert!(matches!(
            parse_action("SCMP_ACT_ERRNO", Some(70000)),
            Err(FieldError::Invalid(_))
        ));
        assert!(matches!(
            parse_action("SCMP_ACT_NOTIFY", None),
            Err(FieldError::Unsupported { .. })
        ));
        let e = parse_action("SCMP_ACT_FOO", None).unwrap_err();
        assert_eq!(e.to_string(), "unknown action \"SCMP_ACT_FOO\"");
    }

    #[test]
    fn arches_ops_flags() {
        assert_eq!(parse_arch("SCMP_ARCH_X86"), Ok(ScmpArch::X86));
        assert!(parse_arch("SCMP_ARCH_VAX").is_err());
        assert_eq!(
            parse_op("SCMP_CMP_MASKED_EQ", 7),
            Ok(ScmpCompareOp::MaskedEqual(7))
        );
        assert!(parse_op("SCMP_CMP_XX", 0).is_err());
        assert_eq!(parse_flag("SECCOMP_FILTER_FLAG_SPEC_ALLOW"), Ok(4));
        assert!(parse_flag("SECCOMP_FILTER_FLAG_NEW_LISTENER").is_err());
        assert!(check_arg_index(6).is_err());
        assert!(check_arg_index(5).is_ok());
    }
}

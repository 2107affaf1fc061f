//! Validation of an OCI `linux.seccomp` profile and its compilation to classic BPF through
//! libseccomp (exported, never loaded, so compiling has no effect on the calling process).

use crate::fields::{self, FieldError};
use crate::program::Program;
use libseccomp::error::SeccompError;
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpFilterAttr, ScmpFilterContext, ScmpSyscall,
};
use silo_oci::Seccomp;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};

/// Why a profile could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A field holds a value we cannot accept; `path` is its JSON path in config.json.
    #[error("{path}: {problem}")]
    Field { path: String, problem: FieldError },
    /// libseccomp refused an operation (`what` says which, naming the field).
    #[error("libseccomp failed {what}: {source}")]
    Libseccomp {
        what: String,
        #[source]
        source: SeccompError,
    },
    /// Exporting the BPF through a memfd failed.
    #[error("exporting the seccomp BPF program: {source}")]
    Export {
        #[source]
        source: std::io::Error,
    },
    /// libseccomp exported something that is not a whole number of BPF instructions.
    #[error("libseccomp exported {len} bytes, which is not a whole number of BPF instructions")]
    BadExport { len: usize },
    /// Reading or writing the on-disk BPF cache failed.
    #[error("seccomp cache {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const ROOT: &str = "linux.seccomp";

fn at(path: impl Into<String>) -> impl FnOnce(FieldError) -> CompileError {
    let path = path.into();
    move |problem| CompileError::Field { path, problem }
}

fn lib(what: impl Into<String>) -> impl FnOnce(SeccompError) -> CompileError {
    let what = what.into();
    move |source| CompileError::Libseccomp { what, source }
}

/// One validated rule, ready to hand to libseccomp.
struct Rule {
    index: usize,
    names: Vec<String>,
    action: ScmpAction,
    conds: Vec<ScmpArgCompare>,
    /// More than one comparison on the same argument: libseccomp would AND them, runc ORs
    /// them by adding one rule per comparison, and so do we.
    split: bool,
}

/// A fully validated profile.
struct Checked {
    default: ScmpAction,
    arches: Vec<ScmpArch>,
    flags: u32,
    rules: Vec<Rule>,
}

/// Checks every field of the profile, naming the JSON path of the first bad one.
fn check(profile: &Seccomp) -> Result<Checked, CompileError> {
    if let Some(p) = &profile.listener_path {
        return Err(CompileError::Field {
            path: format!("{ROOT}.listenerPath"),
            problem: FieldError::Unsupported {
                value: format!("listenerPath \"{p}\""),
            },
        });
    }
    let default = fields::parse_action(&profile.default_action, profile.default_errno_ret)
        .map_err(at(format!("{ROOT}.defaultAction")))?;
    let mut arches = Vec::new();
    for (i, a) in profile.architectures.iter().enumerate() {
        arches.push(fields::parse_arch(a).map_err(at(format!("{ROOT}.architectures[{i}]")))?);
    }
    let mut flags = 0;
    for (i, f) in profile.flags.iter().enumerate() {
        flags |= fields::parse_flag(f).map_err(at(format!("{ROOT}.flags[{i}]")))?;
    }
    let mut rules = Vec::new();
    for (i, sc) in profile.syscalls.iter().enumerate() {
        let action = fields::parse_action(&sc.action, sc.errno_ret)
            .map_err(at(format!("{ROOT}.syscalls[{i}].action")))?;
        let mut conds = Vec::new();
        let mut per_arg = [0u8; 6];
        for (j, a) in sc.args.iter().enumerate() {
            let p = format!("{ROOT}.syscalls[{i}].args[{j}]");
            fields::check_arg_index(a.index).map_err(at(format!("{p}.index")))?;
            let op = fields::parse_op(&a.op, a.value).map_err(at(format!("{p}.op")))?;
            // For MASKED_EQ the value is the mask (carried by the op) and valueTwo the datum.
            let datum = match op {
                libseccomp::ScmpCompareOp::MaskedEqual(_) => a.value_two,
                _ => a.value,
            };
            per_arg[a.index as usize] += 1;
            conds.push(ScmpArgCompare::new(a.index, op, datum));
        }
        if sc.names.is_empty() {
            return Err(CompileError::Field {
                path: format!("{ROOT}.syscalls[{i}].names"),
                problem: FieldError::Invalid("no syscall names given".into()),
            });
        }
        rules.push(Rule {
            index: i,
            names: sc.names.clone(),
            action,
            conds,
            split: per_arg.iter().any(|&n| n > 1),
        });
    }
    Ok(Checked {
        default,
        arches,
        flags,
        rules,
    })
}

/// Validates and compiles an OCI seccomp profile for the native architecture plus the listed
/// `architectures`. Unknown syscall names are skipped; rules whose action equals the default
/// action are skipped. The filter is exported, not loaded.
pub fn compile(profile: &Seccomp) -> Result<Program, CompileError> {
    let c = check(profile)?;
    let mut ctx = ScmpFilterContext::new(c.default).map_err(lib(format!(
        "creating a filter with default action {} ({ROOT}.defaultAction)",
        profile.default_action
    )))?;
    // A binary tree of syscall numbers instead of a linear chain: the
    // kernel emulates the filter for every syscall number when it loads it
    // (to build its allow cache), so a shorter path per syscall makes both
    // loading and every later syscall cheaper.
    ctx.set_filter_attr(ScmpFilterAttr::CtlOptimize, 2)
        .map_err(lib("enabling binary-tree optimization".to_string()))?;
    for (i, arch) in c.arches.iter().enumerate() {
        ctx.add_arch(*arch).map_err(lib(format!(
            "adding architecture {} ({ROOT}.architectures[{i}])",
            profile.architectures[i]
        )))?;
    }
    for rule in &c.rules {
        if rule.action == c.default {
            continue;
        }
        for (j, name) in rule.names.iter().enumerate() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                // Profiles name syscalls newer than this libseccomp; skipping them is what
                // runc and crun do too.
                continue;
            };
            let what = || {
                format!(
                    "adding a rule for syscall \"{name}\" ({ROOT}.syscalls[{}].names[{j}])",
                    rule.index
                )
            };
            if rule.split {
                for cond in &rule.conds {
                    ctx.add_rule_conditional(rule.action, sys, std::slice::from_ref(cond))
                        .map_err(lib(what()))?;
                }
            } else {
                ctx.add_rule_conditional(rule.action, sys, &rule.conds)
                    .map_err(lib(what()))?;
            }
        }
    }
    let bytes = export(&ctx)?;
    Program::from_bytes(&bytes, c.flags).ok_or(CompileError::BadExport { len: bytes.len() })
}

/// Exports the filter's BPF into an anonymous memfd and reads it back.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, CompileError> {
    let export_err = |source| CompileError::Export { source };
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"silo-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(export_err(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(lib("exporting the BPF program"))?;
    file.seek(SeekFrom::Start(0)).map_err(export_err)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(export_err)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_oci::{SeccompArg, SeccompSyscall};

    fn profile(default: &str, rules: Vec<SeccompSyscall>) -> Seccomp {
        Seccomp {
            default_action: default.into(),
            syscalls: rules,
            ..Default::default()
        }
    }

    fn rule(names: &[&str], action: &str) -> SeccompSyscall {
        SeccompSyscall {
            names: names.iter().map(|s| s.to_string()).collect(),
            action: action.into(),
            ..Default::default()
        }
    }

    fn err(p: &Seccomp) -> String {
        compile(p).unwrap_err().to_string()
    }

    #[test]
    fn compiles_small_profile_with_flags() {
        let mut p = profile("SCMP_ACT_ALLOW", vec![rule(&["mkdir"], "SCMP_ACT_ERRNO")]);
        p.flags = vec![
            "SECCOMP_FILTER_FLAG_LOG".into(),
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW".into(),
        ];
        let prog = compile(&p).unwrap();
        assert!(!prog.is_empty());
        assert_eq!(prog.flags(), 2 | 4);
        // An extra architecture adds a dispatch branch, so the program grows.
        p.architectures = vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()];
        let bigger = compile(&p).unwrap();
        assert!(
            bigger.len() > prog.len(),
            "{} vs {}",
            bigger.len(),
            prog.len()
        );
    }

    #[test]
    fn unknown_syscalls_and_default_action_rules_are_skipped() {
        let base = compile(&profile("SCMP_ACT_ALLOW", vec![])).unwrap();
        let p = profile(
            "SCMP_ACT_ALLOW",
            vec![
                rule(&["no_such_syscall_xyz"], "SCMP_ACT_ERRNO"),
                rule(&["getpid"], "SCMP_ACT_ALLOW"),
            ],
        );
        assert_eq!(compile(&p).unwrap(), base);
    }

    #[test]
    fn errors_name_the_path() {
        let p = profile(
            "SCMP_ACT_ALLOW",
            vec![
                rule(&["read"], "SCMP_ACT_ERRNO"),
                rule(&["write"], "SCMP_ACT_FOO"),
            ],
        );
        assert_eq!(
            err(&p),
            "linux.seccomp.syscalls[1].action: unknown action \"SCMP_ACT_FOO\""
        );
        assert_eq!(
            err(&profile("SCMP_ACT_BAR", vec![])),
            "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_BAR\""
        );
        let mut p = profile("SCMP_ACT_ALLOW", vec![]);
        p.architectures = vec!["SCMP_ARCH_X86_64".into(), "SCMP_ARCH_Z80".into()];
        assert_eq!(
            err(&p),
            "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_Z80\""
        );
        let mut p = profile("SCMP_ACT_ALLOW", vec![]);
        p.flags = vec!["SECCOMP_FILTER_FLAG_NOPE".into()];
        assert_eq!(
            err(&p),
            "linux.seccomp.flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_NOPE\""
        );
        let mut r = rule(&["socket"], "SCMP_ACT_ERRNO");
        r.args = vec![
            SeccompArg {
                index: 0,
                value: 1,
                value_two: 0,
                op: "SCMP_CMP_EQ".into(),
            },
            SeccompArg {
                index: 1,
                value: 1,
                value_two: 0,
                op: "SCMP_CMP_ALMOST".into(),
            },
        ];
        assert_eq!(
            err(&profile("SCMP_ACT_ALLOW", vec![r.clone()])),
            "linux.seccomp.syscalls[0].args[1].op: unknown operator \"SCMP_CMP_ALMOST\""
        );
        r.args[1].op = "SCMP_CMP_EQ".into();
        r.args[1].index = 9;
        assert!(err(&profile("SCMP_ACT_ALLOW", vec![r]))
            .starts_with("linux.seccomp.syscalls[0].args[1].index: argument index 9"));
    }

    #[test]
    fn notify_is_unsupported() {
        let p = profile("SCMP_ACT_ALLOW", vec![rule(&["mkdir"], "SCMP_ACT_NOTIFY")]);
        let e = err(&p);
        assert!(
            e.starts_with("linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported"),
            "{e}"
        );
        let mut p = profile("SCMP_ACT_ALLOW", vec![]);
        p.listener_path = Some("/run/notify.sock".into());
        assert!(err(&p).starts_with("linux.seccomp.listenerPath: listenerPath"));
    }

    #[test]
    fn all_actions_and_ops_compile() {
        let actions = [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_LOG",
        ];
        let ops = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ];
        let mut rules = Vec::new();
        for (i, a) in actions.iter().enumerate() {
            let mut r = rule(&["mkdirat"], a);
            r.args = vec![SeccompArg {
                index: 2,
                value: 0o700 + i as u64,
                value_two: 0,
                op: "SCMP_CMP_EQ".into(),
            }];
            rules.push(r);
        }
        let mut r = rule(&["fchmod"], "SCMP_ACT_ERRNO");
        r.args = ops
            .iter()
            .map(|op| SeccompArg {
                index: 1,
                value: 0o777,
                value_two: 0o7,
                op: op.to_string(),
            })
            .collect();
        rules.push(r);
        let p = compile(&profile("SCMP_ACT_ALLOW", rules)).unwrap();
        assert!(p.len() > 20);
    }
}

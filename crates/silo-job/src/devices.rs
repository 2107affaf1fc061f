//! Device access control: OCI device rules as v1 devices.allow/deny writes, or as a v2 BPF program.

use std::path::{Path, PathBuf};

use silo_oci::DeviceCgroup;

use crate::bpf;

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("linux.resources.devices[{index}]: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("linux.resources.devices: the devices controller is not mounted")]
    NoController,
    #[error("linux.resources.devices: writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.resources.devices: {0}")]
    Bpf(#[from] bpf::BpfError),
}

/// A checked rule: type is 'a', 'b' or 'c'; access is a non-empty subset of "rwm".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

impl Rule {
    /// True for "a *:* rwm": the rule that sets the default for everything.
    pub fn is_everything(&self) -> bool {
        self.typ == 'a'
            && self.major.is_none()
            && self.minor.is_none()
            && ["r", "w", "m"].iter().all(|c| self.access.contains(c))
    }

    /// The v1 devices.allow/deny line.
    pub fn v1_line(&self) -> String {
        if self.is_everything() {
            return "a".into();
        }
        let num = |n: Option<u32>| n.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.typ,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

pub(crate) fn check(rules: &[DeviceCgroup]) -> Result<Vec<Rule>, DevicesError> {
    let mut out = Vec::with_capacity(rules.len());
    for (index, r) in rules.iter().enumerate() {
        let bad = |reason: String| DevicesError::Invalid { index, reason };
        let typ = match r.typ.as_deref() {
            None | Some("a") | Some("") => 'a',
            Some("b") => 'b',
            Some("c") => 'c',
            Some(t) => return Err(bad(format!("type {t:?} is not one of a, b, c"))),
        };
        let num = |n: Option<i64>, what: &str| -> Result<Option<u32>, DevicesError> {
            match n {
                None | Some(-1) => Ok(None),
                Some(v) if (0..=i64::from(u32::MAX >> 1)).contains(&v) => Ok(Some(v as u32)),
                Some(v) => Err(bad(format!("{what} {v} is out of range"))),
            }
        };
        let major = num(r.major, "major")?;
        let minor = num(r.minor, "minor")?;
        let access = r.access.clone().unwrap_or_else(|| "rwm".into());
        let access = if access.is_empty() {
            "rwm".to_string()
        } else {
            access
        };
        if let Some(c) = access.chars().find(|c| !"rwm".contains(*c)) {
            return Err(bad(format!(
                "access {access:?} has {c:?}; only r, w, m are allowed"
            )));
        }
        out.push(Rule {
            allow: r.allow,
            typ,
            major,
            minor,
            access,
        });
    }
    Ok(out)
}

/// v1: each rule is a line in devices.allow or devices.deny, in order; a leading deny-all
/// writes "a" to devices.deny, which drops the inherited allow-everything.
pub(crate) fn apply_v1(dir: &Path, rules: &[DeviceCgroup]) -> Result<(), DevicesError> {
    use std::io::Write;
    let rules = check(rules)?;
    // One open file per target, one write(2) per rule (the kernel takes one
    // rule per write), instead of an open/close for every rule.
    let mut open: [Option<std::fs::File>; 2] = [None, None];
    for r in &rules {
        let (slot, name) = if r.allow {
            (0, "devices.allow")
        } else {
            (1, "devices.deny")
        };
        let file = dir.join(name);
        let value = r.v1_line();
        let err = |source| DevicesError::Write {
            path: file.clone(),
            value: value.clone(),
            source,
        };
        if open[slot].is_none() {
            open[slot] = Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .map_err(err)?,
            );
        }
        if let Some(f) = open[slot].as_mut() {
            f.write_all(value.as_bytes()).map_err(err)?;
        }
    }
    Ok(())
}

/// v2: compiles the rules into a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the group.
pub(crate) fn apply_v2(dir: &Path, rules: &[DeviceCgroup]) -> Result<(), DevicesError> {
    let rules = check(rules)?;
    let prog = bpf::device_program(&rules);
    bpf::attach_device_program(dir, &prog)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: Option<&str>,
        maj: Option<i64>,
        min: Option<i64>,
        acc: Option<&str>,
    ) -> DeviceCgroup {
        DeviceCgroup {
            allow,
            typ: typ.map(Into::into),
            major: maj,
            minor: min,
            access: acc.map(Into::into),
        }
    }

    #[test]
    fn v1_lines() {
        let rules = check(&[
            rule(false, None, None, None, Some("rwm")),
            rule(true, Some("c"), Some(1), Some(3), Some("rw")),
            rule(true, Some("b"), Some(8), None, None),
        ])
        .unwrap();
        assert_eq!(rules[0].v1_line(), "a");
        assert_eq!(rules[1].v1_line(), "c 1:3 rw");
        assert_eq!(rules[2].v1_line(), "b 8:* rwm");
    }

    #[test]
    fn rejects_bad_rules() {
        let e = check(&[rule(true, Some("x"), None, None, None)]).unwrap_err();
        assert!(e.to_string().contains("devices[0]"), "{e}");
        let e = check(&[
            rule(true, None, None, None, None),
            rule(true, Some("c"), Some(1), Some(3), Some("rwx")),
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("devices[1]") && e.to_string().contains("'x'"),
            "{e}"
        );
    }

    #[test]
    fn v1_writes_in_order_to_fixture() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("devices.allow"), "").unwrap();
        std::fs::write(d.path().join("devices.deny"), "").unwrap();
        apply_v1(
            d.path(),
            &[
                rule(false, Some("a"), None, None, None),
                rule(true, Some("c"), Some(1), Some(5), Some("r")),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("devices.deny")).unwrap(),
            "a"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("devices.allow")).unwrap(),
            "c 1:5 r"
        );
    }
}

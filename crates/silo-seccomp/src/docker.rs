//! Docker's own seccomp profile format (archMap, name/names, includes/excludes by capability,
//! architecture and kernel version) resolved into an OCI profile, and Docker's default profile.

use crate::fields::{self, FieldError};
use serde_json::{Map, Value};
use silo_oci::{Seccomp, SeccompArg, SeccompSyscall};

/// Docker's default profile (moby profiles/seccomp/default.json), in Docker's format.
pub const DOCKER_DEFAULT_PROFILE: &str = include_str!("../profiles/default.json");

/// Why a Docker-format profile could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile is not valid JSON: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    /// `path` is the JSON path inside the profile file, e.g. `syscalls[3].action`.
    #[error("{path}: {problem}")]
    Field { path: String, problem: FieldError },
}

/// The machine a Docker profile is resolved for: `includes`/`excludes` match against these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The architecture in Go's naming, as Docker uses it: `amd64`, `arm64`, `s390x`, ...
    pub arch: String,
    /// Running kernel version (major, minor), for `minKernel`.
    pub kernel: (u32, u32),
}

impl Target {
    /// The machine we run on: compile-time architecture, kernel version from uname(2).
    pub fn native() -> Target {
        Target {
            arch: native_goarch().to_string(),
            kernel: running_kernel().unwrap_or((0, 0)),
        }
    }
}

fn native_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips64" => "mips64",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips" => "mips",
        other => other,
    }
}

/// The `SCMP_ARCH_*` name Docker's archMap uses for a Go architecture.
fn goarch_to_scmp(goarch: &str) -> Option<&'static str> {
    Some(match goarch {
        "386" => "SCMP_ARCH_X86",
        "amd64" => "SCMP_ARCH_X86_64",
        "arm" => "SCMP_ARCH_ARM",
        "arm64" => "SCMP_ARCH_AARCH64",
        "loong64" => "SCMP_ARCH_LOONGARCH64",
        "mips" => "SCMP_ARCH_MIPS",
        "mipsle" => "SCMP_ARCH_MIPSEL",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64le" => "SCMP_ARCH_MIPSEL64",
        "ppc" => "SCMP_ARCH_PPC",
        "ppc64" => "SCMP_ARCH_PPC64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390" => "SCMP_ARCH_S390",
        "s390x" => "SCMP_ARCH_S390X",
        _ => return None,
    })
}

fn running_kernel() -> Option<(u32, u32)> {
    // SAFETY: utsname is plain old data; zeroed is a valid value for uname to overwrite.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own and does nothing else.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates `release` within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    parse_kernel(&release.to_string_lossy())
}

/// Parses `major.minor` from a version like `6.18.0-1-amd64` or `4.8`.
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Docker's default seccomp profile resolved for `caps` and the native machine.
pub fn docker_default(caps: &[String]) -> Seccomp {
    match resolve_docker_profile(DOCKER_DEFAULT_PROFILE.as_bytes(), caps) {
        Ok(p) => p,
        // The embedded profile is checked by the unit tests; this cannot happen at run time.
        Err(e) => panic!("the embedded default seccomp profile is invalid: {e}"),
    }
}

/// Parses a Docker-format profile and resolves it for `caps` (names like `CAP_SYS_ADMIN`;
/// the `CAP_` prefix is optional) on the native machine.
pub fn resolve_docker_profile(json: &[u8], caps: &[String]) -> Result<Seccomp, ProfileError> {
    resolve_docker_profile_for(json, caps, &Target::native())
}

fn field(path: impl Into<String>, problem: FieldError) -> ProfileError {
    ProfileError::Field {
        path: path.into(),
        problem,
    }
}

fn bad_type(path: &str, expected: &str) -> ProfileError {
    field(path, FieldError::Invalid(format!("expected {expected}")))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Accessors over one JSON object that report errors with the object's path.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: String) -> Result<Self, ProfileError> {
        match v {
            Value::Object(map) => Ok(Obj { map, path }),
            _ => Err(bad_type(&path, "an object")),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, ProfileError> {
        self.get(key)
            .map(|v| Obj::new(v, self.path(key)))
            .transpose()
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, ProfileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad_type(&self.path(key), "a string")),
        }
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, ProfileError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad_type(&self.path(key), "a non-negative integer")),
        }
    }

    fn u32(&self, key: &str) -> Result<Option<u32>, ProfileError> {
        match self.u64(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| bad_type(&self.path(key), "a 32-bit integer")),
        }
    }

    fn list(&self, key: &str) -> Result<&'a [Value], ProfileError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(bad_type(&self.path(key), "an array")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ProfileError> {
        self.list(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad_type(&format!("{}[{i}]", self.path(key)), "a string")),
            })
            .collect()
    }
}

fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// A parsed `includes` or `excludes` block.
struct Filter {
    caps: Vec<String>,
    arches: Vec<String>,
    min_kernel: Option<(u32, u32)>,
}

fn parse_filter(o: &Obj) -> Result<Filter, ProfileError> {
    let min_kernel = match o.str("minKernel")? {
        None => None,
        Some(s) => Some(parse_kernel(s).ok_or_else(|| {
            field(
                o.path("minKernel"),
                FieldError::Invalid(format!("invalid kernel version \"{s}\" (want MAJOR.MINOR)")),
            )
        })?),
    };
    Ok(Filter {
        caps: o
            .strings("caps")?
            .iter()
            .map(|c| normalize_cap(c))
            .collect(),
        arches: o.strings("arches")?,
        min_kernel,
    })
}

fn check_arch_name(path: String, name: &str) -> Result<(), ProfileError> {
    fields::parse_arch(name)
        .map(|_| ())
        .map_err(|p| field(path, p))
}

/// [`resolve_docker_profile`] for an explicit target machine (used by tests, and by callers
/// preparing profiles for another machine).
pub fn resolve_docker_profile_for(
    json: &[u8],
    caps: &[String],
    target: &Target,
) -> Result<Seccomp, ProfileError> {
    let root: Value =
        serde_json::from_slice(json).map_err(|source| ProfileError::Json { source })?;
    let top = Obj::new(&root, String::new())?;
    let caps: Vec<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let has_cap = |c: &String| caps.contains(c);

    let default_action = top
        .str("defaultAction")?
        .ok_or_else(|| field("defaultAction", FieldError::Invalid("missing".into())))?
        .to_string();
    fields::check_action(&default_action).map_err(|p| field("defaultAction", p))?;
    let default_errno_ret = top.u32("defaultErrnoRet")?;

    let listed = top.strings("architectures")?;
    let arch_map = top.list("archMap")?;
    if !listed.is_empty() && !arch_map.is_empty() {
        return Err(field(
            "archMap",
            FieldError::Invalid("use either \"architectures\" or \"archMap\", not both".into()),
        ));
    }
    for (i, a) in listed.iter().enumerate() {
        check_arch_name(format!("architectures[{i}]"), a)?;
    }
    let mut architectures = listed;
    let native_scmp = goarch_to_scmp(&target.arch);
    for (i, entry) in arch_map.iter().enumerate() {
        let m = Obj::new(entry, format!("archMap[{i}]"))?;
        let arch = m.str("architecture")?.ok_or_else(|| {
            field(
                m.path("architecture"),
                FieldError::Invalid("missing".into()),
            )
        })?;
        check_arch_name(m.path("architecture"), arch)?;
        let subs = m.strings("subArchitectures")?;
        for (j, s) in subs.iter().enumerate() {
            check_arch_name(format!("{}[{j}]", m.path("subArchitectures")), s)?;
        }
        if native_scmp == Some(arch) {
            architectures.push(arch.to_string());
            architectures.extend(subs);
        }
    }

    let mut flags = top.strings("flags")?;
    for (i, f) in flags.iter().enumerate() {
        fields::parse_flag(f).map_err(|p| field(format!("flags[{i}]"), p))?;
    }
    flags.dedup();
    if let Some(p) = top.str("listenerPath")? {
        return Err(field(
            "listenerPath",
            FieldError::Unsupported {
                value: format!("listenerPath \"{p}\""),
            },
        ));
    }

    let mut syscalls = Vec::new();
    for (i, entry) in top.list("syscalls")?.iter().enumerate() {
        let s = Obj::new(entry, format!("syscalls[{i}]"))?;
        let mut names = s.strings("names")?;
        if let Some(name) = s.str("name")? {
            if !names.is_empty() {
                return Err(field(
                    s.path("name"),
                    FieldError::Invalid("use either \"name\" or \"names\", not both".into()),
                ));
            }
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err(field(
                s.path("names"),
                FieldError::Invalid("no syscall names given".into()),
            ));
        }
        let action = s
            .str("action")?
            .ok_or_else(|| field(s.path("action"), FieldError::Invalid("missing".into())))?;
        let errno_ret = s.u32("errnoRet")?;
        fields::parse_action(action, errno_ret).map_err(|p| field(s.path("action"), p))?;
        let mut args = Vec::new();
        for (j, a) in s.list("args")?.iter().enumerate() {
            let a = Obj::new(a, format!("{}[{j}]", s.path("args")))?;
            let index = a.u32("index")?.unwrap_or(0);
            fields::check_arg_index(index).map_err(|p| field(a.path("index"), p))?;
            let op = a
                .str("op")?
                .ok_or_else(|| field(a.path("op"), FieldError::Invalid("missing".into())))?;
            fields::parse_op(op, 0).map_err(|p| field(a.path("op"), p))?;
            args.push(SeccompArg {
                index,
                value: a.u64("value")?.unwrap_or(0),
                value_two: a.u64("valueTwo")?.unwrap_or(0),
                op: op.to_string(),
            });
        }
        let includes = s.obj("includes")?.map(|o| parse_filter(&o)).transpose()?;
        let excludes = s.obj("excludes")?.map(|o| parse_filter(&o)).transpose()?;

        if let Some(ex) = &excludes {
            if ex.arches.contains(&target.arch)
                || ex.caps.iter().any(has_cap)
                || ex.min_kernel.is_some_and(|k| target.kernel >= k)
            {
                continue;
            }
        }
        if let Some(inc) = &includes {
            if (!inc.arches.is_empty() && !inc.arches.contains(&target.arch))
                || !inc.caps.iter().all(has_cap)
                || inc.min_kernel.is_some_and(|k| target.kernel < k)
            {
                continue;
            }
        }
        syscalls.push(SeccompSyscall {
            names,
            action: action.to_string(),
            errno_ret,
            args,
        });
    }

    Ok(Seccomp {
        default_action,
        default_errno_ret,
        architectures,
        flags,
        listener_path: None,
        listener_metadata: None,
        syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn default_caps() -> Vec<String> {
        caps(&silo_oci::DEFAULT_CAPS)
    }

    fn amd64() -> Target {
        Target {
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    fn resolve(json: &str, c: &[String], t: &Target) -> Result<Seccomp, ProfileError> {
        resolve_docker_profile_for(json.as_bytes(), c, t)
    }

    /// Every syscall name allowed (unconditionally, i.e. without argument filters).
    fn allowed(p: &Seccomp) -> Vec<&str> {
        p.syscalls
            .iter()
            .filter(|s| s.action == "SCMP_ACT_ALLOW" && s.args.is_empty())
            .flat_map(|s| s.names.iter().map(String::as_str))
            .collect()
    }

    fn rules_for<'a>(p: &'a Seccomp, name: &str) -> Vec<&'a SeccompSyscall> {
        p.syscalls
            .iter()
            .filter(|s| s.names.iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_for_default_caps() {
        let p = resolve(DOCKER_DEFAULT_PROFILE, &default_caps(), &amd64()).unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.default_errno_ret, Some(1));
        assert_eq!(
            p.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        let a = allowed(&p);
        for name in [
            "read",
            "write",
            "execve",
            "arch_prctl",
            "modify_ldt",
            "chroot",
            "ptrace",
        ] {
            assert!(a.contains(&name), "{name} should be allowed");
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "reboot",
            "kexec_load",
            "bpf",
            "set_tls",
        ] {
            assert!(!a.contains(&name), "{name} should not be allowed");
        }
        // clone only without namespace flags; clone3 answers ENOSYS.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args[0].index, 0);
        assert_eq!(clone[0].args[0].value, 0x7E02_0000);
        assert_eq!(clone[0].args[0].op, "SCMP_CMP_MASKED_EQ");
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action, "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0].errno_ret, Some(38));
        // socket: everything but AF_VSOCK (40); personality: five allowed values.
        let socket = rules_for(&p, "socket");
        assert_eq!(
            (socket[0].args[0].value, socket[0].args[0].op.as_str()),
            (40, "SCMP_CMP_NE")
        );
        let pers: Vec<u64> = rules_for(&p, "personality")
            .iter()
            .map(|r| r.args[0].value)
            .collect();
        assert_eq!(pers, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn default_profile_caps_add_syscalls() {
        let mut c = default_caps();
        c.push("CAP_SYS_ADMIN".into());
        c.push("sys_ptrace".into()); // lower case, no prefix: still matches
        let p = resolve(DOCKER_DEFAULT_PROFILE, &c, &amd64()).unwrap();
        let a = allowed(&p);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "kcmp",
            "pidfd_getfd",
        ] {
            assert!(
                a.contains(&name),
                "{name} should be allowed with SYS_ADMIN/SYS_PTRACE"
            );
        }
        assert!(rules_for(&p, "clone3")
            .iter()
            .all(|r| r.action == "SCMP_ACT_ALLOW"));
        assert!(rules_for(&p, "clone").iter().all(|r| r.args.is_empty()));
        // Without CAP_SYS_CHROOT, chroot is gone.
        let p = resolve(DOCKER_DEFAULT_PROFILE, &caps(&["CAP_KILL"]), &amd64()).unwrap();
        assert!(!allowed(&p).contains(&"chroot"));
    }

    #[test]
    fn default_profile_by_arch_and_kernel() {
        let s390 = Target {
            arch: "s390x".into(),
            kernel: (6, 1),
        };
        let p = resolve(DOCKER_DEFAULT_PROFILE, &default_caps(), &s390).unwrap();
        assert_eq!(p.architectures, ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]);
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args[0].index, 1, "s390 passes clone flags second");
        let a = allowed(&p);
        assert!(a.contains(&"s390_runtime_instr"));
        assert!(!a.contains(&"arch_prctl"));

        let arm = Target {
            arch: "arm64".into(),
            kernel: (4, 4),
        };
        let p = resolve(DOCKER_DEFAULT_PROFILE, &default_caps(), &arm).unwrap();
        assert_eq!(p.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        let a = allowed(&p);
        assert!(a.contains(&"set_tls"));
        assert!(
            !a.contains(&"ptrace"),
            "ptrace needs kernel 4.8 without CAP_SYS_PTRACE"
        );
    }

    #[test]
    fn name_and_listed_architectures() {
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],
            "syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":42,
                         "args":[{"index":1,"value":511,"valueTwo":0,"op":"SCMP_CMP_GE"}]}]}"#;
        let p = resolve(json, &[], &amd64()).unwrap();
        assert_eq!(p.architectures, ["SCMP_ARCH_X86"]);
        assert_eq!(p.syscalls[0].names, ["mkdir"]);
        assert_eq!(p.syscalls[0].errno_ret, Some(42));
        assert_eq!(p.syscalls[0].args[0].value, 511);
    }

    #[test]
    fn errors_name_the_path() {
        let e = |json: &str| resolve(json, &[], &amd64()).unwrap_err().to_string();
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO"},{"names":["b"],"action":"SCMP_ACT_FOO"}]}"#
            ),
            "syscalls[1].action: unknown action \"SCMP_ACT_FOO\""
        );
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":1,"op":"EQ"}]}]}"#
            ),
            "syscalls[0].args[1].op: unknown operator \"EQ\""
        );
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_I386"]}]}"#
            ),
            "archMap[0].subArchitectures[0]: unknown architecture \"SCMP_ARCH_I386\""
        );
        assert_eq!(
            e(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["x86_64"]}"#),
            "architectures[0]: unknown architecture \"x86_64\""
        );
        assert_eq!(
            e(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#),
            "defaultAction: unknown action \"SCMP_ACT_NOPE\""
        );
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#
            ),
            "syscalls[0].name: use either \"name\" or \"names\", not both"
        );
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"four"}}]}"#
            ),
            "syscalls[0].includes.minKernel: invalid kernel version \"four\" (want MAJOR.MINOR)"
        );
        assert_eq!(
            e(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":"a","action":"SCMP_ACT_ERRNO"}]}"#
            ),
            "syscalls[0].names: expected an array"
        );
        assert!(e("{").starts_with("seccomp profile is not valid JSON"));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5.10-rc1"), Some((5, 10)));
        assert_eq!(parse_kernel("x"), None);
        assert!(Target::native().kernel >= (3, 0));
    }
}

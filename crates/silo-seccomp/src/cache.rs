//! An on-disk cache of compiled BPF programs keyed by profile hash, so that starting many
//! containers with the same profile pays libseccomp's compile cost once.
//!
//! File format (`<cache_dir>/<key>.bpf`): an 8-byte magic, the seccomp flags (u32 LE), the
//! instruction count (u32 LE), the SHA-256 of the body, then the native-endian instructions.
//! Anything that does not match exactly is treated as a miss and overwritten.

use crate::compile::{compile, CompileError};
use crate::program::{Program, INSN_SIZE};
use sha2::{Digest, Sha256};
use silo_oci::Seccomp;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SILOBPF\x01";
const HEADER: usize = 8 + 4 + 4 + 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache key for a profile: SHA-256 (hex) over the profile's serde_json form, the native
/// architecture and the libseccomp version, so a library upgrade never reuses stale BPF.
pub fn cache_key(profile: &Seccomp) -> String {
    let mut h = Sha256::new();
    // Bump when the compiler changes what it emits (v2: binary-tree filters).
    h.update(b"silo-seccomp cache v2\0");
    // Serializing these plain structs cannot fail; an empty body would only cost a miss.
    h.update(serde_json::to_vec(profile).unwrap_or_default());
    h.update(b"\0");
    h.update(format!("{:?}", libseccomp::ScmpArch::native()).as_bytes());
    h.update(b"\0");
    match libseccomp::ScmpVersion::current() {
        Ok(v) => h.update(format!("{}.{}.{}", v.major, v.minor, v.micro).as_bytes()),
        Err(_) => h.update(b"unknown"),
    }
    hex(&h.finalize())
}

fn encode(prog: &Program) -> Vec<u8> {
    let body = prog.to_bytes();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&prog.flags().to_le_bytes());
    out.extend_from_slice(&(prog.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

fn decode(data: &[u8]) -> Option<Program> {
    if data.len() < HEADER || !data.len().is_multiple_of(INSN_SIZE) || &data[..8] != MAGIC {
        return None;
    }
    let flags = u32::from_le_bytes(data[8..12].try_into().ok()?);
    let count = u32::from_le_bytes(data[12..16].try_into().ok()?) as usize;
    let body = &data[HEADER..];
    if count == 0 || body.len() != count * INSN_SIZE || Sha256::digest(body)[..] != data[16..48] {
        return None;
    }
    Program::from_bytes(body, flags)
}

/// Like [`compile`], but first looks for `<cache_dir>/<cache_key>.bpf` and, on a miss (or a
/// corrupt or truncated file), compiles and stores the result atomically (temp file, fsync,
/// rename, fsync of the directory). `cache_dir` is created if missing.
pub fn compile_cached(profile: &Seccomp, cache_dir: &Path) -> Result<Program, CompileError> {
    let key = cache_key(profile);
    let path = cache_dir.join(format!("{key}.bpf"));
    match fs::read(&path) {
        Ok(data) => {
            if let Some(p) = decode(&data) {
                return Ok(p);
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        // Unreadable entries are recompiled and replaced below; a real problem with the
        // directory surfaces when writing.
        Err(_) => {}
    }
    let prog = compile(profile)?;
    store(cache_dir, &path, &encode(&prog))?;
    Ok(prog)
}

fn store(dir: &Path, path: &Path, data: &[u8]) -> Result<(), CompileError> {
    let cache_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CompileError::Cache { path: p, source }
    };
    fs::create_dir_all(dir).map_err(cache_err(dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::options().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        cache_err(path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use silo_oci::SeccompSyscall;

    fn small() -> Seccomp {
        Seccomp {
            default_action: "SCMP_ACT_ALLOW".into(),
            syscalls: vec![SeccompSyscall {
                names: vec!["mkdirat".into()],
                action: "SCMP_ACT_ERRNO".into(),
                errno_ret: Some(42),
                args: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn encode_decode_and_reject_damage() {
        let p = compile(&small()).unwrap();
        let data = encode(&p);
        assert_eq!(data.len() % 8, 0);
        assert_eq!(decode(&data), Some(p));
        assert_eq!(
            decode(&data[..data.len() - 1]),
            None,
            "truncated to odd length"
        );
        assert_eq!(
            decode(&data[..data.len() - 8]),
            None,
            "one instruction short"
        );
        let mut bad = data.clone();
        bad[0] ^= 1;
        assert_eq!(decode(&bad), None, "magic");
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(decode(&bad), None, "body digest");
    }

    #[test]
    fn key_depends_on_profile() {
        let a = small();
        let mut b = small();
        b.syscalls[0].errno_ret = Some(43);
        assert_eq!(cache_key(&a), cache_key(&a.clone()));
        assert_ne!(cache_key(&a), cache_key(&b));
        assert_eq!(cache_key(&a).len(), 64);
    }
}

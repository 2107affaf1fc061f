//! cgroup v2 has no devices files: access is decided by a BPF_PROG_TYPE_CGROUP_DEVICE program,
//! which this module assembles from device rules and loads/attaches with raw bpf(2) calls.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::devices::Rule;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("opening cgroup dir {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "BPF_PROG_LOAD of the device program ({insns} instructions): {source}; verifier log: {log}"
    )]
    Load {
        insns: usize,
        log: String,
        #[source]
        source: std::io::Error,
    },
    #[error("detaching the old device program {id} from {path}: {source}")]
    Detach {
        path: PathBuf,
        id: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("BPF_PROG_ATTACH of the device program to {path}: {source}")]
    Attach {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const LDX_MEM_W: u8 = 0x61;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Builds the program. The last matching rule wins (as in OCI), so rules are checked from last
/// to first and the first hit returns; nothing matching means deny.
pub fn device_program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16), // r3 = requested access
        insn(LDX_MEM_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for r in rules.iter().rev() {
        // Each jump skips to the end of this rule's block; offsets are patched once its length is known.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        match r.typ {
            'b' => block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            'c' => block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR), true)),
            _ => {}
        }
        let mut mask = 0;
        for (c, bit) in [('m', ACC_MKNOD), ('r', ACC_READ), ('w', ACC_WRITE)] {
            if r.access.contains(c) {
                mask |= bit;
            }
        }
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every requested bit must be granted by this rule.
            block.push((insn(ALU64_MOV_X, 6, 3, 0, 0), false));
            block.push((insn(ALU64_AND_K, 6, 0, 0, mask), false));
            block.push((insn(JMP_JNE_X, 6, 3, 0, 0), true));
        }
        if let Some(m) = r.major {
            block.push((insn(JMP_JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor {
            block.push((insn(JMP_JNE_K, 5, 0, 0, m as i32), true));
        }
        let unconditional = block.is_empty();
        block.push((insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)), false));
        block.push((insn(JMP_EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jump)) in block.into_iter().enumerate() {
            if jump {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
        if unconditional {
            // Earlier rules can never be reached; the verifier rejects dead code.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The BPF_PROG_LOAD part of union bpf_attr, padded so newer kernels read zeros past it.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    pad: [u8; 64],
}

/// The BPF_PROG_ATTACH part of union bpf_attr.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u8; 108],
}

/// The BPF_PROG_QUERY part of union bpf_attr.
#[repr(C)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: [u8; 100],
}

/// The BPF_PROG_GET_FD_BY_ID part of union bpf_attr.
#[repr(C)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    pad: [u8; 116],
}

/// Ids of device programs attached directly to the cgroup (not inherited ones).
fn attached_ids(cg: &std::fs::File) -> Vec<u32> {
    let mut ids = [0u32; 64];
    let mut q = ProgQueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        pad: [0; 100],
    };
    match bpf(BPF_PROG_QUERY, &mut q) {
        Ok(_) => ids[..(q.prog_cnt as usize).min(ids.len())].to_vec(),
        // Nothing to replace if the kernel cannot tell us.
        Err(_) => Vec::new(),
    }
}

fn detach(cg: &std::fs::File, dir: &Path, id: u32) -> Result<(), BpfError> {
    let err = |source| BpfError::Detach {
        path: dir.to_path_buf(),
        id,
        source,
    };
    let mut get = GetFdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
        pad: [0; 116],
    };
    let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
        Ok(fd) => fd,
        // Already gone.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    // SAFETY: a successful BPF_PROG_GET_FD_BY_ID returns a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut d = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
        pad: [0; 108],
    };
    match bpf(BPF_PROG_DETACH, &mut d) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, properly sized #[repr(C)] bpf_attr image for this command; the
    // kernel reads at most size_of::<T>() bytes from it and writes only into buffers it names.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `prog` and attaches it (BPF_F_ALLOW_MULTI) to the cgroup dir, then detaches the device
/// programs that were attached there before, so a re-apply replaces rather than stacks. The
/// attachment keeps the program alive after our fd closes; removing the cgroup detaches it.
pub fn attach_device_program(dir: &Path, prog: &[Insn]) -> Result<(), BpfError> {
    let cg = std::fs::File::open(dir).map_err(|source| BpfError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let old = attached_ids(&cg);
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"silo_devs");
    let mut load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
        pad: [0; 64],
    };
    let fd = bpf(BPF_PROG_LOAD, &mut load).map_err(|source| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        BpfError::Load {
            insns: prog.len(),
            log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            source,
        }
    })?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut attach = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        pad: [0; 108],
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|source| BpfError::Attach {
        path: dir.to_path_buf(),
        source,
    })?;
    for id in old {
        detach(&cg, dir, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(allow: bool, typ: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule {
            allow,
            typ,
            major,
            minor,
            access: access.into(),
        }
    }

    #[test]
    fn jumps_land_on_the_next_block() {
        let p = device_program(&[r(true, 'c', Some(1), Some(3), "rwm")]);
        // 6 prologue + (type, major, minor jumps + mov + exit) + default (mov, exit)
        assert_eq!(p.len(), 6 + 5 + 2);
        assert_eq!(p[6].code, JMP_JNE_K);
        assert_eq!(p[6].off, 4); // skips major, minor, mov, exit
        assert_eq!(p[7].off, 3);
        assert_eq!(p[8].off, 2);
        assert_eq!(p[9], insn(ALU64_MOV_K, 0, 0, 0, 1));
        assert_eq!(p[11], insn(ALU64_MOV_K, 0, 0, 0, 0));
    }

    #[test]
    fn unconditional_rule_ends_the_program() {
        let p = device_program(&[
            r(true, 'c', Some(1), Some(3), "rwm"),
            r(false, 'a', None, None, "rwm"),
        ]);
        // The deny-all (checked first) matches everything: nothing after it is emitted.
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(p[6], insn(ALU64_MOV_K, 0, 0, 0, 0));
    }
}

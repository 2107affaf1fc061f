//! The compiled form of a profile: a classic-BPF instruction array plus seccomp(2) flags.

/// One classic-BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Size in bytes of one [`SockFilter`] (and of the kernel's `struct sock_filter`).
pub const INSN_SIZE: usize = 8;

/// A compiled classic-BPF program (the raw `struct sock_filter` array) plus the seccomp(2)
/// flags to load it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub(crate) insns: Vec<SockFilter>,
    pub(crate) flags: u32,
}

impl Program {
    /// Builds a program from native-endian `struct sock_filter` bytes as libseccomp exports
    /// them. Returns `None` when the length is not a whole number of instructions.
    pub fn from_bytes(bytes: &[u8], flags: u32) -> Option<Program> {
        if !bytes.len().is_multiple_of(INSN_SIZE) {
            return None;
        }
        let insns = bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| SockFilter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(Program { insns, flags })
    }

    /// The program as native-endian `struct sock_filter` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * INSN_SIZE);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    /// The BPF instructions.
    pub fn instructions(&self) -> &[SockFilter] {
        &self.insns
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True when the program has no instructions (the kernel would refuse to load it).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits to pass to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let p = Program {
            insns: vec![
                SockFilter {
                    code: 0x20,
                    jt: 1,
                    jf: 2,
                    k: 4,
                },
                SockFilter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
            ],
            flags: 3,
        };
        let b = p.to_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(Program::from_bytes(&b, 3), Some(p));
        assert_eq!(Program::from_bytes(&b[..15], 3), None);
    }

    #[test]
    fn layout_matches_kernel_struct() {
        assert_eq!(
            std::mem::size_of::<SockFilter>(),
            std::mem::size_of::<libc::sock_filter>()
        );
        assert_eq!(
            std::mem::align_of::<SockFilter>(),
            std::mem::align_of::<libc::sock_filter>()
        );
    }
}

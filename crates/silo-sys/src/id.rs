//! Random ids: container, exec and volume ids are 32 random bytes in hex,
//! as Docker's are.

/// Fills `buf` from the kernel's random pool (`getrandom`). Should that
/// fail (it cannot on kernels silo supports), the clock and a counter fill
/// it instead: ids must be unique, not secret.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // which is valid for writes of that length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ (u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 64)
            ^ u128::from(std::process::id());
        for (i, b) in rest.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8);
        }
        return;
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `n` random bytes as lowercase hex (2n digits).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf);
    hex(&buf)
}

/// A fresh 64-digit id, the shape of Docker's container and exec ids.
pub fn random_id() -> String {
    random_hex(32)
}

/// Whether `s` is non-empty lowercase hex.
pub fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = random_id();
        assert_eq!(a.len(), 64);
        assert!(is_hex(&a), "{a}");
        assert_ne!(a, random_id());
        assert_eq!(random_hex(3).len(), 6);
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
        assert!(!is_hex("") && !is_hex("AB") && !is_hex("xyz"));
    }
}

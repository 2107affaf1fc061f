//! Detach keys: finds an escape sequence (Docker's ctrl-p ctrl-q) in a
//! client's input stream, holding back the bytes of a partial match and
//! letting everything else through, across reads.

/// The scanner for one client's input.
#[derive(Debug, Clone, Default)]
pub struct Escape {
    keys: Vec<u8>,
    held: usize,
}

impl Escape {
    /// Scans for `keys`; an empty sequence never matches.
    pub fn new(keys: Vec<u8>) -> Escape {
        Escape { keys, held: 0 }
    }

    /// Appends to `out` what passes of `data`; true once the whole
    /// sequence was seen (it and everything after it in `data` dropped).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return false;
        }
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
            } else {
                // Not the sequence after all: what was held goes through,
                // and this byte may start the sequence again.
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if b == self.keys[0] {
                    self.held = 1;
                } else {
                    out.push(b);
                }
            }
            if self.held == self.keys.len() {
                self.held = 0;
                return true;
            }
        }
        false
    }

    /// At the end of the input: the held partial match was not the
    /// sequence, so it goes through.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.keys[..self.held]);
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTRL_P: u8 = 0x10;
    const CTRL_Q: u8 = 0x11;

    #[test]
    fn finds_the_sequence_across_reads() {
        let mut e = Escape::new(vec![CTRL_P, CTRL_Q]);
        let mut out = Vec::new();
        assert!(!e.feed(b"ab", &mut out));
        assert!(!e.feed(&[CTRL_P], &mut out));
        assert_eq!(out, b"ab", "a partial match is held back");
        assert!(e.feed(&[CTRL_Q, b'z'], &mut out));
        assert_eq!(out, b"ab", "the sequence and what follows are dropped");
    }

    #[test]
    fn a_broken_match_lets_the_bytes_through() {
        let mut e = Escape::new(vec![CTRL_P, CTRL_Q]);
        let mut out = Vec::new();
        assert!(!e.feed(&[CTRL_P, b'x', CTRL_P, CTRL_P], &mut out));
        assert_eq!(out, [CTRL_P, b'x', CTRL_P]);
        e.flush(&mut out);
        assert_eq!(out, [CTRL_P, b'x', CTRL_P, CTRL_P]);
        // No keys: everything passes.
        let mut e = Escape::new(vec![]);
        let mut out = Vec::new();
        assert!(!e.feed(&[CTRL_P, CTRL_Q], &mut out));
        assert_eq!(out, [CTRL_P, CTRL_Q]);
    }
}

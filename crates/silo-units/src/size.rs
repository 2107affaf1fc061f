//! docker's byte sizes (go-units `RAMInBytes`), as `-m`, `--memory-swap`,
//! `--shm-size`, tmpfs `size=` and runc's `update` flags take them.

use crate::{Kind, ParseError, Problem};

/// Parses a size the way docker's `RAMInBytes` does: a decimal number
/// (fractions allowed), an optional space, and an optional binary unit
/// k, m, g, t or p (any case), optionally followed by "b" or "ib"; or the
/// unit "b" alone. "64m" and "64MiB" are 64 × 2^20, "1.5k" is 1536, "512"
/// and "512b" are 512. The value is truncated to whole bytes.
///
/// White space around the value is ignored (docker refuses it; silo has
/// always taken it). Negative sizes are refused (runc's `-1` for
/// "unlimited" is the caller's business), and so is anything beyond
/// `i64::MAX` bytes.
pub fn parse_size(s: &str) -> Result<i64, ParseError> {
    let err = |problem| ParseError::new(Kind::Size, s, problem);
    let t = s.trim();
    // The number ends at the last digit or dot; a space there separates
    // it from the unit.
    let sep = t
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(|| err(Problem::Syntax))?;
    let (num, unit) = match t.as_bytes()[sep] {
        b' ' => (&t[..sep], &t[sep + 1..]),
        _ => (&t[..=sep], &t[sep + 1..]),
    };
    let n: f64 = num.parse().map_err(|_| err(Problem::Syntax))?;
    if n < 0.0 {
        return Err(err(Problem::Negative));
    }
    let unit = unit.to_ascii_lowercase();
    let mult: f64 = match unit.as_bytes() {
        [] | [b'b'] => 1.0,
        [prefix] | [prefix, b'b'] | [prefix, b'i', b'b'] => {
            let power = match prefix {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return Err(err(Problem::UnknownUnit)),
            };
            1024f64.powi(power)
        }
        _ => return Err(err(Problem::UnknownUnit)),
    };
    let bytes = n * mult;
    // 2^63 is exact in f64; anything at or past it does not fit.
    if bytes.is_nan() || bytes >= 2f64.powi(63) {
        return Err(err(Problem::OutOfRange));
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_parses, assert_refused};

    const K: i64 = 1 << 10;
    const M: i64 = 1 << 20;
    const G: i64 = 1 << 30;

    #[test]
    fn docker_sizes() {
        assert_parses(
            parse_size,
            &[
                ("0", 0),
                ("512", 512),
                ("512b", 512),
                ("512B", 512),
                ("32k", 32 * K),
                ("32K", 32 * K),
                ("32kb", 32 * K),
                ("32Kib", 32 * K),
                ("32KIB", 32 * K),
                ("64m", 64 * M),
                ("100m", 100 * M),
                ("2MiB", 2 * M),
                ("1g", G),
                ("1G", G),
                ("1gb", G),
                ("2t", 2 << 40),
                ("3p", 3 << 50),
                ("3PB", 3 << 50),
                ("8191p", 8191 << 50),
            ],
        );
    }

    #[test]
    fn numbers_spaces_and_fractions() {
        assert_parses(
            parse_size,
            &[
                ("1.5m", 3 << 19),
                ("1.5k", 1536),
                ("0.5", 0),
                ("1.9", 1),
                (".5k", 512),
                ("2.k", 2048),
                ("1e3", 1000),
                ("1e3m", 1000 * M),
                ("+5m", 5 * M),
                ("-0", 0),
                ("32 mb", 32 * M),
                ("32 ", 32),
                (" 64m\n", 64 * M),
            ],
        );
    }

    #[test]
    fn refusals() {
        assert_refused(
            parse_size,
            &[
                ("", Problem::Syntax),
                ("m", Problem::Syntax),
                ("abc", Problem::Syntax),
                ("lots", Problem::Syntax),
                ("inf", Problem::Syntax),
                ("1.2.3m", Problem::Syntax),
                ("32m b", Problem::Syntax),
                ("1  m", Problem::Syntax),
                ("0x10", Problem::Syntax),
                ("-5m", Problem::Negative),
                ("-1", Problem::Negative),
                ("12x", Problem::UnknownUnit),
                ("64mm", Problem::UnknownUnit),
                ("32bm", Problem::UnknownUnit),
                ("5bb", Problem::UnknownUnit),
                ("5i", Problem::UnknownUnit),
                ("5ib", Problem::UnknownUnit),
                ("5kbb", Problem::UnknownUnit),
                ("5mi", Problem::UnknownUnit),
                ("5kibb", Problem::UnknownUnit),
                ("5e", Problem::UnknownUnit),
                ("50%", Problem::UnknownUnit),
                ("8192p", Problem::OutOfRange),
                ("9223372036854775808", Problem::OutOfRange),
                ("1e400", Problem::OutOfRange),
            ],
        );
    }
}

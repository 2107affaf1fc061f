//! Go's `time.ParseDuration`, which docker uses for every duration flag.

use crate::{Kind, ParseError, Problem};

/// Nanoseconds per unit, as Go spells them.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // "us", MICRO SIGN, GREEK SMALL LETTER MU
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration the way Go's `time.ParseDuration` does: an optional
/// sign, then one or more numbers, each with an optional fraction and a
/// unit (ns, us/µs/μs, ms, s, m, h): "300ms", "-1.5h", "1h2m3.5s", ".5us";
/// a bare "0" (with or without a sign) is zero. Gives nanoseconds.
///
/// Integer math throughout: a fraction is truncated to whole nanoseconds
/// exactly, however many digits it has (Go scales the fraction in floating
/// point instead).
/// Anything beyond what an `i64` of nanoseconds holds (about ±292 years)
/// is an error, as in Go.
pub fn parse_go_duration(s: &str) -> Result<i64, ParseError> {
    let err = |problem| ParseError::new(Kind::Duration, s, problem);
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err(Problem::Syntax));
    }
    // The magnitude; up to 2^63 for a negative duration.
    let limit: u64 = i64::MAX as u64 + u64::from(neg);
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (int, after) = rest.split_at(digits(rest));
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(digits(a)),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err(Problem::Syntax));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(err(Problem::MissingUnit));
        }
        let unit = unit_nanos(unit).ok_or_else(|| err(Problem::UnknownUnit))?;
        let out_of_range = || err(Problem::OutOfRange);
        let mut whole: u64 = 0;
        for d in int.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(d - b'0')))
                .ok_or_else(out_of_range)?;
        }
        // floor(0.d1d2…dn × unit), from the last digit to the first:
        // floor((d + x/10)…) nests exactly, and each step stays below unit.
        let part = frac
            .bytes()
            .rev()
            .fold(0u64, |acc, d| (u64::from(d - b'0') * unit + acc) / 10);
        total = whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(part))
            .and_then(|p| p.checked_add(total))
            .filter(|&t| t <= limit)
            .ok_or_else(out_of_range)?;
        rest = after;
    }
    Ok(if neg {
        0i64.wrapping_sub_unsigned(total)
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_parses, assert_refused};

    #[test]
    fn go_syntax() {
        assert_parses(
            parse_go_duration,
            &[
                ("0", 0),
                ("+0", 0),
                ("-0", 0),
                ("0s", 0),
                ("3ns", 3),
                ("10us", 10_000),
                ("10\u{b5}s", 10_000),
                ("10\u{3bc}s", 10_000),
                ("300ms", 300_000_000),
                ("200ms", 200_000_000),
                ("45s", 45_000_000_000),
                ("10m", 600_000_000_000),
                ("1m30s", 90_000_000_000),
                ("1h2m3.5s", 3_723_500_000_000),
                ("1h30m", 5_400_000_000_000),
                ("30m1h", 5_400_000_000_000),
                ("1s1s", 2_000_000_000),
                ("+2s", 2_000_000_000),
                ("-1s", -1_000_000_000),
                ("-1.5h", -5_400_000_000_000),
                ("007s", 7_000_000_000),
            ],
        );
    }

    #[test]
    fn fractions_truncate_exactly() {
        // More digits than any integer type holds.
        let long = format!("1.{}s", "9".repeat(100));
        assert_parses(
            parse_go_duration,
            &[
                ("1.5h", 5_400_000_000_000),
                (".5s", 500_000_000),
                (".5us", 500),
                ("1.s", 1_000_000_000),
                ("0.1s", 100_000_000),
                ("1.0000000001s", 1_000_000_000),
                ("1.9999999999s", 1_999_999_999),
                ("0.5ns", 0),
                ("1.5ns", 1),
                ("0.3h", 1_080_000_000_000),
                // 1/36 h is 100 s; any finite run of 7s stays just below it.
                ("0.0277777777777777777777777777777h", 99_999_999_999),
                ("0.02777777777777777777777777777778h", 100_000_000_000),
                (&long, 1_999_999_999),
            ],
        );
    }

    #[test]
    fn the_i64_range_and_no_more() {
        assert_parses(
            parse_go_duration,
            &[
                ("2562047h47m16.854775807s", i64::MAX),
                ("9223372036854775807ns", i64::MAX),
                ("-2562047h47m16.854775808s", i64::MIN),
                ("-9223372036854775808ns", i64::MIN),
            ],
        );
        let out_of_range = [
            "2562047h47m16.854775808s",
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "2562048h",
            "99999999999h",
            "18446744073709551616ns",
            "99999999999999999999999999ns",
            "9223372036854775807ns1ns",
        ]
        .map(|s| (s, Problem::OutOfRange));
        assert_refused(parse_go_duration, &out_of_range);
    }

    #[test]
    fn refusals() {
        assert_refused(
            parse_go_duration,
            &[
                ("", Problem::Syntax),
                ("-", Problem::Syntax),
                ("+", Problem::Syntax),
                ("s", Problem::Syntax),
                (".s", Problem::Syntax),
                ("-.s", Problem::Syntax),
                ("--1s", Problem::Syntax),
                ("+-1s", Problem::Syntax),
                (" 1s", Problem::Syntax),
                ("soon", Problem::Syntax),
                ("5", Problem::MissingUnit),
                ("00", Problem::MissingUnit),
                ("1s5", Problem::MissingUnit),
                ("1..5s", Problem::MissingUnit),
                ("1.2.3s", Problem::MissingUnit),
                ("1x", Problem::UnknownUnit),
                ("1S", Problem::UnknownUnit),
                ("1 s", Problem::UnknownUnit),
                ("1s ", Problem::UnknownUnit),
                ("1e3s", Problem::UnknownUnit),
                ("1sec", Problem::UnknownUnit),
            ],
        );
    }
}

//! Bandwidth rates as tc writes them ("10mbit", "1gbit", "500kbps"), for
//! the QOS policy and any other cap on bytes a second.

use crate::{Kind, ParseError, Problem};

/// Parses a rate into bytes a second. A decimal number and a unit, any
/// case, with tc's meanings: `bit`, `kbit`, `mbit`, `gbit`, `tbit` count
/// bits (powers of 1000); `bps`, `kbps`, `mbps`, `gbps`, `tbps` count
/// bytes (tc's own, surprising, convention). A unit is required: a bare
/// number says nothing about bits or bytes. Zero and fractions of a byte
/// a second are refused.
pub fn parse_rate(s: &str) -> Result<u64, ParseError> {
    let err = |problem| ParseError::new(Kind::Rate, s, problem);
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err(Problem::MissingUnit))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err(if unit.starts_with('-') {
            Problem::Negative
        } else {
            Problem::Syntax
        }));
    }
    let n: f64 = num.parse().map_err(|_| err(Problem::Syntax))?;
    let (scale, bits) = match unit.trim().to_ascii_lowercase().as_str() {
        "bit" => (1.0, true),
        "kbit" => (1e3, true),
        "mbit" => (1e6, true),
        "gbit" => (1e9, true),
        "tbit" => (1e12, true),
        "bps" => (1.0, false),
        "kbps" => (1e3, false),
        "mbps" => (1e6, false),
        "gbps" => (1e9, false),
        "tbps" => (1e12, false),
        _ => return Err(err(Problem::UnknownUnit)),
    };
    let bytes = n * scale / if bits { 8.0 } else { 1.0 };
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err(Problem::OutOfRange));
    }
    if bytes < 1.0 {
        return Err(err(Problem::OutOfRange));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_parses, assert_refused};

    #[test]
    fn rates_in_bits_and_bytes() {
        assert_parses(
            parse_rate,
            &[
                ("10mbit", 1_250_000),
                ("1Gbit", 125_000_000),
                ("1.5kbit", 187),
                ("800bit", 100),
                ("100kbps", 100_000),
                (" 2MBps ", 2_000_000),
            ],
        );
        assert_refused(
            parse_rate,
            &[
                ("10", Problem::MissingUnit),
                ("fast", Problem::Syntax),
                ("10 furlongs", Problem::UnknownUnit),
                ("-5mbit", Problem::Negative),
                ("1.2.3mbit", Problem::Syntax),
                ("0mbit", Problem::OutOfRange),
                ("4bit", Problem::OutOfRange),
            ],
        );
    }
}

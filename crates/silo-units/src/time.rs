//! Unix times as RFC 3339 text and back, and the calendar arithmetic
//! between them (proleptic Gregorian, after Howard Hinnant's
//! `days_from_civil` / `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Kind, ParseError, Problem};

/// A unix time broken down into its UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// The UTC date and time of `secs` seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: i64) -> UtcTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // civil_from_days: eras of 400 years (146 097 days) starting on
        // 0000-03-01, so that the leap day ends a year.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// Seconds since 1970-01-01T00:00:00Z. Fields out of their range carry
    /// over (day 32 of January is the 1st of February).
    pub fn to_unix(&self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        // days_from_civil
        let y = if m <= 2 { self.year - 1 } else { self.year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Whether every field is within its range (the day within its month).
    fn is_valid(&self) -> bool {
        let leap = self.year % 4 == 0 && (self.year % 100 != 0 || self.year % 400 == 0);
        let month_days = match self.month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return false,
        };
        (1..=month_days).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }
}

/// `secs` seconds and `nanos` (below 10^9) nanoseconds since the epoch as
/// RFC 3339 UTC with all nine fraction digits: "2024-01-02T03:04:05.000000000Z".
/// The width is fixed, so the order of the strings is the order of the
/// times (for years 0 to 9999).
pub fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let t = UtcTime::from_unix(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The current time as [`format_rfc3339`] writes it.
pub fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Parses an RFC 3339 time into seconds since the epoch and nanoseconds
/// (0 to 999 999 999, always forward from the seconds):
/// "2024-01-02T15:04:05Z", "2024-01-02T15:04:05.123456789+01:00".
/// A fraction longer than nine digits is truncated; `t` and `z` may be
/// lowercase. Beyond RFC 3339 it also takes what docker's `--since` takes:
/// a space instead of the `T`, a time without a zone (taken as UTC), and a
/// date alone (midnight UTC). Every field must be within its range (no
/// February 30th, no leap second).
pub fn parse_rfc3339(s: &str) -> Result<(i64, u32), ParseError> {
    let syntax = || ParseError::new(Kind::Time, s, Problem::Syntax);
    let b = s.as_bytes();
    // A fixed-width decimal field at `at`.
    let num = |at: usize, len: usize| -> Result<u32, ParseError> {
        let field = b.get(at..at + len).ok_or_else(syntax)?;
        if !field.iter().all(u8::is_ascii_digit) {
            return Err(syntax());
        }
        Ok(field.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| match b.get(at) == Some(&c) {
        true => Ok(()),
        false => Err(syntax()),
    };
    let year = num(0, 4)?;
    sep(4, b'-')?;
    let month = num(5, 2)?;
    sep(7, b'-')?;
    let day = num(8, 2)?;
    let mut t = UtcTime {
        year: year.into(),
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let (mut nanos, mut offset) = (0, 0);
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(syntax());
        }
        t.hour = num(11, 2)?;
        sep(13, b':')?;
        t.minute = num(14, 2)?;
        sep(16, b':')?;
        t.second = num(17, 2)?;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(syntax());
            }
            let kept = digits.min(9);
            nanos = num(i + 1, kept)? * 10u32.pow((9 - kept) as u32);
            i += 1 + digits;
        }
        offset = match &b[i..] {
            [] | [b'Z'] | [b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (hours, minutes) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if hours > 23 || minutes > 59 {
                    return Err(ParseError::new(Kind::Time, s, Problem::OutOfRange));
                }
                let o = i64::from(hours * 3600 + minutes * 60);
                if *sign == b'-' {
                    -o
                } else {
                    o
                }
            }
            _ => return Err(syntax()),
        };
    }
    if !t.is_valid() {
        return Err(ParseError::new(Kind::Time, s, Problem::OutOfRange));
    }
    Ok((t.to_unix() - offset, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_parses, assert_refused};

    #[test]
    fn formats_known_dates() {
        for (secs, nanos, want) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (-1, 0, "1969-12-31T23:59:59.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_704_164_645, 123_456_789, "2024-01-02T03:04:05.123456789Z"),
            (1_795_000_000, 0, "2026-11-18T11:06:40.000000000Z"),
            (1_798_761_599, 0, "2026-12-31T23:59:59.000000000Z"),
            (-62_135_596_800, 0, "0001-01-01T00:00:00.000000000Z"),
            (
                253_402_300_799,
                999_999_999,
                "9999-12-31T23:59:59.999999999Z",
            ),
        ] {
            assert_eq!(format_rfc3339(secs, nanos), want);
            assert_eq!(parse_rfc3339(want), Ok((secs, nanos)));
        }
        let now = now_rfc3339();
        assert_eq!((now.len(), &now[10..11], &now[29..]), (30, "T", "Z"));
    }

    #[test]
    fn calendar_round_trips() {
        // Every day from year -1 to 2401 (leap years, centuries, 2000),
        // and a second before and after each midnight.
        let first = UtcTime {
            year: -1,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        };
        let mut prev = UtcTime::from_unix(first.to_unix() - 1);
        for day in 0..(2403 * 366) {
            let secs = first.to_unix() + day * 86_400;
            let t = UtcTime::from_unix(secs);
            assert!(t.is_valid(), "{t:?}");
            assert_eq!(t.to_unix(), secs);
            assert_eq!((t.hour, t.minute, t.second), (0, 0, 0));
            assert_eq!((prev.hour, prev.minute, prev.second), (23, 59, 59));
            let next_day = t.day == prev.day + 1 && t.month == prev.month;
            let next_month = t.day == 1 && t.month == prev.month % 12 + 1;
            assert!(next_day || next_month, "{prev:?} -> {t:?}");
            prev = UtcTime::from_unix(secs + 86_399);
        }
        for secs in [0, 1, -1, 86_399, 86_400, -86_401, 1 << 40, -(1 << 40)] {
            assert_eq!(UtcTime::from_unix(secs).to_unix(), secs);
        }
    }

    #[test]
    fn parses_rfc3339() {
        assert_parses(
            parse_rfc3339,
            &[
                ("1970-01-01T00:00:00Z", (0, 0)),
                ("1969-12-31T23:59:59Z", (-1, 0)),
                ("2024-01-02T04:04:05+01:00", (1_704_164_645, 0)),
                ("2024-01-01T21:34:05-05:30", (1_704_164_645, 0)),
                ("2024-01-02T03:04:05-00:00", (1_704_164_645, 0)),
                ("2024-01-02t03:04:05z", (1_704_164_645, 0)),
                ("2026-11-29T12:00:01.5Z", (1_795_953_601, 500_000_000)),
                ("2026-11-29T12:00:01.000001Z", (1_795_953_601, 1_000)),
                (
                    "2026-11-29T12:00:01.1234567891234Z",
                    (1_795_953_601, 123_456_789),
                ),
                ("2000-02-29T00:00:00Z", (951_782_400, 0)),
                ("2024-02-29T00:00:00Z", (1_709_164_800, 0)),
                // What docker's --since takes besides RFC 3339.
                ("2024-01-02 03:04:05", (1_704_164_645, 0)),
                ("2024-01-02T03:04:05", (1_704_164_645, 0)),
                ("2024-01-02T03:04:05.5", (1_704_164_645, 500_000_000)),
                ("2024-01-02", (1_704_153_600, 0)),
            ],
        );
    }

    #[test]
    fn refusals() {
        assert_refused(
            parse_rfc3339,
            &[
                ("", Problem::Syntax),
                ("garbage", Problem::Syntax),
                ("2024", Problem::Syntax),
                ("2024-1-02", Problem::Syntax),
                ("24-01-02", Problem::Syntax),
                ("2024/01/02", Problem::Syntax),
                ("2024-01-02T", Problem::Syntax),
                ("2024-01-02 ", Problem::Syntax),
                ("2024-01-02X03:04:05Z", Problem::Syntax),
                ("2024-01-02T03:04Z", Problem::Syntax),
                ("2024-01-02T3:04:05Z", Problem::Syntax),
                ("2024-01-02T03:04:05.Z", Problem::Syntax),
                ("2024-01-02T03:04:05ZZ", Problem::Syntax),
                ("2024-01-02T03:04:05 Z", Problem::Syntax),
                ("2024-01-02T03:04:05+0100", Problem::Syntax),
                ("2024-01-02T03:04:05+01", Problem::Syntax),
                ("2024-01-02 03:04:05 +0000 UTC", Problem::Syntax),
                ("+2024-01-02", Problem::Syntax),
                ("2024-01-0\u{e9}", Problem::Syntax),
                ("2024-13-02", Problem::OutOfRange),
                ("2024-00-02", Problem::OutOfRange),
                ("2024-01-00", Problem::OutOfRange),
                ("2023-02-29", Problem::OutOfRange),
                ("1900-02-29", Problem::OutOfRange),
                ("2024-04-31", Problem::OutOfRange),
                ("2024-01-02T24:00:00Z", Problem::OutOfRange),
                ("2024-01-02T23:60:00Z", Problem::OutOfRange),
                ("2024-01-02T23:59:60Z", Problem::OutOfRange),
                ("2024-01-02T03:04:05+24:00", Problem::OutOfRange),
                ("2024-01-02T03:04:05+01:60", Problem::OutOfRange),
            ],
        );
    }
}

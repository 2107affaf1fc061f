//! Parsing and printing of the units docker's CLI uses: memory sizes
//! ("64m", "1g"), CPU counts, human sizes and durations, timestamps, and
//! `--filter key=value` sets.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors for command-line values, naming the flag and the bad text.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UnitError {
    #[error("invalid size: {0:?} (expected a number with an optional unit b, k, m, g, t or p)")]
    Size(String),
    #[error("invalid value {0:?} for --cpus: expected a positive decimal number")]
    Cpus(String),
    #[error("invalid duration or timestamp {0:?} (expected e.g. 10m, 1h30m, 2024-01-02T15:04:05Z or a unix time)")]
    Time(String),
    #[error("bad format for filter (expected name=value): {0:?}")]
    Filter(String),
    #[error("invalid {flag} value {value:?}: {detail}")]
    Flag {
        flag: &'static str,
        value: String,
        detail: String,
    },
}

/// Parses a binary size like docker's `RAMInBytes`: "64m" → 64 MiB.
pub fn parse_size(s: &str) -> Result<i64, UnitError> {
    let bad = || UnitError::Size(s.to_string());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// "1.5" CPUs → 1_500_000_000 nano-CPUs.
pub fn parse_cpus(s: &str) -> Result<i64, UnitError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| UnitError::Cpus(s.to_string()))?;
    if !v.is_finite() || v < 0.0 {
        return Err(UnitError::Cpus(s.to_string()));
    }
    Ok((v * 1e9).round() as i64)
}

/// Decimal human size with 3 significant digits, like docker's `HumanSize`: "4.26MB".
pub fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", sig3(v), UNITS[i])
}

/// Binary human size, like docker's `BytesSize`: "1.5MiB".
pub fn bytes_size(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", sig3(v), UNITS[i])
}

/// Go's `%.4g`-like rendering with at most 3 significant digits, trailing zeros dropped.
fn sig3(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// docker's `HumanDuration`: "Less than a second", "5 seconds", "About a minute", ...
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if s < 1 {
        "Less than a second".into()
    } else if s < 60 {
        plural(s, "second")
    } else if s < 3600 {
        let m = s / 60;
        if m == 1 {
            "About a minute".into()
        } else {
            plural(m, "minute")
        }
    } else if s < 48 * 3600 {
        let h = (s as f64 / 3600.0).round() as i64;
        if h == 1 {
            "About an hour".into()
        } else {
            plural(h, "hour")
        }
    } else if s < 7 * 24 * 3600 * 2 {
        plural(s / (24 * 3600), "day")
    } else if s < 30 * 24 * 3600 * 3 {
        plural(s / (7 * 24 * 3600), "week")
    } else if s < 365 * 24 * 3600 * 2 {
        plural(s / (30 * 24 * 3600), "month")
    } else {
        plural(s / (365 * 24 * 3600), "year")
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Unix seconds → "2024-01-02 15:04:05 +0000 UTC" (Go's default time format, as `docker ps` shows).
pub fn format_unix(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        r / 3600,
        (r / 60) % 60,
        r % 60
    )
}

/// Parses RFC 3339 ("2024-01-02T15:04:05.123Z", "+01:00" offsets) or a bare
/// date into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |a: &str| a.parse::<i64>().ok();
    let date = s.get(0..10)?;
    let mut dp = date.split('-');
    let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if s.len() == 10 {
        return Some(days * 86_400);
    }
    let rest = s.get(10..)?;
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let (h, mi, se) = (
        num(rest.get(0..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    let mut tail = rest.get(8..)?;
    if let Some(frac) = tail.strip_prefix('.') {
        let n = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        tail = &frac[n..];
    }
    let offset = match tail {
        "" | "Z" | "z" => 0,
        t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) => {
            let v = num(&t[1..3])? * 3600 + num(&t[4..6])? * 60;
            if t.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Parses a Go duration like "1h30m", "10m", "45s", "500ms" into seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Some(total)
}

/// Parses a duration the way Go's `time.ParseDuration` does (what docker's
/// duration flags use): an optional sign, then numbers with optional
/// fractions, each with a unit (ns, us/µs, ms, s, m, h), or a bare "0";
/// gives nanoseconds. None for anything else, or beyond ±292 years.
pub fn parse_go_duration_nanos(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(whole.checked_mul(unit)?)?;
        // The fraction, truncated to whole nanoseconds (digits past what a
        // nanosecond can hold change nothing).
        let frac = &frac[..frac.len().min(20)];
        if !frac.is_empty() {
            let f: u128 = frac.parse().ok()?;
            total = total.checked_add(f * unit / 10u128.pow(frac.len() as u32))?;
        }
        if total > i64::MAX as u128 + u128::from(neg) {
            return None;
        }
        rest = after;
    }
    if neg {
        Some((total as i128).wrapping_neg() as i64)
    } else {
        Some(total as i64)
    }
}

/// `--since`/`--until` values: a relative duration (before `now`), an RFC
/// 3339 time, or a unix timestamp; returned as the unix-seconds string the API takes.
pub fn parse_since(s: &str, now: i64) -> Result<String, UnitError> {
    if let Some(d) = parse_go_duration(s) {
        return Ok((now - d as i64).to_string());
    }
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t.to_string());
    }
    let t = s.trim();
    if !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.parse::<f64>().is_ok()
    {
        return Ok(t.to_string());
    }
    Err(UnitError::Time(s.to_string()))
}

/// `--filter a=b --filter a=c` → `{"a":["b","c"]}` (the JSON the API takes).
pub fn build_filters(args: &[String]) -> Result<Option<String>, UnitError> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| UnitError::Filter(a.clone()))?;
        map.entry(k.trim().to_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(Some(
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10kb"), Ok(10 << 10));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        for bad in ["", "m", "abc", "12x", "1.2.3m", "-5m", "64mm"] {
            assert_eq!(parse_size(bad), Err(UnitError::Size(bad.into())), "{bad}");
        }
        assert!(parse_size("12x")
            .expect_err("bad")
            .to_string()
            .contains("\"12x\""));
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("0.25"), Ok(250_000_000));
        assert!(parse_cpus("two").is_err());
        assert!(parse_cpus("-1").is_err());
    }

    #[test]
    fn human_output() {
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(512.0), "512B");
        assert_eq!(human_size(1_000.0), "1kB");
        assert_eq!(human_size(12_340_000_000.0), "12.3GB");
        assert_eq!(bytes_size(1536.0 * 1024.0), "1.5MiB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(21 * 86400), "3 weeks");
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.123456789Z"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_rfc3339("2024-01-02"), Some(1_704_153_600));
        assert_eq!(parse_rfc3339("2024-13-02"), None);
        assert_eq!(format_unix(1_704_164_645), "2024-01-02 03:04:05 +0000 UTC");
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("10x"), None);
    }

    #[test]
    fn go_durations_in_nanoseconds() {
        let p = parse_go_duration_nanos;
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("200ms"), Some(200_000_000));
        assert_eq!(p("1m30s"), Some(90_000_000_000));
        assert_eq!(p("1.5h"), Some(5_400_000_000_000));
        assert_eq!(p(".5s"), Some(500_000_000));
        assert_eq!(p("1.s"), Some(1_000_000_000));
        assert_eq!(p("0.1s"), Some(100_000_000));
        assert_eq!(p("1.0000000001s"), Some(1_000_000_000));
        assert_eq!(p("10us"), Some(10_000));
        assert_eq!(p("10\u{b5}s"), Some(10_000));
        assert_eq!(p("10\u{3bc}s"), Some(10_000));
        assert_eq!(p("3ns"), Some(3));
        assert_eq!(p("+2s"), Some(2_000_000_000));
        assert_eq!(p("-1s"), Some(-1_000_000_000));
        assert_eq!(p("2562047h47m16.854775807s"), Some(i64::MAX));
        assert_eq!(p("-2562047h47m16.854775808s"), Some(i64::MIN));
        for bad in [
            "", "-", "5", "s", ".s", "1x", "1S", "1 s", "1s ", "1..5s", "2562048h", "1e3s",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(parse_since("10m", 1000), Ok("400".into()));
        assert_eq!(parse_since("1700000000", 0), Ok("1700000000".into()));
        assert_eq!(parse_since("1970-01-01T00:01:00Z", 0), Ok("60".into()));
        assert!(parse_since("yesterday", 0).is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(build_filters(&[]), Ok(None));
        let f = build_filters(&[
            "status=exited".into(),
            "label=a=b".into(),
            "status=created".into(),
        ])
        .expect("ok")
        .expect("some");
        assert_eq!(f, r#"{"label":["a=b"],"status":["exited","created"]}"#);
        assert_eq!(
            build_filters(&["nonsense".into()]),
            Err(UnitError::Filter("nonsense".into()))
        );
        assert!(build_filters(&["=x".into()]).is_err());
    }
}

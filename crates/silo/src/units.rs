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
    silo_units::parse_size(s).map_err(|_| UnitError::Size(s.to_string()))
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

pub use silo_units::{bytes_size, human_size};

pub use silo_units::human_duration;

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds → "2024-01-02 15:04:05 +0000 UTC" (Go's default time format, as `docker ps` shows).
pub fn format_unix(secs: i64) -> String {
    let t = silo_units::UtcTime::from_unix(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Parses RFC 3339 ("2024-01-02T15:04:05.123Z", "+01:00" offsets), also
/// without a zone (UTC) or a bare date, into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    silo_units::parse_rfc3339(s).ok().map(|(secs, _nanos)| secs)
}

/// `--since`/`--until` values: a relative duration (before `now`), an RFC
/// 3339 time, or a unix timestamp; returned as the unix-seconds string the API takes.
pub fn parse_since(s: &str, now: i64) -> Result<String, UnitError> {
    // As in docker, "0" is the unix time 0, not a duration; unlike docker,
    // a negative duration (a time after `now`) is refused.
    let t = s.trim();
    if t != "0" && !t.starts_with('-') {
        if let Ok(ns) = silo_units::parse_go_duration(t) {
            return Ok((now - ns / 1_000_000_000).to_string());
        }
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
        assert_eq!(format_unix(-1), "1969-12-31 23:59:59 +0000 UTC");
    }

    #[test]
    fn since_values() {
        // Go durations (silo-units' syntax) count back from now.
        assert_eq!(parse_since("10m", 1000), Ok("400".into()));
        assert_eq!(parse_since("1h30m", 10_000), Ok("4600".into()));
        assert_eq!(parse_since("1.9s", 1000), Ok("999".into()));
        assert_eq!(parse_since("1700000000", 0), Ok("1700000000".into()));
        assert_eq!(parse_since("0", 1000), Ok("0".into()));
        assert_eq!(parse_since("1970-01-01T00:01:00Z", 0), Ok("60".into()));
        for bad in ["yesterday", "10x", "-10m", ""] {
            assert_eq!(
                parse_since(bad, 0),
                Err(UnitError::Time(bad.into())),
                "{bad}"
            );
        }
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

//! Durations for people, as docker prints them ("Up 2 hours", "Exited (0)
//! 3 weeks ago"): go-units' `HumanDuration`, rule for rule.

/// docker's `HumanDuration` of `secs` seconds: "Less than a second",
/// "1 second", "5 seconds", "About a minute", "10 minutes", "About an hour",
/// "2 hours" (hours are rounded: 90 minutes is "2 hours"), "3 days",
/// "3 weeks", "4 months", "2 years". Negative durations count as zero.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go: int(d.Hours() + 0.5), rounded to the nearest hour.
    let hours = (s + 1800) / 3600;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        // Go: int(d.Hours())/24/365, without the rounding.
        format!("{} years", s / 3600 / 24 / 365)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_units() {
        let h = 3600;
        let d = 24 * h;
        for (secs, want) in [
            (-5, "Less than a second"),
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60 + 59, "59 minutes"),
            (h, "About an hour"),
            (h + 29 * 60, "About an hour"),
            (90 * 60, "2 hours"),
            (47 * h, "47 hours"),
            (2 * d, "2 days"),
            (13 * d, "13 days"),
            (14 * d, "2 weeks"),
            (59 * d, "8 weeks"),
            (60 * d, "2 months"),
            (729 * d, "24 months"),
            (730 * d, "2 years"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
    }
}

//! Docker's healthcheck semantics: `Config.Healthcheck` checked with
//! Docker's limits, merged field by field over the image's HEALTHCHECK at
//! create, turned into the engine's [`HealthPolicy`] (CMD-SHELL wrapped in
//! `Config.Shell` or `/bin/sh -c`, Docker's defaults), and the engine's
//! health state shown as `State.Health`, in `ps` and in filters.

use crate::create::nanos;
use crate::{invalid, Result};
use bollard_stubs::models::{ContainerCreateBody, HealthConfig, HealthcheckResult};
use silo_engine::{HealthPolicy, HealthState, HealthStatus};
use std::time::Duration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_PERIOD: Duration = Duration::ZERO;
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// Docker's smallest non-zero healthcheck duration (1 ms).
const MIN_DURATION_NS: i64 = 1_000_000;

/// Checks `Config.Healthcheck`: Docker's limits (durations 0 or at least
/// 1 ms, Retries not negative), and a Test that can run (400 naming the
/// field; Docker would accept an unknown type and never run it).
pub(crate) fn validate(hc: Option<&HealthConfig>) -> Result<()> {
    let Some(hc) = hc else { return Ok(()) };
    let bad = |what: &str, m: String| {
        Err(invalid(
            format!("Config.Healthcheck.{what}"),
            format!("Config.Healthcheck.{m}"),
        ))
    };
    for (name, v) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        let v = v.unwrap_or(0);
        if v != 0 && v < MIN_DURATION_NS {
            return bad(
                name,
                format!("{name}: {name} in Healthcheck cannot be less than 1ms"),
            );
        }
    }
    if hc.retries.unwrap_or(0) < 0 {
        return bad(
            "Retries",
            "Retries: Retries in Healthcheck cannot be negative".into(),
        );
    }
    match hc.test.as_deref().unwrap_or_default() {
        [] => Ok(()),
        [kind, ..] if kind == "NONE" => Ok(()),
        [kind, args @ ..] if kind == "CMD" || kind == "CMD-SHELL" => {
            if args.is_empty() || (kind == "CMD" && args[0].is_empty()) {
                bad("Test", format!("Test: {kind} needs a command"))
            } else {
                Ok(())
            }
        }
        [kind, ..] => bad(
            "Test",
            format!("Test: unknown type {kind:?} (NONE, CMD or CMD-SHELL)"),
        ),
    }
}

/// The image's HEALTHCHECK in the API's type.
pub(crate) fn from_image(h: &silo_storage::HealthConfig) -> HealthConfig {
    HealthConfig {
        test: h.test.clone(),
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
        start_interval: h.start_interval,
    }
}

/// Docker's merge at create: the user's healthcheck wins field by field;
/// an empty Test and zero durations/retries inherit the image's.
pub(crate) fn merge(
    user: Option<HealthConfig>,
    image: Option<&silo_storage::HealthConfig>,
) -> Option<HealthConfig> {
    let Some(img) = image.map(from_image) else {
        return user;
    };
    let Some(mut u) = user else {
        return Some(img);
    };
    if u.test.as_ref().is_none_or(|t| t.is_empty()) {
        u.test = img.test;
    }
    let inherit = |mine: &mut Option<i64>, theirs: Option<i64>| {
        if mine.unwrap_or(0) == 0 {
            *mine = theirs;
        }
    };
    inherit(&mut u.interval, img.interval);
    inherit(&mut u.timeout, img.timeout);
    inherit(&mut u.start_period, img.start_period);
    inherit(&mut u.start_interval, img.start_interval);
    inherit(&mut u.retries, img.retries);
    Some(u)
}

/// The healthcheck the container runs, or None (none configured, or `NONE`).
pub(crate) fn policy(body: &ContainerCreateBody) -> Option<HealthPolicy> {
    let hc = body.healthcheck.as_ref()?;
    let (kind, args) = hc.test.as_deref()?.split_first()?;
    if args.is_empty() {
        return None;
    }
    let test = match kind.as_str() {
        "CMD" => args.to_vec(),
        "CMD-SHELL" => {
            let mut argv = body
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.extend(args.iter().cloned());
            argv
        }
        _ => return None,
    };
    Some(HealthPolicy {
        test,
        interval: nanos(hc.interval, DEFAULT_INTERVAL),
        timeout: nanos(hc.timeout, DEFAULT_TIMEOUT),
        start_period: nanos(hc.start_period, DEFAULT_START_PERIOD),
        start_interval: nanos(hc.start_interval, DEFAULT_START_INTERVAL),
        retries: hc
            .retries
            .filter(|r| *r > 0)
            .map_or(DEFAULT_RETRIES, |r| u32::try_from(r).unwrap_or(u32::MAX)),
    })
}

/// `State.Health` for inspect.
pub(crate) fn to_api(h: &HealthState) -> bollard_stubs::models::Health {
    bollard_stubs::models::Health {
        status: h.status.name().parse().ok(),
        failing_streak: Some(i64::from(h.failing_streak)),
        log: Some(
            h.log
                .iter()
                .map(|e| HealthcheckResult {
                    start: Some(e.start.clone()),
                    end: Some(e.end.clone()),
                    exit_code: Some(e.exit_code),
                    output: Some(e.output.clone()),
                })
                .collect(),
        ),
    }
}

/// What `docker ps` shows in parentheses after "Up 3 seconds".
pub(crate) fn describe(h: &HealthState) -> String {
    if h.status == HealthStatus::Starting {
        "health: starting".into()
    } else {
        h.status.name().into()
    }
}

/// The `health` value of `ps` filters and summaries: "none" without one.
pub(crate) fn filter_value(h: Option<&HealthState>) -> &'static str {
    h.map_or("none", |h| h.status.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn body(h: Option<HealthConfig>) -> ContainerCreateBody {
        ContainerCreateBody {
            healthcheck: h,
            ..Default::default()
        }
    }

    #[test]
    fn policies_follow_the_test_type_and_defaults() {
        let p = policy(&body(Some(hc(&["CMD-SHELL", "curl -f x"])))).unwrap();
        assert_eq!(p.test, ["/bin/sh", "-c", "curl -f x"]);
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.start_period, Duration::ZERO);
        assert_eq!(p.start_interval, Duration::from_secs(5));
        assert_eq!(p.retries, 3);
        let mut b = body(Some(HealthConfig {
            interval: Some(200_000_000),
            retries: Some(2),
            ..hc(&["CMD", "cat", "/ready"])
        }));
        let p = policy(&b).unwrap();
        assert_eq!(p.test, ["cat", "/ready"]);
        assert_eq!(p.interval, Duration::from_millis(200));
        assert_eq!(p.retries, 2);
        b.shell = Some(vec!["/bin/bash".into(), "-c".into()]);
        b.healthcheck = Some(hc(&["CMD-SHELL", "true"]));
        assert_eq!(policy(&b).unwrap().test, ["/bin/bash", "-c", "true"]);
        for none in [None, Some(hc(&["NONE"])), Some(hc(&[])), Some(hc(&["CMD"]))] {
            assert_eq!(policy(&body(none.clone())), None, "{none:?}");
        }
    }

    #[test]
    fn validation_uses_dockers_limits() {
        assert!(validate(None).is_ok());
        assert!(validate(Some(&hc(&["NONE"]))).is_ok());
        assert!(validate(Some(&hc(&[]))).is_ok());
        assert!(validate(Some(&hc(&["CMD", "true"]))).is_ok());
        let e = validate(Some(&HealthConfig {
            interval: Some(999_999),
            ..hc(&["CMD", "true"])
        }))
        .unwrap_err();
        assert!(matches!(
            e,
            crate::Error::Engine(silo_engine::Error::InvalidArgument { .. })
        ));
        assert_eq!(
            e.to_string(),
            "Config.Healthcheck.Interval: Interval in Healthcheck cannot be less than 1ms"
        );
        let e = validate(Some(&HealthConfig {
            retries: Some(-1),
            ..hc(&["CMD", "true"])
        }))
        .unwrap_err();
        assert!(e.to_string().contains("Retries"), "{e}");
        for bad in [&["CMD"][..], &["CMD-SHELL"], &["CMD", ""], &["PING", "x"]] {
            let e = validate(Some(&hc(bad))).unwrap_err();
            assert!(e.to_string().starts_with("Config.Healthcheck.Test"), "{e}");
        }
    }

    #[test]
    fn merge_inherits_from_the_image_field_by_field() {
        let image = silo_storage::HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "img".into()]),
            interval: Some(5),
            retries: Some(7),
            ..Default::default()
        };
        assert_eq!(merge(None, None), None);
        assert_eq!(merge(None, Some(&image)), Some(from_image(&image)));
        let user = HealthConfig {
            interval: Some(9),
            retries: Some(0),
            ..hc(&[])
        };
        let m = merge(Some(user), Some(&image)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!(m.interval, Some(9));
        assert_eq!(m.retries, Some(7));
        let m = merge(Some(hc(&["NONE"])), Some(&image)).unwrap();
        assert_eq!(m.test.unwrap(), ["NONE"]);
    }

    #[test]
    fn state_is_shown_the_docker_way() {
        let h = HealthState {
            status: HealthStatus::Starting,
            failing_streak: 2,
            log: vec![silo_engine::ProbeResult {
                exit_code: 1,
                output: "no".into(),
                ..Default::default()
            }],
        };
        assert_eq!(describe(&h), "health: starting");
        assert_eq!(filter_value(Some(&h)), "starting");
        assert_eq!(filter_value(None), "none");
        let api = to_api(&h);
        assert_eq!(
            api.status,
            Some(bollard_stubs::models::HealthStatusEnum::STARTING)
        );
        assert_eq!(api.failing_streak, Some(2));
        assert_eq!(api.log.unwrap()[0].output.as_deref(), Some("no"));
    }
}

//! Docker healthchecks. The effective `Config.Healthcheck` (the user's
//! merged over the image's at create, as Docker does), the probe thread
//! each running container with a healthcheck gets (the probe itself is an
//! exec in the container: `io/probe.rs`), and `State.Health` kept by
//! Docker's rules: FailingStreak against Retries, StartPeriod, the last
//! five results, a `health_status: …` event on every status change.

use crate::model::{Container, State};
use crate::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub(crate) const STARTING: &str = "starting";
pub(crate) const HEALTHY: &str = "healthy";
pub(crate) const UNHEALTHY: &str = "unhealthy";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_PERIOD: Duration = Duration::ZERO;
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
const MAX_LOG_ENTRIES: usize = 5;
/// Docker's smallest non-zero healthcheck duration (1 ms).
const MIN_DURATION_NS: i64 = 1_000_000;

/// `State.Health`, stored with the rest of the container's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Health {
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    pub failing_streak: i64,
    /// The last results, oldest first.
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

/// One probe result (Docker's HealthcheckResult).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct LogEntry {
    /// RFC 3339 with nanoseconds.
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's healthcheck with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// What the probe execs (CMD-SHELL already wrapped in the shell).
    pub argv: Vec<String>,
    /// The container's user (Config.User, else the image's).
    pub user: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn duration(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The healthcheck `c` runs, or None (none configured, or `NONE`).
pub(crate) fn plan(c: &Container) -> Option<Plan> {
    let hc = c.body.healthcheck.as_ref()?;
    let (kind, args) = hc.test.as_deref()?.split_first()?;
    if args.is_empty() {
        return None;
    }
    let argv = match kind.as_str() {
        "CMD" => args.to_vec(),
        "CMD-SHELL" => {
            let mut argv = c
                .body
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.extend(args.iter().cloned());
            argv
        }
        _ => return None,
    };
    Some(Plan {
        argv,
        user: c.user(),
        interval: duration(hc.interval, DEFAULT_INTERVAL),
        timeout: duration(hc.timeout, DEFAULT_TIMEOUT),
        start_period: duration(hc.start_period, DEFAULT_START_PERIOD),
        start_interval: duration(hc.start_interval, DEFAULT_START_INTERVAL),
        retries: hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
    })
}

/// Checks `Config.Healthcheck` at create: Docker's limits (durations 0 or
/// at least 1 ms, Retries not negative), and a Test that can run (400
/// naming the field; Docker would accept an unknown type and never run it).
pub(crate) fn validate(hc: Option<&HealthConfig>) -> Result<()> {
    let Some(hc) = hc else { return Ok(()) };
    let bad = |m: String| Err(EngineError::BadParameter(format!("Config.Healthcheck.{m}")));
    for (name, v) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        let v = v.unwrap_or(0);
        if v != 0 && v < MIN_DURATION_NS {
            return bad(format!(
                "{name}: {name} in Healthcheck cannot be less than 1ms"
            ));
        }
    }
    if hc.retries.unwrap_or(0) < 0 {
        return bad("Retries: Retries in Healthcheck cannot be negative".into());
    }
    match hc.test.as_deref().unwrap_or_default() {
        [] => Ok(()),
        [kind, ..] if kind == "NONE" => Ok(()),
        [kind, args @ ..] if kind == "CMD" || kind == "CMD-SHELL" => {
            if args.is_empty() || (kind == "CMD" && args[0].is_empty()) {
                bad(format!("Test: {kind} needs a command"))
            } else {
                Ok(())
            }
        }
        [kind, ..] => bad(format!(
            "Test: unknown type {kind:?} (NONE, CMD or CMD-SHELL)"
        )),
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

/// `State.Health` for a run starting now: "starting", streak reset, the
/// earlier log kept (Docker's initHealthMonitor). None without a healthcheck.
pub(crate) fn starting(c: &Container) -> Option<Health> {
    plan(c)?;
    let mut h = c.state.health.clone().unwrap_or_default();
    h.status = STARTING.into();
    h.failing_streak = 0;
    Some(h)
}

/// When the probes stop (the container stopped or was paused) Docker
/// reports "unhealthy" "for compatibility reasons"; so do we.
pub(crate) fn stopped(state: &mut State) {
    if let Some(h) = state.health.as_mut() {
        h.status = UNHEALTHY.into();
    }
}

/// Applies one probe result (Docker's handleProbeResult): a success makes
/// the container healthy and ends the start period; a failure counts
/// toward `retries` unless it happened in the start period while still
/// "starting".
pub(crate) fn record(h: &mut Health, entry: LogEntry, in_start_period: bool, retries: i64) {
    if h.log.len() >= MAX_LOG_ENTRIES {
        h.log.drain(..h.log.len() + 1 - MAX_LOG_ENTRIES);
    }
    let ok = entry.exit_code == 0;
    h.log.push(entry);
    if ok {
        h.failing_streak = 0;
        h.status = HEALTHY.into();
    } else if !(in_start_period && h.status == STARTING) {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = UNHEALTHY.into();
        }
    }
}

/// The wait before the next probe: Interval, or StartInterval while still
/// starting inside the start period, never past the end of that period
/// (so the first regular probe follows it right away).
pub(crate) fn next_interval(p: &Plan, since_start: Duration, status: &str) -> Duration {
    if since_start >= p.start_period {
        return p.interval;
    }
    let remaining = p.start_period - since_start;
    let wanted = if status == STARTING {
        p.start_interval
    } else {
        p.interval
    };
    wanted.min(remaining)
}

/// What `docker ps` shows in parentheses after "Up 3 seconds".
pub(crate) fn describe(h: &Health) -> String {
    if h.status == STARTING {
        "health: starting".into()
    } else {
        h.status.clone()
    }
}

/// `State.Health` for inspect.
pub(crate) fn to_api(h: &Health) -> bollard_stubs::models::Health {
    bollard_stubs::models::Health {
        status: h.status.parse().ok(),
        failing_streak: Some(h.failing_streak),
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

/// The `health` value of `ps` filters and summaries: "none" without one.
pub(crate) fn filter_value(state: &State) -> &str {
    state.health.as_ref().map_or("none", |h| h.status.as_str())
}

/// Parses our RFC 3339 timestamps (UTC, optional fraction).
fn parse_time(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = silo_units::parse_rfc3339(s).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// The probe thread that should run for each container (by id): a newer
/// thread (after an unpause, a restart, a re-adoption) replaces an older
/// one, which stops at its next wake-up.
fn generations() -> &'static Mutex<HashMap<String, u64>> {
    static GENS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    GENS.get_or_init(Default::default)
}

fn is_current(id: &str, generation: u64) -> bool {
    let gens = generations().lock().unwrap_or_else(|p| p.into_inner());
    gens.get(id) == Some(&generation)
}

impl Engine {
    /// Starts the probe thread for the container's current run if it has a
    /// healthcheck and runs unpaused: after a start, an unpause, or the
    /// re-adoption of a running container by a restarted silod (whose
    /// health state comes from the store; a row without one starts over).
    pub(crate) fn health_watch(&self, id: &str) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (plan, started_at) = {
            let mut map = self.lock();
            let Some(c) = map.get_mut(id) else { return };
            let Some(plan) = plan(c) else { return };
            if !c.state.running || c.state.paused {
                return;
            }
            if c.state.health.is_none() {
                c.state.health = starting(c);
                if let Err(e) = self.db.put(c) {
                    tracing::warn!("health state of {id}: {e}");
                }
            }
            (plan, c.state.started_at.clone())
        };
        let generation = NEXT.fetch_add(1, Ordering::Relaxed);
        generations()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), generation);
        let me = self.me.clone();
        let tid = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("health-{}", &id[..12.min(id.len())]))
            .spawn(move || health_loop(me, &tid, &started_at, generation, &plan));
        if let Err(e) = spawned {
            tracing::error!("cannot start the healthcheck of {id}: {e}");
        }
    }

    /// Whether the probe thread `generation` still has a run to watch.
    fn health_live(&self, c: Option<&Container>, started_at: &str, generation: u64) -> bool {
        c.is_some_and(|c| {
            c.state.running
                && !c.state.paused
                && c.state.started_at == started_at
                && is_current(&c.id, generation)
        })
    }

    /// Sleeps until `until`; false as soon as the thread should stop (the
    /// run ended, the container was paused or removed, a newer thread took
    /// over). Wakes on every state change of the engine.
    fn health_wait(&self, id: &str, started_at: &str, generation: u64, until: Instant) -> bool {
        let mut map = self.lock();
        loop {
            if !self.health_live(map.get(id), started_at, generation) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            map = self
                .changed
                .wait_timeout(map, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Records a probe result unless the run it belongs to is over: each
    /// result is persisted (one transaction, with the rest of the state),
    /// and status changes are announced as `health_status: <status>`.
    /// Returns the status, None when the thread should stop.
    fn health_result(
        &self,
        id: &str,
        started_at: &str,
        generation: u64,
        entry: LogEntry,
        in_start_period: bool,
        retries: i64,
    ) -> Option<String> {
        let (status, changed) = {
            let mut map = self.lock();
            if !self.health_live(map.get(id), started_at, generation) {
                return None;
            }
            let c = map.get_mut(id)?;
            let h = c.state.health.get_or_insert_with(|| Health {
                status: STARTING.into(),
                ..Default::default()
            });
            let before = h.status.clone();
            record(h, entry, in_start_period, retries);
            let status = h.status.clone();
            let changed = status != before;
            // Every result is saved (one transaction, no fsync with the
            // store in WAL/NORMAL mode), so the log and the failing streak
            // survive a silod restart as well as the status.
            if let Err(e) = self.db.put(c) {
                tracing::warn!("health state of {id}: {e}");
            }
            (status, changed)
        };
        if changed {
            self.changed.notify_all();
            self.emit(
                "container",
                &format!("health_status: {status}"),
                id,
                HashMap::new(),
            );
        }
        Some(status)
    }
}

/// One container run's probes: wait, probe, record, until the run ends.
/// Holds the engine only while it works, so it never keeps one alive.
fn health_loop(me: Weak<Engine>, id: &str, started_at: &str, generation: u64, plan: &Plan) {
    let started = parse_time(started_at).unwrap_or_else(SystemTime::now);
    let since_start = |t: SystemTime| t.duration_since(started).unwrap_or_default();
    let mut wait = next_interval(plan, since_start(SystemTime::now()), STARTING);
    'probes: loop {
        // Waits in slices of at most a second, holding the engine only for
        // one slice at a time, so a dropped engine is not kept alive.
        let until = Instant::now() + wait;
        let engine = loop {
            let Some(engine) = me.upgrade() else {
                break 'probes;
            };
            let slice = until.min(Instant::now() + Duration::from_secs(1));
            if !engine.health_wait(id, started_at, generation, slice) {
                break 'probes;
            }
            if Instant::now() >= until {
                break engine;
            }
        };
        let begun = SystemTime::now();
        let start = crate::containers::now_rfc3339();
        let (exit_code, output) = match engine.run_probe(id, &plan.argv, &plan.user, plan.timeout) {
            Ok(r) => (r.exit_code, r.output),
            Err(e) => (-1, e.to_string()),
        };
        let entry = LogEntry {
            start,
            end: crate::containers::now_rfc3339(),
            exit_code,
            output,
        };
        let in_start_period = since_start(begun) < plan.start_period;
        let Some(status) = engine.health_result(
            id,
            started_at,
            generation,
            entry,
            in_start_period,
            plan.retries,
        ) else {
            break;
        };
        drop(engine);
        wait = next_interval(plan, since_start(SystemTime::now()), &status);
    }
    let mut gens = generations().lock().unwrap_or_else(|p| p.into_inner());
    if gens.get(id) == Some(&generation) {
        gens.remove(id);
    }
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

    fn container(h: Option<HealthConfig>) -> Container {
        Container {
            body: ContainerCreateBody {
                healthcheck: h,
                ..Default::default()
            },
            state: State::default(),
            image_user: "app".into(),
            ..Container::for_test("c1", "c1")
        }
    }

    fn entry(code: i64) -> LogEntry {
        LogEntry {
            exit_code: code,
            output: format!("exit {code}"),
            ..Default::default()
        }
    }

    #[test]
    fn plans_follow_the_test_type_and_defaults() {
        let p = plan(&container(Some(hc(&["CMD-SHELL", "curl -f x"])))).unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "curl -f x"]);
        assert_eq!(p.user, "app");
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.start_period, Duration::ZERO);
        assert_eq!(p.start_interval, Duration::from_secs(5));
        assert_eq!(p.retries, 3);
        let mut c = container(Some(HealthConfig {
            interval: Some(200_000_000),
            retries: Some(2),
            ..hc(&["CMD", "cat", "/ready"])
        }));
        c.body.user = Some("0".into());
        c.body.shell = Some(vec!["/bin/bash".into(), "-c".into()]);
        let p = plan(&c).unwrap();
        assert_eq!(p.argv, ["cat", "/ready"]);
        assert_eq!(p.user, "0");
        assert_eq!(p.interval, Duration::from_millis(200));
        assert_eq!(p.retries, 2);
        c.body.healthcheck = Some(hc(&["CMD-SHELL", "true"]));
        assert_eq!(plan(&c).unwrap().argv, ["/bin/bash", "-c", "true"]);
        for none in [None, Some(hc(&["NONE"])), Some(hc(&[])), Some(hc(&["CMD"]))] {
            assert_eq!(plan(&container(none.clone())), None, "{none:?}");
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
        assert_eq!(e.status(), 400);
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
        // --no-healthcheck wins over the image.
        let m = merge(Some(hc(&["NONE"])), Some(&image)).unwrap();
        assert_eq!(m.test.unwrap(), ["NONE"]);
    }

    #[test]
    fn results_follow_dockers_rules() {
        let mut h = Health {
            status: STARTING.into(),
            ..Default::default()
        };
        // Failures in the start period do not count while starting.
        record(&mut h, entry(1), true, 2);
        record(&mut h, entry(1), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        // A success makes it healthy and ends the start period.
        record(&mut h, entry(0), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        record(&mut h, entry(1), true, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 1));
        record(&mut h, entry(2), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 2));
        record(&mut h, entry(0), false, 2);
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        // Five entries, oldest first.
        assert_eq!(h.log.len(), 5);
        let codes: Vec<i64> = h.log.iter().map(|e| e.exit_code).collect();
        assert_eq!(codes, [1, 0, 1, 2, 0]);
        // Stopping reports unhealthy; a new run starts over, keeping the log.
        let mut c = container(Some(hc(&["CMD", "true"])));
        c.state.health = Some(h);
        stopped(&mut c.state);
        assert_eq!(c.state.health.as_ref().unwrap().status, UNHEALTHY);
        let s = starting(&c).unwrap();
        assert_eq!(
            (s.status.as_str(), s.failing_streak, s.log.len()),
            (STARTING, 0, 5)
        );
        assert_eq!(describe(&s), "health: starting");
        assert_eq!(filter_value(&c.state), UNHEALTHY);
        assert_eq!(filter_value(&State::default()), "none");
        let api = to_api(&s);
        assert_eq!(
            api.status,
            Some(bollard_stubs::models::HealthStatusEnum::STARTING)
        );
        assert_eq!(api.log.unwrap()[4].output.as_deref(), Some("exit 0"));
    }

    #[test]
    fn intervals_around_the_start_period() {
        let p = Plan {
            argv: vec![],
            user: String::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            start_period: Duration::from_secs(60),
            start_interval: Duration::from_secs(5),
            retries: 3,
        };
        let s = Duration::from_secs;
        assert_eq!(next_interval(&p, s(0), STARTING), s(5));
        assert_eq!(next_interval(&p, s(58), STARTING), s(2));
        assert_eq!(next_interval(&p, s(10), HEALTHY), s(30));
        assert_eq!(next_interval(&p, s(40), HEALTHY), s(20));
        assert_eq!(next_interval(&p, s(60), STARTING), s(30));
        let no_period = Plan {
            start_period: Duration::ZERO,
            ..p
        };
        assert_eq!(next_interval(&no_period, s(0), STARTING), s(30));
    }

    #[test]
    fn timestamps_parse_with_fractions() {
        let t = parse_time("1970-01-01T00:00:01.5Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1500)
        );
        let now = crate::containers::now_rfc3339();
        let t = parse_time(&now).unwrap();
        let d = SystemTime::now().duration_since(t).unwrap_or_default();
        assert!(d < Duration::from_secs(60), "{now}");
        assert!(parse_time("garbage").is_none());
    }
}

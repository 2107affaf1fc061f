//! Healthchecks: the probe thread each running container with a
//! [`HealthPolicy`] gets (a probe is an exec in the container:
//! `io/probe.rs`), and its [`HealthState`] kept by these rules: a success
//! makes it healthy and ends the start period; a failure counts toward
//! `retries` unless it happened in the start period while still starting;
//! the last five results are kept; every change of status is an event.

use crate::events::{Action, Scope};
use crate::model::{Container, HealthPolicy, HealthState, HealthStatus, ProbeResult};
use crate::Engine;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

/// How many results are kept.
const MAX_LOG_ENTRIES: usize = 5;

/// The health of a run starting now: starting, streak reset, the earlier
/// log kept. None without a healthcheck.
pub(crate) fn starting(c: &Container) -> Option<HealthState> {
    c.config.health.as_ref()?;
    let mut h = c.health.clone().unwrap_or(HealthState {
        status: HealthStatus::Starting,
        failing_streak: 0,
        log: vec![],
    });
    h.status = HealthStatus::Starting;
    h.failing_streak = 0;
    Some(h)
}

/// When the probes stop (the container stopped or was paused) it reports
/// unhealthy (as Docker does, "for compatibility").
pub(crate) fn stopped(h: &mut HealthState) {
    h.status = HealthStatus::Unhealthy;
}

/// Applies one probe result.
pub(crate) fn record(h: &mut HealthState, entry: ProbeResult, in_start_period: bool, retries: u32) {
    if h.log.len() >= MAX_LOG_ENTRIES {
        h.log.drain(..h.log.len() + 1 - MAX_LOG_ENTRIES);
    }
    let ok = entry.exit_code == 0;
    h.log.push(entry);
    if ok {
        h.failing_streak = 0;
        h.status = HealthStatus::Healthy;
    } else if !(in_start_period && h.status == HealthStatus::Starting) {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = HealthStatus::Unhealthy;
        }
    }
}

/// The wait before the next probe: the interval, or the start interval
/// while still starting inside the start period, never past the end of
/// that period (so the first regular probe follows it right away).
pub(crate) fn next_interval(
    p: &HealthPolicy,
    since_start: Duration,
    status: HealthStatus,
) -> Duration {
    if since_start >= p.start_period {
        return p.interval;
    }
    let remaining = p.start_period - since_start;
    let wanted = if status == HealthStatus::Starting {
        p.start_interval
    } else {
        p.interval
    };
    wanted.min(remaining)
}

/// Parses our RFC 3339 timestamps (UTC, optional fraction).
fn parse_time(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = silo_units::parse_rfc3339(s).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

impl Engine {
    fn health_is_current(&self, id: &str, generation: u64) -> bool {
        let threads = self
            .health_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        threads.get(id) == Some(&generation)
    }

    /// Starts the probe thread for the container's current run if it has a
    /// healthcheck and runs unpaused: after a start, an unpause, or the
    /// re-adoption of a running container by a restarted engine (whose
    /// health comes from the store; a record without one starts over).
    pub(crate) fn health_watch(&self, id: &str) {
        let (policy, started_at) = {
            let mut map = self.lock();
            let Some(c) = map.get_mut(id) else { return };
            let Some(policy) = c.config.health.clone() else {
                return;
            };
            let started_at = match &c.state.status {
                crate::model::Status::Running(r) => r.started_at.clone(),
                _ => return,
            };
            if c.health.is_none() {
                c.health = starting(c);
                if let Err(e) = self.db.put_container(c) {
                    tracing::warn!("health state of {id}: {e}");
                }
            }
            (policy, started_at)
        };
        let generation = self.next_health_thread.fetch_add(1, Ordering::Relaxed);
        self.health_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), generation);
        let me = self.me.clone();
        let tid = id.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("health-{}", &id[..12.min(id.len())]))
            .spawn(move || health_loop(me, &tid, &started_at, generation, &policy));
        if let Err(e) = spawned {
            tracing::error!("cannot start the healthcheck of {id}: {e}");
        }
    }

    /// Whether the probe thread `generation` still has a run to watch.
    fn health_live(&self, c: Option<&Container>, started_at: &str, generation: u64) -> bool {
        c.is_some_and(|c| {
            matches!(&c.state.status, crate::model::Status::Running(r) if r.started_at == started_at)
                && self.health_is_current(&c.id, generation)
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

    /// Records a probe result unless the run it belongs to is over; every
    /// result is persisted with the rest of the state (one transaction, no
    /// fsync in WAL/NORMAL mode), so the log and the failing streak survive
    /// a restart. Returns the status, None when the thread should stop.
    fn health_result(
        &self,
        id: &str,
        started_at: &str,
        generation: u64,
        entry: ProbeResult,
        in_start_period: bool,
        retries: u32,
    ) -> Option<HealthStatus> {
        let (status, changed) = {
            let mut map = self.lock();
            if !self.health_live(map.get(id), started_at, generation) {
                return None;
            }
            let c = map.get_mut(id)?;
            let h = c.health.get_or_insert(HealthState {
                status: HealthStatus::Starting,
                failing_streak: 0,
                log: vec![],
            });
            let before = h.status;
            record(h, entry, in_start_period, retries);
            let status = h.status;
            if let Err(e) = self.db.put_container(c) {
                tracing::warn!("health state of {id}: {e}");
            }
            (status, status != before)
        };
        if changed {
            self.changed.notify_all();
            self.emit(Scope::Container, Action::Health(status), id);
        }
        Some(status)
    }
}

/// One container run's probes: wait, probe, record, until the run ends.
/// Holds the engine only while it works, so it never keeps one alive.
fn health_loop(
    me: Weak<Engine>,
    id: &str,
    started_at: &str,
    generation: u64,
    policy: &HealthPolicy,
) {
    let started = parse_time(started_at).unwrap_or_else(SystemTime::now);
    let since_start = |t: SystemTime| t.duration_since(started).unwrap_or_default();
    let mut wait = next_interval(
        policy,
        since_start(SystemTime::now()),
        HealthStatus::Starting,
    );
    'probes: loop {
        // Waits in slices of at most a second, holding the engine only for
        // one slice at a time.
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
        let start = silo_units::now_rfc3339();
        let (exit_code, output) = match engine.run_probe(id, &policy.test, policy.timeout) {
            Ok(r) => (r.exit_code, r.output),
            Err(e) => (-1, e.to_string()),
        };
        let entry = ProbeResult {
            start,
            end: silo_units::now_rfc3339(),
            exit_code,
            output,
        };
        let in_start_period = since_start(begun) < policy.start_period;
        let Some(status) = engine.health_result(
            id,
            started_at,
            generation,
            entry,
            in_start_period,
            policy.retries,
        ) else {
            break;
        };
        drop(engine);
        wait = next_interval(policy, since_start(SystemTime::now()), status);
    }
    if let Some(engine) = me.upgrade() {
        let mut threads = engine
            .health_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if threads.get(id) == Some(&generation) {
            threads.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn entry(code: i64) -> ProbeResult {
        ProbeResult {
            exit_code: code,
            output: format!("exit {code}"),
            ..Default::default()
        }
    }

    #[test]
    fn results_follow_the_rules() {
        let mut h = HealthState {
            status: Starting,
            failing_streak: 0,
            log: vec![],
        };
        // Failures in the start period do not count while starting.
        record(&mut h, entry(1), true, 2);
        record(&mut h, entry(1), true, 2);
        assert_eq!((h.status, h.failing_streak), (Starting, 0));
        // A success makes it healthy and ends the start period.
        record(&mut h, entry(0), true, 2);
        assert_eq!((h.status, h.failing_streak), (Healthy, 0));
        record(&mut h, entry(1), true, 2);
        assert_eq!((h.status, h.failing_streak), (Healthy, 1));
        record(&mut h, entry(2), false, 2);
        assert_eq!((h.status, h.failing_streak), (Unhealthy, 2));
        record(&mut h, entry(0), false, 2);
        assert_eq!((h.status, h.failing_streak), (Healthy, 0));
        let codes: Vec<i64> = h.log.iter().map(|e| e.exit_code).collect();
        assert_eq!(codes, [1, 0, 1, 2, 0], "the last five, oldest first");
        // Stopping reports unhealthy; a new run starts over, keeping the log.
        let mut c = Container::for_test("c1", "c1");
        c.config.health = Some(policy(60));
        c.health = Some(h);
        stopped(c.health.as_mut().unwrap());
        assert_eq!(c.health.as_ref().unwrap().status, Unhealthy);
        let s = starting(&c).unwrap();
        assert_eq!((s.status, s.failing_streak, s.log.len()), (Starting, 0, 5));
        c.config.health = None;
        assert_eq!(starting(&c), None);
    }

    fn policy(start_period: u64) -> HealthPolicy {
        HealthPolicy {
            test: vec!["true".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            start_period: Duration::from_secs(start_period),
            start_interval: Duration::from_secs(5),
            retries: 3,
        }
    }

    #[test]
    fn intervals_around_the_start_period() {
        let p = policy(60);
        let s = Duration::from_secs;
        assert_eq!(next_interval(&p, s(0), Starting), s(5));
        assert_eq!(next_interval(&p, s(58), Starting), s(2));
        assert_eq!(next_interval(&p, s(10), Healthy), s(30));
        assert_eq!(next_interval(&p, s(40), Healthy), s(20));
        assert_eq!(next_interval(&p, s(60), Starting), s(30));
        assert_eq!(next_interval(&policy(0), s(0), Starting), s(30));
    }

    #[test]
    fn timestamps_parse_with_fractions() {
        let t = parse_time("1970-01-01T00:00:01.5Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_time("garbage").is_none());
    }
}

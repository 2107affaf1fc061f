//! Docker healthchecks through silod, driven with the real docker CLI: a
//! passing probe makes a container healthy in inspect, ps, the health
//! filter and the event stream; a failing one makes it unhealthy; an
//! image's HEALTHCHECK is inherited and `--no-healthcheck` turns it off;
//! the health state and the probes survive a silod restart.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{rootfs_tar, Cli, Daemon};
use std::path::Path;
use std::time::{Duration, Instant};

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

fn daemon() -> Daemon {
    let d = Daemon::start(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d
}

/// Polls `f` until it gives a value. The deadline is generous (the host
/// may be busy); nothing asserts on how long it took.
#[track_caller]
fn wait_for<T>(d: &Daemon, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; silod log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn health_status(d: &Daemon, id: &str) -> String {
    d.ok(&["inspect", "--format", "{{.State.Health.Status}}", id])
        .trim()
        .to_string()
}

fn wait_status(d: &Daemon, id: &str, want: &str) {
    wait_for(d, &format!("{id} to be {want}"), || {
        (health_status(d, id) == want).then_some(())
    });
}

fn health_json(d: &Daemon, id: &str) -> serde_json::Value {
    let out = d.ok(&["inspect", "--format", "{{json .State.Health}}", id]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `docker ps` (running containers) with `--filter filter`, as short ids.
fn ps_filtered(d: &Daemon, filter: &str) -> Vec<String> {
    d.ok(&["ps", "-q", "--no-trunc", "--filter", filter])
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The STATUS column of `docker ps -a` for `id`.
fn ps_status(d: &Daemon, id: &str) -> String {
    d.ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("id={id}"),
        "--format",
        "{{.Status}}",
    ])
    .trim()
    .to_string()
}

#[test]
fn health_cmd_makes_a_container_healthy() {
    let d = daemon();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .saturating_sub(1);
    let id = d
        .ok(&[
            "run",
            "-d",
            "--health-cmd",
            "true",
            "--health-interval",
            "200ms",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    wait_status(&d, &id, "healthy");

    let ps = d.ok(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{id} not in docker ps:\n{ps}"));
    assert!(line.contains("(healthy)"), "{line}");
    assert_eq!(ps_filtered(&d, "health=healthy"), [id.as_str()]);
    assert!(ps_filtered(&d, "health=unhealthy").is_empty());
    assert!(ps_filtered(&d, "health=none").is_empty());
    let bad = d.cli(&["ps", "--filter", "health=great"]);
    assert!(!bad.status.success());

    let h = health_json(&d, &id);
    assert_eq!(h["FailingStreak"], 0);
    let last = h["Log"].as_array().and_then(|l| l.last()).cloned();
    let last = last.unwrap_or_else(|| panic!("no Log in {h}"));
    assert_eq!(last["ExitCode"], 0, "{h}");
    let cfg = d.ok(&["inspect", "--format", "{{json .Config.Healthcheck}}", &id]);
    let cfg: serde_json::Value = serde_json::from_str(cfg.trim()).expect("Healthcheck JSON");
    assert_eq!(cfg["Test"], serde_json::json!(["CMD-SHELL", "true"]));
    assert_eq!(cfg["Interval"], 200_000_000);

    // The status change is an event in Docker's words.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let events = d.ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        events.lines().any(|l| l == "health_status: healthy"),
        "{events}"
    );

    d.ok(&["rm", "-f", &id]);
}

#[test]
fn failing_image_disabled_and_restarted_healthchecks() {
    let mut d = daemon();
    // Failing probe, two retries: unhealthy, with its exit code and output.
    let bad = d
        .ok(&[
            "run",
            "-d",
            "--health-cmd",
            "echo no; exit 1",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    wait_status(&d, &bad, "unhealthy");
    let h = health_json(&d, &bad);
    assert!(h["FailingStreak"].as_i64().unwrap_or(0) >= 2, "{h}");
    let log = h["Log"].as_array().cloned().unwrap_or_default();
    assert!(log.len() >= 2, "{h}");
    assert!(
        log.iter()
            .all(|e| e["ExitCode"] == 1 && e["Output"] == "no\n"),
        "{h}"
    );
    assert!(ps_status(&d, &bad).ends_with("(unhealthy)"));

    // An image HEALTHCHECK (docker import --change) is inherited...
    let tar = rootfs_tar().to_str().expect("utf-8 path").to_string();
    d.ok(&[
        "import",
        "--change",
        "HEALTHCHECK --interval=200ms CMD [\"test\", \"-e\", \"/bin/sh\"]",
        &tar,
        "hcimage:latest",
    ]);
    let inherited = d
        .ok(&["run", "-d", "hcimage", "sleep", "1000"])
        .trim()
        .to_string();
    wait_status(&d, &inherited, "healthy");
    // ...and --no-healthcheck turns it off.
    let off = d
        .ok(&["run", "-d", "--no-healthcheck", "hcimage", "sleep", "1000"])
        .trim()
        .to_string();
    let cfg = d.ok(&["inspect", "--format", "{{json .Config.Healthcheck}}", &off]);
    assert!(cfg.contains("\"NONE\""), "{cfg}");
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.State.Health}}", &off])
            .trim(),
        "<nil>"
    );
    assert!(
        !ps_status(&d, &off).contains('('),
        "{}",
        ps_status(&d, &off)
    );
    assert_eq!(ps_filtered(&d, "health=none"), [off.as_str()]);

    // silod restarts: the status is still there and the probes go on.
    let last_end = |d: &Daemon| {
        health_json(d, &inherited)["Log"]
            .as_array()
            .and_then(|l| l.last())
            .map(|e| e["End"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    d.restart();
    assert_eq!(health_status(&d, &inherited), "healthy");
    let before = last_end(&d);
    wait_for(&d, "a probe after the restart", || {
        (last_end(&d) > before).then_some(())
    });

    // Stopped: no more probes (Docker then reports unhealthy).
    d.ok(&["stop", "-t", "0", &inherited]);
    assert_eq!(health_status(&d, &inherited), "unhealthy");
    assert!(ps_status(&d, &inherited).starts_with("Exited"));
}

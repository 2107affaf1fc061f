#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The Docker adapter end to end on the real kernel (root): Docker's
//! requests through the adapter to the engine, real containers, Docker's
//! answers (inspect, ps, events, health).

mod common;

use bollard_stubs::models::*;
use common::{cgroup_exists, code, mounted, setup, wait_for};
use silo_docker::{Docker, Filters};
use silo_engine::WaitCondition;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn body(cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some("busybox".into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn echo_runs_logs_persists_and_is_removed_cleanly() {
    let (env, engine) = setup();
    // Unknown image: 404 in Docker's words, nothing created.
    let e = engine
        .create_container(
            None,
            ContainerCreateBody {
                image: Some("nosuch".into()),
                ..body(&["true"])
            },
        )
        .unwrap_err();
    assert_eq!(code(&e), 404);
    assert_eq!(e.to_string(), "No such image: nosuch:latest");

    let created = engine
        .create_container(Some("e2e-echo"), body(&["echo", "hi"]))
        .unwrap();
    let id = created.id.clone();
    assert_eq!(id.len(), 64);
    // Name conflict: 409 naming the holder.
    let e = engine
        .create_container(Some("/e2e-echo"), body(&["true"]))
        .unwrap_err();
    assert_eq!(code(&e), 409);
    assert!(e.to_string().contains(&id), "{e}");
    assert_eq!(
        engine
            .list(true, None, false, &Filters::new())
            .unwrap()
            .len(),
        1
    );

    let events = engine.events(None, None, &Filters::new());
    engine.start("e2e-echo").unwrap();
    let w = engine.wait(&id, WaitCondition::NotRunning).unwrap();
    assert_eq!(w.status_code, 0);
    let log = std::fs::read_to_string(
        engine
            .engine()
            .container_dir(&id)
            .join("container-json.log"),
    )
    .unwrap();
    assert!(log.contains("\"log\":\"hi\\n\""), "log: {log}");
    let mut got: Vec<String> = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_secs(2)) {
        got.extend(e.action);
        if got.iter().any(|a| a == "die") {
            break;
        }
    }
    assert!(
        got.contains(&"start".to_string()) && got.contains(&"die".to_string()),
        "{got:?}"
    );

    let ins = engine.inspect(&id[..12], false).unwrap();
    let st = ins.state.unwrap();
    assert_eq!(st.status, Some(ContainerStateStatusEnum::EXITED));
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(ins.name.as_deref(), Some("/e2e-echo"));
    let ps = engine.list(false, None, false, &Filters::new()).unwrap();
    assert!(ps.is_empty(), "ps without -a hides exited containers");
    let ps = engine
        .list(
            true,
            None,
            false,
            &Filters::from([("exited".to_string(), vec!["0".to_string()])]),
        )
        .unwrap();
    assert_eq!(ps.len(), 1);
    assert!(ps[0].status.as_deref().unwrap().starts_with("Exited (0)"));

    // A second engine on the same data root sees the same state.
    let engine2 = common::open(&env.config);
    let ins = engine2.inspect("e2e-echo", false).unwrap();
    assert_eq!(ins.state.unwrap().exit_code, Some(0));

    // Restart it: it runs again and exits again.
    engine2.start(&id).unwrap();
    assert_eq!(
        engine2
            .wait(&id, WaitCondition::NotRunning)
            .unwrap()
            .status_code,
        0
    );

    engine2.remove(&id, false, true).unwrap();
    assert_eq!(code(&engine2.inspect(&id, false).unwrap_err()), 404);
    assert!(!mounted(&id), "snapshot still mounted");
    assert!(!cgroup_exists(&id), "cgroup left behind");
    assert!(!engine2.engine().container_dir(&id).exists());
    assert!(!env
        .config
        .data_root
        .join("storage/snapshots")
        .join(&id)
        .exists());
    let engine3 = common::open(&env.config);
    assert!(
        engine3
            .list(true, None, false, &Filters::new())
            .unwrap()
            .is_empty(),
        "row left behind"
    );
    drop(env);
}

#[test]
fn stop_kill_readopt_and_force_remove() {
    let (env, engine) = setup();
    let id = engine
        .create_container(None, body(&["sleep", "1000"]))
        .unwrap()
        .id;
    engine.start(&id).unwrap();
    let ins = engine.inspect(&id, false).unwrap();
    let pid = ins.state.unwrap().pid.unwrap();
    assert!(pid > 0);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // rm without force: 409.
    let e = engine.remove(&id, false, false).unwrap_err();
    assert_eq!(code(&e), 409);
    assert!(
        e.to_string()
            .contains("You cannot remove a running container"),
        "{e}"
    );
    // kill on a stopped container is a 409, pause/unpause work.
    engine.pause(&id).unwrap();
    assert_eq!(code(&engine.pause(&id).unwrap_err()), 409);
    engine.unpause(&id).unwrap();

    // A new engine (as after a silod restart) adopts the running container.
    let engine2 = common::open(&env.config);
    let st = engine2.inspect(&id, false).unwrap().state.unwrap();
    assert_eq!(st.running, Some(true));
    assert_eq!(st.pid, Some(pid));

    // sleep as pid 1 ignores SIGTERM: stop escalates to SIGKILL after 1 s.
    let t = std::time::Instant::now();
    engine2.stop(&id, None, Some(1)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(900));
    let st = engine2.inspect(&id, false).unwrap().state.unwrap();
    assert_eq!(st.running, Some(false));
    assert_eq!(st.exit_code, Some(137));
    assert_eq!(code(&engine2.stop(&id, None, None).unwrap_err()), 304);
    assert_eq!(code(&engine2.kill(&id, None).unwrap_err()), 409);

    // Start again and force-remove while running.
    engine2.start(&id).unwrap();
    engine2.remove(&id, true, true).unwrap();
    assert!(!mounted(&id));
    assert!(!cgroup_exists(&id));
    assert!(engine2
        .list(true, None, false, &Filters::new())
        .unwrap()
        .is_empty());
    drop(engine);
    drop(env);
}

// ------------------------------------------------------------ healthchecks

fn health_of(engine: &Docker, id: &str) -> Option<Health> {
    engine.inspect(id, false).unwrap().state.unwrap().health
}

fn status_of(engine: &Docker, id: &str) -> Option<HealthStatusEnum> {
    health_of(engine, id).and_then(|h| h.status)
}

/// `sleep 1000` with `healthcheck` at 100 ms intervals.
fn with_health(test: &[&str], timeout_ms: i64, retries: i64) -> ContainerCreateBody {
    ContainerCreateBody {
        healthcheck: Some(HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            interval: Some(100_000_000),
            timeout: Some(timeout_ms * 1_000_000),
            retries: Some(retries),
            ..Default::default()
        }),
        ..body(&["sleep", "1000"])
    }
}

fn ps_ids(engine: &Docker, key: &str, value: &str) -> Vec<String> {
    engine
        .list(
            false,
            None,
            false,
            &Filters::from([(key.to_string(), vec![value.to_string()])]),
        )
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

fn ps_status(engine: &Docker, id: &str) -> String {
    engine
        .list(true, None, false, &Filters::new())
        .unwrap()
        .into_iter()
        .find(|c| c.id.as_deref() == Some(id))
        .and_then(|c| c.status)
        .unwrap_or_default()
}

/// Threads of this process whose name starts with `prefix` (the kernel
/// keeps 15 bytes of a thread name).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .count()
}

#[test]
fn healthchecks_pass_fail_time_out_or_are_off() {
    let (env, engine) = setup();
    let events = engine.events(
        None,
        None,
        &Filters::from([("event".to_string(), vec!["health_status".to_string()])]),
    );
    let create = |name: &str, b: ContainerCreateBody| {
        let id = engine.create_container(Some(name), b).unwrap().id;
        engine.start(&id).unwrap();
        id
    };
    let ok = create("hc-ok", with_health(&["CMD-SHELL", "echo fine"], 10_000, 3));
    let bad = create(
        "hc-bad",
        with_health(
            &["CMD-SHELL", "echo boom; echo oops >&2; exit 3"],
            10_000,
            2,
        ),
    );
    let slow = create("hc-slow", with_health(&["CMD", "sleep", "30"], 200, 1));
    let off = create("hc-off", with_health(&["NONE"], 10_000, 3));

    // Success: healthy, with the probe's output in the log.
    wait_for("hc-ok healthy", || {
        (status_of(&engine, &ok) == Some(HealthStatusEnum::HEALTHY)).then_some(())
    });
    let h = health_of(&engine, &ok).unwrap();
    assert_eq!(h.failing_streak, Some(0));
    let last = h.log.unwrap().pop().unwrap();
    assert_eq!(last.exit_code, Some(0));
    assert_eq!(last.output.as_deref(), Some("fine\n"));
    assert!(last.start.unwrap() <= last.end.unwrap());
    assert!(
        ps_status(&engine, &ok).ends_with(" (healthy)"),
        "{}",
        ps_status(&engine, &ok)
    );

    // Failure with Retries=2: unhealthy after two failures in a row, the
    // exit code and both streams recorded.
    wait_for("hc-bad unhealthy", || {
        (status_of(&engine, &bad) == Some(HealthStatusEnum::UNHEALTHY)).then_some(())
    });
    let h = health_of(&engine, &bad).unwrap();
    assert!(h.failing_streak.unwrap() >= 2, "{h:?}");
    let log = h.log.unwrap();
    assert!(log.len() >= 2 && log.len() <= 5, "{log:?}");
    for e in &log {
        assert_eq!(e.exit_code, Some(3), "{e:?}");
        assert_eq!(e.output.as_deref(), Some("boom\noops\n"), "{e:?}");
    }
    assert!(ps_status(&engine, &bad).ends_with(" (unhealthy)"));

    // Timeout: the probe is killed and counts as a failure (-1).
    wait_for("hc-slow unhealthy", || {
        (status_of(&engine, &slow) == Some(HealthStatusEnum::UNHEALTHY)).then_some(())
    });
    let e = health_of(&engine, &slow).unwrap().log.unwrap().remove(0);
    assert_eq!(e.exit_code, Some(-1), "{e:?}");
    assert_eq!(
        e.output.as_deref(),
        Some("Health check exceeded timeout (200ms)")
    );

    // NONE: no probes, no Health, no suffix; the `none` filter value.
    let ins = engine.inspect(&off, false).unwrap();
    assert!(ins.state.unwrap().health.is_none());
    assert_eq!(
        ins.config.unwrap().healthcheck.unwrap().test.unwrap(),
        ["NONE"]
    );
    assert!(!ps_status(&engine, &off).contains('('));

    // ps filters by health.
    assert_eq!(ps_ids(&engine, "health", "healthy"), [ok.as_str()]);
    let mut unhealthy = ps_ids(&engine, "health", "unhealthy");
    unhealthy.sort();
    let mut want = vec![bad.clone(), slow.clone()];
    want.sort();
    assert_eq!(unhealthy, want);
    assert_eq!(ps_ids(&engine, "health", "none"), [off.as_str()]);
    let e = engine
        .list(
            false,
            None,
            false,
            &Filters::from([("health".to_string(), vec!["great".to_string()])]),
        )
        .unwrap_err();
    assert_eq!(code(&e), 400);

    // One event per status change, in Docker's words.
    let mut seen: Vec<(String, String)> = Vec::new();
    while seen.len() < 3 {
        let ev = events
            .recv_timeout(Duration::from_secs(30))
            .expect("health_status events");
        let id = ev.actor.and_then(|a| a.id).unwrap_or_default();
        seen.push((id, ev.action.unwrap_or_default()));
    }
    assert!(
        seen.contains(&(ok.clone(), "health_status: healthy".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(bad.clone(), "health_status: unhealthy".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(slow.clone(), "health_status: unhealthy".into())),
        "{seen:?}"
    );
    drop(env);
}

#[test]
fn health_survives_silod_restart_pause_stop_and_rm_leaves_no_thread() {
    let (env, engine) = setup();
    let id = engine
        .create_container(None, with_health(&["CMD", "true"], 10_000, 3))
        .unwrap()
        .id;
    // Created, never started: no Health yet.
    assert!(health_of(&engine, &id).is_none());
    engine.start(&id).unwrap();
    wait_for("healthy", || {
        (status_of(&engine, &id) == Some(HealthStatusEnum::HEALTHY)).then_some(())
    });

    let log_len = |e: &Docker| {
        health_of(e, &id)
            .and_then(|h| h.log)
            .map(|l| l.len())
            .unwrap_or(0)
    };
    wait_for("three probe results", || {
        (log_len(&engine) >= 3).then_some(())
    });

    // A new engine (silod restarted) sees the persisted status and log,
    // and keeps probing: new log entries appear.
    let engine2 = common::open(&env.config);
    assert_eq!(status_of(&engine2, &id), Some(HealthStatusEnum::HEALTHY));
    assert!(log_len(&engine2) >= 3, "probe results were not persisted");
    let last_end = |e: &Docker| {
        health_of(e, &id)
            .and_then(|h| h.log)
            .and_then(|l| l.last().and_then(|r| r.end.clone()))
            .unwrap_or_default()
    };
    let before = last_end(&engine2);
    wait_for("a probe by the new engine", || {
        (last_end(&engine2) > before).then_some(())
    });
    drop(engine);

    // Paused: Docker stops the probes and reports unhealthy; unpaused, the
    // next probe makes it healthy again.
    engine2.pause(&id).unwrap();
    assert_eq!(status_of(&engine2, &id), Some(HealthStatusEnum::UNHEALTHY));
    assert!(ps_status(&engine2, &id).ends_with("(Paused)"));
    engine2.unpause(&id).unwrap();
    wait_for("healthy after unpause", || {
        (status_of(&engine2, &id) == Some(HealthStatusEnum::HEALTHY)).then_some(())
    });

    // Stopped: unhealthy (Docker); started again: starting, then healthy.
    engine2.kill(&id, None).unwrap();
    let h = health_of(&engine2, &id).unwrap();
    assert_eq!(h.status, Some(HealthStatusEnum::UNHEALTHY));
    assert!(!h.log.unwrap().is_empty(), "the log survives a stop");
    assert!(ps_status(&engine2, &id).starts_with("Exited"));
    engine2.start(&id).unwrap();
    let h = health_of(&engine2, &id).unwrap();
    assert!(
        matches!(
            h.status,
            Some(HealthStatusEnum::STARTING | HealthStatusEnum::HEALTHY)
        ),
        "{h:?}"
    );
    assert_eq!(h.failing_streak, Some(0));
    wait_for("healthy after restart", || {
        (status_of(&engine2, &id) == Some(HealthStatusEnum::HEALTHY)).then_some(())
    });

    // Removed: the probe thread ends.
    let prefix = format!("health-{}", &id[..8]);
    assert!(threads_named(&prefix) >= 1, "no probe thread for {id}");
    engine2.remove(&id, true, true).unwrap();
    wait_for("the probe thread to end", || {
        (threads_named(&prefix) == 0).then_some(())
    });
    drop(env);
}

#[test]
fn image_healthcheck_is_inherited_and_no_healthcheck_turns_it_off() {
    let (env, engine) = setup();
    let tar = env.tmp.path().join("rootfs");
    let mut t = Command::new("tar")
        .arg("-C")
        .arg(&tar)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = t.stdout.take().unwrap();
    engine
        .import_image(
            &mut out,
            Some("hcimage"),
            Some("latest"),
            &[
                "HEALTHCHECK --interval=100ms --retries=5 CMD [\"test\", \"-d\", \"/\"]"
                    .to_string(),
            ],
            None,
        )
        .unwrap();
    assert!(t.wait().unwrap().success());
    let img = engine.image_inspect("hcimage").unwrap();
    let hc = img.config.unwrap().healthcheck.unwrap();
    assert_eq!(hc.test.unwrap(), ["CMD", "test", "-d", "/"]);
    assert_eq!(hc.interval, Some(100_000_000));

    let inherit = ContainerCreateBody {
        image: Some("hcimage".into()),
        // Only the retries are the user's own.
        healthcheck: Some(HealthConfig {
            retries: Some(2),
            ..Default::default()
        }),
        ..body(&["sleep", "1000"])
    };
    let id = engine.create_container(None, inherit).unwrap().id;
    let cfg = engine.inspect(&id, false).unwrap().config.unwrap();
    let hc = cfg.healthcheck.unwrap();
    assert_eq!(hc.test.unwrap(), ["CMD", "test", "-d", "/"]);
    assert_eq!((hc.interval, hc.retries), (Some(100_000_000), Some(2)));
    engine.start(&id).unwrap();
    wait_for("healthy from the image's check", || {
        (status_of(&engine, &id) == Some(HealthStatusEnum::HEALTHY)).then_some(())
    });

    // docker run --no-healthcheck sends Test ["NONE"].
    let off = ContainerCreateBody {
        image: Some("hcimage".into()),
        healthcheck: Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }),
        ..body(&["sleep", "1000"])
    };
    let off = engine.create_container(None, off).unwrap().id;
    engine.start(&off).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(health_of(&engine, &off).is_none());

    // An invalid healthcheck is a 400 naming the field.
    let e = engine
        .create_container(None, with_health(&["CMD"], 10_000, 1))
        .unwrap_err();
    assert_eq!(code(&e), 400);
    assert!(e.to_string().contains("Config.Healthcheck.Test"), "{e}");
    drop(env);
}

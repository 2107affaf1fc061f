//! Out-of-memory: a process exceeding the container's memory limit is killed, the
//! runtime's `events` stream reports an "oom" event, and `events --stats` shows it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: u64 = 16 * 1024 * 1024;

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let rt = Runtime::new();
    // The init waits for /go, then runs a child that buffers 64 MB in a shell
    // variable (4x the limit), records the child's status, and stays alive.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "while [ ! -e /go ]; do sleep 0.1; done; \
         sh -c 'x=$(yes | head -c 64000000); echo survived'; echo $? > /oom-rc; \
         exec sleep 1000",
    ]);
    b.config_mut()["linux"]["resources"]["memory"] = json!({"limit": LIMIT, "swap": LIMIT});
    let c = rt.container(&mut b);
    assert_ok(&c.run_detached());
    c.wait_status("running", Duration::from_secs(10));

    // Follow the event stream before the allocation starts.
    let mut events = rt
        .cmd()
        .args(["events", "--interval", "1s", &c.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events");
    let out = events.stdout.take().expect("events stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(b.rootfs().join("go"), b"").expect("write /go trigger");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut oom = None;
    while std::time::Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            if v["type"] == "oom" {
                oom = Some(v);
                break;
            }
            seen.push(v["type"].clone());
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    let oom = oom.unwrap_or_else(|| panic!("no oom event; saw event types {seen:?}"));
    assert_eq!(oom["id"], json!(c.id));

    // The hog was killed by SIGKILL (137 as its shell status), the init survived.
    let mut rc = String::new();
    // Up to 20 s: on a loaded 2-core host the shell writes its status late.
    for _ in 0..400 {
        rc = std::fs::read_to_string(b.rootfs().join("oom-rc")).unwrap_or_default();
        if !rc.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rc.trim(), "137", "memory hog was not SIGKILLed");
    assert!(!c.init_stdout().contains("survived"));
    assert_eq!(c.status(), "running");

    let o = rt.exec_args(["events", "--stats", &c.id]);
    assert_ok(&o);
    let st: Value = serde_json::from_slice(&o.stdout).expect("stats JSON");
    assert_eq!(st["type"], "stats");
    let mem = &st["data"]["memory"];
    if is_runc() {
        // runc reports no oom-kill count; its peak usage reached the limit.
        assert_eq!(mem["usage"]["limit"].as_u64(), Some(LIMIT), "{mem}");
        assert_eq!(mem["usage"]["max"].as_u64(), Some(LIMIT), "{mem}");
    } else {
        assert!(
            mem["oom_kills"].as_u64().unwrap_or(0) > 0,
            "events --stats lacks data.memory.oom_kills > 0: {mem}"
        );
    }
    assert_ok(&c.delete_force());
    c.assert_gone();
}

//! docker-compose (Debian's 1.29, which speaks the Engine API through the
//! Python SDK) brings a project up and down on silod unchanged: the project
//! network, service names and aliases through the embedded DNS server, a
//! published port, a named volume, depends_on, exec, logs, and `down -v`
//! leaving no container, network or volume behind.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{stderr, stdout, Cli, Daemon};
use std::path::Path;
use std::process::{Command, Output};

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

fn compose(d: &Daemon, args: &[&str]) -> Output {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose/docker-compose.yml");
    Command::new("docker-compose")
        .env("DOCKER_HOST", d.host())
        // exec through the SDK, not by running the docker CLI.
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .args(["-p", "silotest", "-f"])
        .arg(&file)
        .args(args)
        .output()
        .expect("docker-compose (apt-get install docker-compose)")
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = compose(d, args);
    assert!(
        out.status.success(),
        "docker-compose {args:?}: {}\n{}",
        stderr(&out),
        d.log()
    );
    stdout(&out)
}

#[test]
fn a_compose_project_comes_up_works_and_goes_away() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    ok(&d, &["up", "-d"]);
    let ps = ok(&d, &["ps"]);
    assert_eq!(ps.matches(" Up ").count(), 2, "{ps}");
    // Service names and aliases resolve on the project network.
    let get = "printf 'GET /status HTTP/1.0\\r\\n\\r\\n' | nc -w 5 database 80";
    let body = ok(&d, &["exec", "-T", "web", "sh", "-c", get]);
    assert!(body.contains("db-ready"), "{body}");
    let found = ok(&d, &["exec", "-T", "web", "nslookup", "db"]);
    assert!(found.contains("Address: 1"), "{found}");
    // The published port answers on the host.
    let out = d.in_netns(&["curl", "-sS", "-m", "5", "http://127.0.0.1:18300/hostname"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    let logs = ok(&d, &["logs", "db"]);
    assert!(logs.contains("db started"), "{logs}");
    let nets = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(nets.contains("silotest_default"), "{nets}");
    let vols = d.ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(vols.contains("silotest_data"), "{vols}");

    ok(&d, &["down", "-v"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    let nets = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("silotest"), "{nets}");
    let vols = d.ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(!vols.contains("silotest"), "{vols}");
}

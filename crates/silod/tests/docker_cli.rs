//! End-to-end tests of silod with the real docker CLI: a daemon per test on
//! a temporary socket, data root and exec root; a busybox image imported
//! from a rootfs built by scripts/mkrootfs.sh.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{sibling, stderr, Cli, Daemon, DOCKER};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

/// A daemon driven with the docker CLI.
fn daemon() -> Daemon {
    Daemon::start(Path::new(SILOD), Cli::Docker)
}

/// silo-monitor or silo-runtime, next to silod.
fn helper(name: &str) -> std::path::PathBuf {
    sibling(Path::new(SILOD), name)
}

#[test]
fn ping_version_prefix_and_unknown_paths() {
    let d = daemon();
    let (head, body) = d.http("GET", "/_ping");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "OK");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("api-version: 1.45"), "{head}");
    assert!(lower.contains("ostype: linux"), "{head}");
    assert!(lower.contains("docker-experimental: false"), "{head}");

    let (head, body) = d.http("GET", "/v1.45/version");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("version JSON");
    assert_eq!(v["ApiVersion"], "1.45");
    assert_eq!(v["Os"], "linux");

    let (head, body) = d.http("GET", "/v1.45/no/such/path");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let e: serde_json::Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(e["message"], "page not found");
    assert!(head.to_ascii_lowercase().contains("api-version: 1.45"));

    let (head, body) = d.http("GET", "/containers/json?all=maybe");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        body.contains("\\\"all\\\"") || body.contains("all"),
        "{body}"
    );

    let out = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(out.trim(), "1.45");
}

#[test]
fn pull_from_an_unreachable_registry_fails_naming_it() {
    let d = daemon();
    let out = d.cli(&["pull", "127.0.0.1:1/nothing:1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn sigterm_removes_socket_and_pidfile() {
    let mut d = daemon();
    let pidfile = d.dir().join("exec/silod.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(pid.trim().parse::<u32>().ok(), d.pid());
    d.terminate();
    assert!(!d.socket().exists(), "socket left behind");
    assert!(!pidfile.exists(), "pidfile left behind");
}

#[test]
fn docker_info_works() {
    let d = daemon();
    d.ok(&["info"]);
}

#[test]
fn run_echo_and_exit_codes() {
    let d = daemon();
    d.import_busybox();
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "hello",
    ]);
    assert_eq!(out, "hello\n");
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "--rm left containers");
}

#[test]
fn detached_lifecycle() {
    let d = daemon();
    d.import_busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo started; while true; do sleep 1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if d.ok(&["logs", "web"]).contains("started") {
            break;
        }
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.ok(&["exec", "web", "echo", "hi"]), "hi\n");
    let pid: i32 = d
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .expect("pid");
    assert!(pid > 0 && Path::new(&format!("/proc/{pid}")).exists());
    d.ok(&["stop", "-t", "1", "web"]);
    let status = d.ok(&["inspect", "--format", "{{.State.Status}}", "web"]);
    assert_eq!(status.trim(), "exited");
    d.ok(&["rm", "web"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn clear_errors_and_nothing_created() {
    let d = daemon();
    d.import_busybox();
    let out = d.cli(&["run", "--rm", "nosuchimage:1", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nosuchimage"), "{}", stderr(&out));

    let out = d.cli(&["inspect", "--type", "container", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );
    let out = d.cli(&["rm", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );

    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = d.cli(&["create", "--name", "dup", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is already in use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn run_interactive_tty() {
    let d = daemon();
    d.import_busybox();
    let mut script = Command::new("timeout");
    script
        .arg("60")
        .arg("script")
        .arg("-qec")
        .arg(format!(
            "{DOCKER} run -it --rm --network none busybox sh -c 'tty; echo ok'"
        ))
        .arg("/dev/null");
    let out = d
        .client_env(&mut script)
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[test]
fn containers_survive_a_killed_daemon() {
    let mut d = daemon();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let before = d.ok(&["logs", "ticker"]).lines().count();
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    d.spawn();
    let status = d.ok(&["inspect", "--format", "{{.State.Status}}", "ticker"]);
    assert_eq!(status.trim(), "running");
    let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.lines().any(|l| l == "ticker"), "{ps}");
    let after = d.ok(&["logs", "ticker"]).lines().count();
    assert!(
        after >= before + 5,
        "lines written while silod was down are missing: {before} -> {after}"
    );
}

#[test]
fn exec_attach_and_io_verbs() {
    let d = daemon();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    // exec: stdin piped through the hijacked connection, EOF passed on.
    let out = d.cli_with_input(&["exec", "-i", "box", "cat"], b"piped line\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped line\n");
    // exec: separate streams and the exit code.
    let out = d.cli(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));

    // attach to a running container; closing stdin ends `cat`.
    d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "cat",
        "--network",
        "none",
        "busybox",
        "cat",
    ]);
    let out = d.cli_with_input(&["attach", "cat"], b"via attach\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via attach\n");
    let logs = d.ok(&["logs", "cat"]);
    assert_eq!(logs, "via attach\n");

    // cp both ways.
    let f = d.dir().join("in.txt");
    std::fs::write(&f, "copied in\n").expect("write in.txt");
    d.ok(&["cp", f.to_str().expect("utf-8"), "box:/tmp/in.txt"]);
    assert_eq!(d.ok(&["exec", "box", "cat", "/tmp/in.txt"]), "copied in\n");
    let back = d.dir().join("back.txt");
    d.ok(&["cp", "box:/tmp/in.txt", back.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("read back.txt"),
        "copied in\n"
    );
    let out = d.cli(&["cp", "box:/no/such/file", back.to_str().expect("utf-8")]);
    assert!(!out.status.success());

    // top and one-shot stats.
    let top = d.ok(&["top", "box"]);
    assert!(top.contains("sleep 1000"), "{top}");
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "box",
    ]);
    assert_eq!(stats.trim(), "box 1");

    // logs: tail and timestamps.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "lines",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done",
    ]);
    d.ok(&["wait", "lines"]);
    assert_eq!(d.ok(&["logs", "--tail", "2", "lines"]), "line4\nline5\n");
    let stamped = d.ok(&["logs", "-t", "--tail", "1", "lines"]);
    assert!(
        stamped.starts_with("20") && stamped.trim_end().ends_with(" line5"),
        "{stamped}"
    );

    // export streams a tar of the rootfs.
    let out = d.cli(&["export", "box"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.len() > 1024 * 1024,
        "export too small: {}",
        out.stdout.len()
    );
}

#[test]
fn volumes_images_and_disk_usage() {
    let d = daemon();
    d.import_busybox();
    d.ok(&["volume", "create", "data"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]).trim(), "data");
    let run = |name: &str, cmd: &[&str]| {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            "data:/data",
            "busybox",
        ];
        args.extend_from_slice(cmd);
        d.ok(&args);
        assert_eq!(d.ok(&["wait", name]).trim(), "0");
    };
    run("writer", &["sh", "-c", "echo kept > /data/f"]);
    run("reader", &["cat", "/data/f"]);
    assert_eq!(d.ok(&["logs", "reader"]), "kept\n");
    let out = d.cli(&["volume", "rm", "data"]);
    assert!(!out.status.success(), "a volume in use was removed");
    d.ok(&["rm", "writer", "reader"]);
    d.ok(&["volume", "rm", "data"]);
    let out = d.cli(&["volume", "inspect", "data"]);
    assert!(!out.status.success());

    d.ok(&["tag", "busybox", "other:v1"]);
    let tags = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == "other:v1"), "{tags}");
    d.ok(&["rmi", "other:v1"]);
    let id = d.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert!(id.starts_with("sha256:"), "{id}");

    let df = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.lines().any(|l| l == "Images 1"), "{df}");
}

#[test]
fn config_file_and_bad_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("from-config.sock");
    let cfg = dir.path().join("silod.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "hosts": [format!("unix://{}", sock.display())],
            "data-root": dir.path().join("data"),
            "exec-root": dir.path().join("exec"),
            "monitor": helper("silo-monitor"),
            "runtime": helper("silo-runtime"),
        })
        .to_string(),
    )
    .expect("write config");
    let mut child = Command::new(SILOD)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn silod");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "silod did not listen on the configured socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.path().join("exec/silod.pid").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sock).expect("stat socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    let _ = child.kill();
    let _ = child.wait();

    let d = daemon();
    let (head, body) = d.http_body("POST", "/containers/create", r#"{"Image":5}"#);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("Image"), "{body}");
    let (head, _) = d.http_body("POST", "/containers/create", "{not json");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, body) = d.http("POST", "/containers/nosuch/start");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such container"), "{body}");
}

#[test]
fn run_with_piped_stdin() {
    let d = daemon();
    d.import_busybox();
    for i in 0..5 {
        let line = format!("piped {i}\n");
        let out = d.cli_with_input(
            &["run", "-i", "--rm", "--network", "none", "busybox", "cat"],
            line.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), line);
    }
}

#[test]
fn exec_runs_as_the_containers_user() {
    let d = daemon();
    d.import_busybox();
    // Config.User.
    let id = d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "-u",
        "1000:1000",
        "busybox",
        "sleep",
        "1000",
    ]);
    let id = id.trim();
    assert_eq!(d.ok(&["exec", id, "id", "-u"]), "1000\n");
    assert_eq!(d.ok(&["exec", id, "id", "-g"]), "1000\n");
    assert_eq!(d.ok(&["exec", "-u", "0", id, "id", "-u"]), "0\n");
    // The image's USER when Config.User is empty; named users resolve in
    // the container's /etc/passwd (busybox: nobody is 65534:65534).
    let tar = silo_testsupport::rootfs_tar()
        .to_str()
        .expect("utf-8")
        .to_string();
    d.ok(&["import", "--change", "USER nobody", &tar, "busybox:nobody"]);
    let id = d.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "busybox:nobody",
        "sleep",
        "1000",
    ]);
    let id = id.trim();
    assert_eq!(d.ok(&["exec", id, "id", "-un"]), "nobody\n");
    assert_eq!(d.ok(&["exec", "-u", "root", id, "id", "-un"]), "root\n");
    d.ok(&["rm", "-f", id]);
}

/// Unix seconds now, for `docker events --since/--until`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `docker events` of container `id` since `since`, as
/// "<action>|<execID>" lines (the stream ends a second from now).
fn exec_events(d: &Daemon, id: &str, since: u64) -> Vec<String> {
    d.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}|{{index .Actor.Attributes \"execID\"}}",
    ])
    .lines()
    .filter(|l| l.starts_with("exec_"))
    .map(String::from)
    .collect()
}

#[test]
fn exec_events_carry_the_command_like_dockers() {
    let d = daemon();
    d.import_busybox();
    let t0 = unix_now();
    let id = d.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]);
    let id = id.trim();
    assert_eq!(d.ok(&["exec", id, "echo", "a", "b"]), "a b\n");
    // dockerd writes Entrypoint + " " + Args: no arguments, trailing space.
    d.ok(&["exec", id, "true"]);
    let mut events = exec_events(&d, id, t0);
    // exec_die is sent once the process is reaped, which may trail the
    // client's exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.iter().filter(|e| e.starts_with("exec_die|")).count() < 2 {
        assert!(Instant::now() < deadline, "exec_die missing: {events:?}");
        std::thread::sleep(Duration::from_millis(100));
        events = exec_events(&d, id, t0);
    }
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e.split_once('|').map_or(e.as_str(), |(a, _)| a))
        .collect();
    assert_eq!(
        actions,
        [
            "exec_create: echo a b",
            "exec_start: echo a b",
            "exec_die",
            "exec_create: true ",
            "exec_start: true ",
            "exec_die",
        ],
        "{events:?}"
    );
    // One exec id per exec, on all three of its events.
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e.split_once('|').map(|(_, x)| x))
        .collect();
    assert_eq!(ids[0].len(), 64, "{events:?}");
    assert!(ids[..3].iter().all(|x| *x == ids[0]), "{events:?}");
    assert!(ids[3..].iter().all(|x| *x == ids[3]), "{events:?}");
    assert_ne!(ids[0], ids[3]);
    // `--filter event=exec_start` matches the action before the colon.
    let starts = d.ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        &format!("container={id}"),
        "--filter",
        "event=exec_start",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(starts, "exec_start: echo a b\nexec_start: true \n");
    d.ok(&["rm", "-f", id]);
}

#[test]
fn run_with_init() {
    assert!(
        Path::new("/usr/bin/tini-static").exists()
            || Path::new("/usr/bin/docker-init").exists()
            || Path::new("/usr/libexec/docker/docker-init").exists(),
        "--init needs a static init: apt-get install tini"
    );
    let d = daemon();
    d.import_busybox();
    // PID 1 is the init, running the user's command.
    let ps = d.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ]);
    let pid1 = ps
        .lines()
        .find_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("1 ").map(str::trim)
        })
        .unwrap_or_else(|| panic!("no PID 1 in {ps:?}"));
    assert_eq!(pid1, "/sbin/docker-init -- ps -o pid,args", "{ps}");
    assert!(
        ps.lines()
            .any(|l| !l.trim_start().starts_with("1 ") && l.ends_with(" ps -o pid,args")),
        "{ps}"
    );
    // The command's exit status is the container's.
    let out = d.cli(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Inspect shows the user's command, not the init.
    d.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "initbox",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let path_args = d.ok(&["inspect", "--format", "{{.Path}} {{.Args}}", "initbox"]);
    assert_eq!(path_args.trim(), "sleep [1000]");
    let init = d.ok(&["inspect", "--format", "{{.HostConfig.Init}}", "initbox"]);
    assert_eq!(init.trim(), "true");
    d.ok(&["rm", "-f", "initbox"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "--rm left containers");
}

#[test]
fn restart_keeps_a_rm_container_and_stop_removes_it() {
    // dockerd turns AutoRemove off for the stop inside `docker restart`.
    let d = daemon();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        "vr",
        "busybox",
        "sleep",
        "1000",
    ]);
    d.ok(&["restart", "-t", "1", "vr"]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.HostConfig.AutoRemove}}",
            "vr"
        ])
        .trim(),
        "true true"
    );
    // Its writable layer (a volatile overlay) mounts again after the restart.
    assert_eq!(
        d.ok(&["exec", "vr", "sh", "-c", "echo again > /f && cat /f"])
            .trim(),
        "again"
    );
    d.ok(&["stop", "-t", "1", "vr"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.ok(&["ps", "-aq"]).trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "--rm container not removed after stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints a container's net, ipc, pid and uts namespaces, a line each.
const NS_LINKS: &str = "for t in net ipc pid uts; do readlink /proc/self/ns/$t; done";

#[test]
fn container_and_host_namespace_modes() {
    let d = daemon();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ns = |args: &[&str]| -> String {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "sh", "-c", NS_LINKS]);
        d.ok(&all)
    };
    let donor: Vec<String> = d
        .ok(&["exec", "donor", "sh", "-c", NS_LINKS])
        .lines()
        .map(str::to_string)
        .collect();
    // --network, --ipc and --pid container:<name> join the donor's.
    let joined: Vec<String> = ns(&[
        "--network",
        "container:donor",
        "--ipc",
        "container:donor",
        "--pid",
        "container:donor",
    ])
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(&joined[..3], &donor[..3], "net, ipc and pid are shared");
    assert_ne!(joined[3], donor[3], "uts stays private");
    // A private container shares none of them.
    let private: Vec<String> = ns(&[]).lines().map(str::to_string).collect();
    for i in 0..4 {
        assert_ne!(private[i], donor[i]);
    }
    // --pid host and --uts host: the host's.
    let host: Vec<String> = ns(&["--pid", "host", "--uts", "host", "--network", "host"])
        .lines()
        .map(str::to_string)
        .collect();
    let mine = |t: &str| {
        std::fs::read_link(format!("/proc/self/ns/{t}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    // "host" networking is silod's namespace (a private one in tests).
    let silod_net = std::fs::read_link(format!("/proc/{}/ns/net", d.pid().unwrap()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(host[0], silod_net);
    assert_eq!(host[2], mine("pid"));
    assert_eq!(host[3], mine("uts"));
    // A donor that did not make its IPC shareable is refused, as by dockerd.
    d.ok(&["run", "-d", "--name", "closed", "busybox", "sleep", "1000"]);
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--ipc",
            "container:closed",
            "busybox",
            "true",
        ],
        "non-shareable IPC",
    );
    // A hostname with another container's network conflicts, as in dockerd.
    refused(
        &d,
        &[
            "run",
            "--rm",
            "-h",
            "x",
            "--network",
            "container:donor",
            "busybox",
            "true",
        ],
        "conflicting options",
    );
    // Joining a stopped container is refused and leaves nothing.
    d.ok(&["stop", "-t", "0", "closed"]);
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "container:closed",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    d.ok(&["rm", "-f", "donor", "closed"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "containers left behind");
}

#[test]
fn failed_start_of_rm_container_ends_and_removes_it() {
    let d = daemon();
    d.import_busybox();
    // A missing command: 127, and an --rm container is removed, not left
    // Created with the CLI waiting for its removal forever.
    let out = d.cli(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("nosuchcommand"), "{}", stderr(&out));
    // A file that is not executable: 126.
    let out = d.cli(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    // Without --rm the container stays, as with dockerd.
    let out = d.cli(&["run", "--name", "kept", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(d.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(), "kept");
    d.ok(&["rm", "kept"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "containers left behind");
    // Every monitor the daemon started has been reaped: no zombie children.
    let z = zombies(d.pid().unwrap());
    assert!(z.is_empty(), "zombie children of silod: {z:?}");
}

/// The zombie children (of any thread) of process `pid`, with their stat lines.
fn zombies(pid: u32) -> Vec<String> {
    let mut children = String::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let list = task.unwrap().path().join("children");
        children += &std::fs::read_to_string(list).unwrap_or_default();
        children.push(' ');
    }
    children
        .split_whitespace()
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let state = stat.rsplit(')').next()?.split_whitespace().next()?;
            (state == "Z").then_some(stat)
        })
        .collect()
}

/// Waits (at most 20 s) until silod has no zombie children.
fn until_no_zombies(pid: u32) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let z = zombies(pid);
        if z.is_empty() || Instant::now() > deadline {
            return z;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn orphans_are_reaped_after_killed_monitors_and_concurrent_removals() {
    let d = daemon();
    d.import_busybox();
    let pid = d.pid().unwrap();
    // A killed monitor: the container's init is reparented to silod.
    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let id = id.trim().to_string();
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            d.data_root()
                .join("containers")
                .join(&id)
                .join("monitor.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = info["monitor_pid"].as_i64().unwrap() as i32;
    let init = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let init: i32 = init.trim().parse().unwrap();
    let killed = Command::new("kill")
        .args(["-9", &monitor.to_string(), &init.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Concurrent removals.
    let ids: Vec<String> = (0..10)
        .map(|_| {
            d.ok(&["run", "-d", "busybox", "sleep", "1000"])
                .trim()
                .to_string()
        })
        .collect();
    let handles: Vec<_> = ids
        .iter()
        .map(|i| {
            let mut c = Command::new(DOCKER);
            d.client_env(&mut c).args(["rm", "-f", i]);
            std::thread::spawn(move || c.output().unwrap().status.success())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
    let z = until_no_zombies(pid);
    assert!(z.is_empty(), "zombie children of silod: {z:?}");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn cp_into_a_container_never_breaks_the_pipe() {
    let d = daemon();
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "cp1", "busybox", "sleep", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.txt");
    std::fs::write(&src, "hello\n").unwrap();
    let src = src.to_str().unwrap().to_string();
    // silod used to answer before reading the tar's padding, and the CLI,
    // still writing, failed now and then with "broken pipe".
    for i in 0..40 {
        let dest = format!("cp1:/tmp/f{i}");
        d.ok(&["cp", &src, &dest]);
    }
    let listed = d.ok(&["exec", "cp1", "sh", "-c", "cat /tmp/f* | wc -l"]);
    assert_eq!(listed.trim(), "40");
    d.ok(&["rm", "-f", "cp1"]);
}

#[test]
fn api_versions_out_of_range_and_swarm_are_refused_like_dockerd() {
    let d = daemon();
    let (head, body) = d.http("GET", "/v1.99/version");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        body.contains("client version 1.99 is too new. Maximum supported API version is 1.45"),
        "{body}"
    );
    let (head, body) = d.http("GET", "/v1.12/version");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("client version 1.12 is too old"), "{body}");
    let (head, _) = d.http("GET", "/v1.24/version");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    for path in ["/swarm", "/v1.45/services", "/nodes/x", "/tasks"] {
        let (head, body) = d.http("GET", path);
        assert!(head.starts_with("HTTP/1.1 503"), "{path}: {head}");
        assert!(body.contains("This node is not a swarm manager"), "{body}");
    }
    // A path that only starts like one is not swarm's.
    let (head, _) = d.http("GET", "/swarmy");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn log_drivers_and_rotation_limits() {
    let d = daemon();
    d.import_busybox();
    // A flood: 3000 lines of about 150 bytes in json-file records.
    let script = "i=0; while [ $i -lt 3000 ]; do echo $i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done";
    let id = d
        .ok(&[
            "run",
            "-d",
            "--log-opt",
            "max-size=50k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .trim()
        .to_string();
    assert_eq!(d.ok(&["wait", &id]).trim(), "0");
    let dir = d.data_root().join("containers").join(&id);
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("container-json.log")
        })
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    for f in &logs {
        let len = f.metadata().unwrap().len();
        assert!(len <= 50 * 1024, "{:?} has {len} bytes", f.path());
    }
    // The newest lines are there, read from the end.
    let last = d.ok(&["logs", "--tail", "2", &id]);
    assert!(
        last.starts_with("2998-") && last.contains("\n2999-"),
        "{last}"
    );
    let inspect = d.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", &id]);
    assert!(inspect.contains("\"max-size\":\"50k\""), "{inspect}");
    // none: nothing is logged, and logs says so as dockerd does.
    let id = d.ok(&["run", "-d", "--log-driver", "none", "busybox", "echo", "hi"]);
    let id = id.trim();
    d.ok(&["wait", id]);
    let out = d.cli(&["logs", id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("configured logging driver does not support reading"),
        "{}",
        stderr(&out)
    );
    assert!(!d
        .data_root()
        .join("containers")
        .join(id)
        .join("container-json.log")
        .exists());
    // What silo cannot honour is refused, and nothing is left behind.
    for (args, want) in [
        (
            vec!["--log-driver", "syslog"],
            "logger: no log driver named 'syslog' is registered",
        ),
        (vec!["--log-opt", "compress=true"], "compress"),
        (vec!["--log-opt", "bogus=1"], "unknown log opt 'bogus'"),
        (vec!["--log-opt", "max-size=lots"], "max-size"),
    ] {
        let mut all = vec!["create"];
        all.extend_from_slice(&args);
        all.extend_from_slice(&["busybox", "true"]);
        let out = d.cli(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    d.ok(&["rm", "-f", id]);
    let left = d.ok(&["ps", "-aq"]);
    assert_eq!(left.lines().count(), 1, "only the flood container: {left}");
}

/// A small ext4 filesystem on a loop device, mounted at `at` (removed on drop).
struct SmallDisk {
    image: std::path::PathBuf,
    at: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(image: &Path, at: &Path, mib: u32) -> SmallDisk {
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        };
        run(Command::new("truncate")
            .args(["-s", &format!("{mib}M")])
            .arg(image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at));
        SmallDisk {
            image: image.to_path_buf(),
            at: at.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily, in case something still holds it; the loop device goes with it.
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

#[test]
fn rm_f_works_on_a_full_data_root() {
    let mut d = daemon();
    d.terminate();
    let image = d.dir().join("disk.img");
    let disk = SmallDisk::mount(&image, &d.data_root(), 48);
    d.spawn();
    d.import_busybox();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "flooder",
            "busybox",
            "sh",
            "-c",
            "yes $(head -c 1000 /dev/zero | tr '\\0' x)",
        ])
        .trim()
        .to_string();
    // Wait until the disk is full: the monitor drops what does not fit
    // (root may write into ext4's reserved blocks, so df is not enough).
    let cdir = d.data_root().join("containers").join(&id);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cdir.join("log-errors.json").exists() {
        assert!(Instant::now() < deadline, "the disk never filled");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The lost output is said where users look.
    d.ok(&["kill", "flooder"]);
    d.ok(&["wait", "flooder"]);
    let error = d.ok(&["inspect", "-f", "{{.State.Error}}", "flooder"]);
    assert!(error.contains("were not logged"), "State.Error: {error}");
    // Another writer takes what the monitor left free: now nothing is.
    let filler = disk.at.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    // The way out works at once, and leaves nothing.
    d.ok(&["rm", "-f", "flooder"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "rm -f left {id}");
    // And the daemon works again afterwards.
    let out = d.ok(&["run", "--rm", "busybox", "echo", "ok"]);
    assert_eq!(out, "ok\n");
    d.terminate();
    drop(disk);
}

/// Runs the CLI, expects it to fail, and its stderr to name `want`.
fn refused(d: &Daemon, args: &[&str], want: &str) {
    let out = d.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
}

#[test]
fn cli_diff_group_add_devices_volumes_from_cp_and_exec_codes() {
    let d = daemon();
    d.import_busybox();
    // docker diff
    d.ok(&[
        "run",
        "--name",
        "changer",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/new && rm /bin/vi",
    ]);
    let diff = d.ok(&["diff", "changer"]);
    for line in ["C /tmp", "A /tmp/new", "D /bin/vi"] {
        assert!(diff.lines().any(|l| l == line), "{line} not in:\n{diff}");
    }
    // --group-add, by number and by name
    let gids = d.ok(&[
        "run",
        "--rm",
        "--group-add",
        "4242",
        "--group-add",
        "silo",
        "busybox",
        "id",
        "-G",
    ]);
    let gids: Vec<&str> = gids.split_whitespace().collect();
    assert!(gids.contains(&"4242") && gids.contains(&"1000"), "{gids:?}");
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--group-add",
            "nosuchgroup",
            "busybox",
            "true",
        ],
        "Unable to find group nosuchgroup",
    );
    // --device and --device-cgroup-rule
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "--device-cgroup-rule",
        "c 1:3 rwm",
        "busybox",
        "sh",
        "-c",
        "test -c /dev/mynull && echo ok > /dev/mynull && echo fine",
    ]);
    assert_eq!(out, "fine\n");
    refused(
        &d,
        &["create", "--device", "/etc/passwd", "busybox", "true"],
        "not a device",
    );
    // --volumes-from, and docker cp into a created container's volume
    d.ok(&[
        "create",
        "--name",
        "donor",
        "-v",
        "clivol:/shared",
        "busybox",
        "true",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f.txt");
    std::fs::write(&src, "from cp\n").unwrap();
    d.ok(&["cp", src.to_str().unwrap(), "donor:/shared/f.txt"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "donor:ro",
        "busybox",
        "cat",
        "/shared/f.txt",
    ]);
    assert_eq!(out, "from cp\n");
    let out = d.cli(&[
        "run",
        "--rm",
        "--volumes-from",
        "donor:ro",
        "busybox",
        "touch",
        "/shared/g",
    ]);
    assert!(!out.status.success(), "a :ro volume was writable");
    // docker exec of a missing or non-executable program: its exit code
    d.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]);
    let out = d.cli(&["exec", "sleeper", "nosuchprogram"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let out = d.cli(&["exec", "sleeper", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    d.ok(&["rm", "-f", "changer", "donor", "sleeper"]);
    d.ok(&["volume", "rm", "clivol"]);
}

//! End-to-end tests of the `silo` CLI: the not-running message and
//! completions need no daemon; the rest start silod on a temporary socket,
//! data root and exec root, import busybox with `silo import`, and drive it
//! with `silo`. silod, silo-monitor and silo-runtime are looked up next to
//! the silo binary in the target dir (build them first).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{sibling, stderr, Cli, Daemon};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SILO: &str = env!("CARGO_BIN_EXE_silo");

fn silo_at(host: &str, args: &[&str]) -> Output {
    Cli::Silo(SILO.into())
        .command(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run silo")
}

#[test]
fn not_running_message_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("absent.sock");
    let host = format!("unix://{}", sock.display());
    let out = silo_at(&host, &["ps", "-a"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "Cannot connect to the silo daemon at {host}. Is silod running? Start it with: silod &  (or: systemctl start silod)"
        )
    );
    assert!(out.stdout.is_empty());
    // SILO_HOST is honoured the same way.
    let out = Command::new(SILO)
        .args(["images"])
        .env("SILO_HOST", &host)
        .output()
        .expect("run silo");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is silod running?"));
}

#[test]
fn bad_memory_string_fails_before_contacting_the_daemon() {
    // The socket does not exist: a flag error must win over the connection error.
    let out = silo_at(
        "unix:///nonexistent/silod.sock",
        &["run", "-m", "12x", "busybox", "true"],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"12x\"") && err.contains("--memory"), "{err}");
}

#[test]
fn completions_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef silo"),
        ("fish", "complete -c silo"),
    ] {
        let out = Command::new(SILO)
            .args(["completion", shell])
            .output()
            .expect("run silo");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            text.contains("hcs"),
            "{shell} completion lacks the hcs verb"
        );
    }
}

/// A daemon (silod next to the silo binary) driven with the silo CLI.
fn daemon() -> Daemon {
    let silod = sibling(Path::new(SILO), "silod");
    Daemon::start(&silod, Cli::Silo(SILO.into()))
}

#[test]
fn run_rm_echo_hello_then_ps_is_empty() {
    let d = daemon();
    d.import_busybox();
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let out = d.cli(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = d.cli(&["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error response from daemon: "));
    // A command that is not there: 127 as with docker, and --rm removes it.
    let out = d.cli(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchcommand"));
    let out = d.cli(&["run", "-d", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    let left = d.ok(&["ps", "-aq"]);
    assert_eq!(left.lines().count(), 1, "only the -d one stays: {left}");
}

#[test]
fn ps_logs_inspect() {
    let d = daemon();
    d.import_busybox();
    d.ok(&[
        "run",
        "--name",
        "one",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let ps = d.ok(&["ps", "-a"]);
    let mut lines = ps.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("CONTAINER ID   IMAGE"), "{header}");
    assert!(header.ends_with("NAMES"), "{header}");
    let row = lines.next().expect("row");
    assert!(
        row.contains("busybox") && row.contains("Exited (0)") && row.ends_with("one"),
        "{row}"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Image}}"]),
        "one busybox\n"
    );
    let out = d.cli(&["logs", "one"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Like docker: --tail counts lines of both streams; the last one is "err".
    let out = d.cli(&["logs", "--tail", "1", "one"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}} {{.Name}}",
            "one"
        ]),
        "0 /one\n"
    );
    let out = d.cli(&["inspect", "nothere"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn exec_into_running_container() {
    let d = daemon();
    d.import_busybox();
    let id = d.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "60"]);
    assert_eq!(id.trim().len(), 64, "{id:?}");
    assert_eq!(d.ok(&["exec", "sleeper", "echo", "inside"]), "inside\n");
    assert_eq!(
        d.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "sleeper",
            "sh",
            "-c",
            "echo $X $PWD"
        ]),
        "1 /tmp\n"
    );
    let out = d.cli(&["exec", "sleeper", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    d.ok(&["rm", "-f", "sleeper"]);
}

#[test]
fn hcs_list_shows_running_container() {
    let d = daemon();
    d.import_busybox();
    let id = d.ok(&["run", "-d", "-m", "64m", "busybox", "sleep", "60"]);
    let list = d.ok(&["hcs", "list"]);
    let mut lines = list.lines();
    assert!(lines.next().expect("header").starts_with("ID "), "{list}");
    let row = lines
        .find(|l| l.starts_with(&id.trim()[..12]))
        .expect("row for the container");
    assert!(
        row.contains("running") && row.contains("silod") && row.contains("64MiB"),
        "{row}"
    );
    let doc = d.ok(&["hcs", "inspect", id.trim()]);
    let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(v["Id"].as_str(), Some(id.trim()));
}

#[test]
fn health_and_init_flags_reach_the_daemon() {
    let d = daemon();
    d.import_busybox();
    d.ok(&[
        "create",
        "--name",
        "hc",
        "--health-cmd",
        "true",
        "--health-interval",
        "1m30s",
        "--health-timeout",
        "2s",
        "--health-start-period",
        "1.5s",
        "--health-start-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    let hc = d.ok(&["inspect", "--format", "{{json .Config.Healthcheck}}", "hc"]);
    let hc: serde_json::Value = serde_json::from_str(hc.trim()).expect("json");
    assert_eq!(
        hc,
        serde_json::json!({
            "Test": ["CMD-SHELL", "true"],
            "Interval": 90_000_000_000i64,
            "Timeout": 2_000_000_000i64,
            "StartPeriod": 1_500_000_000i64,
            "StartInterval": 200_000_000i64,
            "Retries": 2,
        })
    );
    d.ok(&[
        "create",
        "--name",
        "nohc",
        "--no-healthcheck",
        "busybox",
        "true",
    ]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            "nohc"
        ]),
        "[\"NONE\"]\n"
    );
    let out = d.cli(&[
        "create",
        "--no-healthcheck",
        "--health-timeout",
        "1s",
        "busybox",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--no-healthcheck conflicts with --health-* options"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --init: the static init is PID 1 and runs the command.
    let ps = d.ok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start() == "1 /sbin/docker-init -- ps -o pid,args"),
        "{ps}"
    );
}

#[test]
fn registry_archive_and_commit_verbs() {
    let reg = silo_testsupport::Registry::start_auth(Some(("u", "pw")));
    // The registry listens on the host's loopback: silod stays in the
    // host's namespace, and the containers here use --network none.
    let d = Daemon::start_with(
        &sibling(Path::new(SILO), "silod"),
        Cli::Silo(SILO.into()),
        &[],
    );
    d.import_busybox();
    let name = format!("{}/cli/bb:1", reg.host());
    d.ok(&["tag", "busybox:latest", &name]);
    // Push needs the login; login stores credentials where docker keeps them.
    let out = d.cli(&["push", &name]);
    assert!(!out.status.success(), "pushed without credentials");
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication required"));
    assert!(d
        .ok(&["login", "-u", "u", "-p", "pw", &reg.host()])
        .contains("Login Succeeded"));
    let cfg = std::fs::read_to_string(d.dir().join("docker-config/config.json")).unwrap();
    assert!(cfg.contains(&reg.host()), "{cfg}");
    let out = d.ok(&["push", &name]);
    assert!(out.contains("digest: sha256:"), "{out}");
    d.ok(&["rmi", &name]);
    let out = d.ok(&["pull", &name]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    d.ok(&["logout", &reg.host()]);
    assert!(
        !std::fs::read_to_string(d.dir().join("docker-config/config.json"))
            .unwrap()
            .contains(&reg.host())
    );

    // commit, history, save, load.
    d.ok(&[
        "run",
        "--name",
        "cm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; rm /bin/ls",
    ]);
    let id = d.ok(&[
        "commit",
        "-m",
        "a message",
        "-a",
        "me",
        "-c",
        "ENV X=1",
        "cm",
        "made:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let hist = d.ok(&["history", "made:1"]);
    assert!(
        hist.contains("a message") && hist.contains("Imported from tarball"),
        "{hist}"
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "made:1",
        "sh",
        "-c",
        "cat /made; echo $X; ls /bin/ls || echo gone",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["made", "1", "gone"],
        "{out}"
    );
    let archive = d.dir().join("made.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "made:1"]);
    d.ok(&["rm", "cm"]);
    d.ok(&["rmi", "made:1"]);
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: made:1");
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "made:1"])
            .trim(),
        id.trim()
    );
    // A truncated archive is refused and stores nothing.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = d.dir().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let before = d.ok(&["images", "-q"]);
    let out = d.cli(&["load", "-i", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loading"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.ok(&["images", "-q"]), before);
}

/// Loop devices backed by files under `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["-n", "-O", "NAME,BACK-FILE", "-l"])
        .output()
        .unwrap();
    let d = dir.to_string_lossy().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

#[test]
fn sandbox_disks_limit_writes_attach_and_export() {
    let d = Daemon::start(&sibling(Path::new(SILO), "silod"), Cli::Silo(SILO.into()));
    d.import_busybox();
    // A bad size is refused before anything is made.
    let out = d.cli(&["create", "--storage-opt", "size=lots", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("size"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(&["create", "--storage-opt", "size=1m", "busybox", "true"]);
    assert!(!out.status.success(), "a 1 MiB disk was accepted");
    assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
    // Writing past the disk's size fails inside the container only.
    let out = d.cli(&[
        "run",
        "--name",
        "sb",
        "--network",
        "none",
        "--storage-opt",
        "size=32m",
        "busybox",
        "sh",
        "-c",
        "echo kept > /kept; dd if=/dev/zero of=/big bs=1M count=64 2>&1; echo done",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("done"));
    // Attached read-only on the host; the container cannot start meanwhile.
    let at = d.dir().join("att");
    std::fs::create_dir(&at).unwrap();
    d.ok(&["sandbox", "attach", "sb", at.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(at.join("upper/kept")).unwrap(),
        "kept\n"
    );
    assert!(
        std::fs::write(at.join("x"), "x").is_err(),
        "attached read-write"
    );
    let out = d.cli(&["start", "sb"]);
    assert!(!out.status.success(), "started while attached");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("detach"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.ok(&["sandbox", "detach", at.to_str().unwrap()]);
    assert!(!Command::new("mountpoint")
        .arg("-q")
        .arg(&at)
        .status()
        .unwrap()
        .success());
    // Exported in the three formats; qemu-img reads each back.
    for (fmt, name) in [("raw", "raw"), ("vhdx", "vhdx"), ("qcow2", "qcow2")] {
        let file = d.dir().join(format!("sb.{fmt}"));
        d.ok(&[
            "sandbox",
            "export",
            "sb",
            file.to_str().unwrap(),
            "--format",
            fmt,
        ]);
        let info = Command::new("qemu-img")
            .arg("info")
            .arg(&file)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains(&format!("file format: {name}")), "{info}");
        assert!(info.contains("32 MiB"), "{info}");
    }
    // A container without a disk: its upper directory, bind-mounted read-only.
    d.ok(&[
        "run",
        "--name",
        "plain",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo p > /p",
    ]);
    d.ok(&["sandbox", "attach", "plain", at.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(at.join("p")).unwrap(), "p\n");
    d.ok(&["sandbox", "detach", at.to_str().unwrap()]);
    let raw = d.dir().join("plain.raw");
    d.ok(&["sandbox", "export", "plain", raw.to_str().unwrap()]);
    assert!(raw.metadata().unwrap().len() >= 16 << 20);
    // Removing the container frees its loop device and its disk file.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "--storage-opt",
        "size=32m",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(
        loops_under(&d.data_root()).len(),
        1,
        "the running container's disk"
    );
    d.ok(&["rm", "-f", "sb", "plain", "busy"]);
    assert!(
        loops_under(&d.data_root()).is_empty(),
        "{:?}",
        loops_under(&d.data_root())
    );
    let snaps: Vec<_> = std::fs::read_dir(d.data_root().join("storage/snapshots"))
        .unwrap()
        .collect();
    assert!(snaps.is_empty());
}

#[test]
fn a_daemon_option_gives_every_container_a_disk() {
    let d = Daemon::start_with(
        &sibling(Path::new(SILO), "silod"),
        Cli::Silo(SILO.into()),
        &["--sandbox-disks", "--storage-opt", "size=48m"],
    );
    d.import_busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "df -k / | tail -1",
    ]);
    let total: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((30_000..50_000).contains(&total), "{out}");
    // A container's own size wins.
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--storage-opt",
        "size=24m",
        "busybox",
        "sh",
        "-c",
        "df -k / | tail -1",
    ]);
    let total: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(total < 24_000, "{out}");
}

#[test]
fn sandbox_disks_survive_a_daemon_restart_and_are_freed_after() {
    let mut d = Daemon::start(&sibling(Path::new(SILO), "silod"), Cli::Silo(SILO.into()));
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--network",
        "none",
        "--storage-opt",
        "size=32m",
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run",
        "--name",
        "stopped",
        "--network",
        "none",
        "--storage-opt",
        "size=32m",
        "busybox",
        "sh",
        "-c",
        "echo s > /s",
    ]);
    d.kill9();
    d.spawn();
    d.ok(&["exec", "keep", "sh", "-c", "echo after > /after"]);
    assert_eq!(d.ok(&["exec", "keep", "cat", "/after"]).trim(), "after");
    assert_eq!(d.ok(&["start", "-a", "stopped"]).trim(), "");
    d.ok(&["rm", "-f", "keep", "stopped"]);
    assert!(
        loops_under(&d.data_root()).is_empty(),
        "{:?}",
        loops_under(&d.data_root())
    );
}

#[test]
fn network_verbs_and_the_hns_view() {
    let d = Daemon::start_in_netns(&sibling(Path::new(SILO), "silod"), Cli::Silo(SILO.into()));
    d.import_busybox();
    let id = d.ok(&["network", "create", "--subnet", "10.90.0.0/24", "hnsnet"]);
    assert_eq!(id.trim().len(), 64);
    assert!(d.ok(&["network", "ls"]).contains("hnsnet"));
    d.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "hnsnet",
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "--network",
        "hnsnet",
        "busybox",
        "ping",
        "-c",
        "2",
        "-W",
        "3",
        "10.90.0.2",
    ]);
    let nets: serde_json::Value = serde_json::from_str(&d.ok(&["hns", "network", "list"])).unwrap();
    let n = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == "hnsnet")
        .unwrap()
        .clone();
    assert_eq!(n["Type"], "NAT");
    assert_eq!(n["Subnets"][0]["AddressPrefix"], "10.90.0.0/24");
    assert_eq!(n["Subnets"][0]["GatewayAddress"], "10.90.0.1");
    assert_eq!(n["MacPools"][0]["StartMacAddress"], "02-42-0A-5A-00-01");
    assert_eq!(n["CurrentEndpointCount"], 1);
    assert_eq!(n["MaxConcurrentEndpoints"], 2);
    assert_eq!(n["TotalEndpoints"], 2);
    let eps: serde_json::Value = serde_json::from_str(&d.ok(&["hns", "endpoint", "list"])).unwrap();
    let ep = &eps[0];
    assert_eq!(ep["IPAddress"], "10.90.0.2");
    assert_eq!(ep["VirtualNetworkName"], "hnsnet");
    assert!(
        ep["Counters"]["PacketsReceived"].as_u64().unwrap() >= 2,
        "{ep}"
    );
    let one: serde_json::Value = serde_json::from_str(&d.ok(&[
        "hns",
        "endpoint",
        "inspect",
        &ep["ID"].as_str().unwrap()[..12],
    ]))
    .unwrap();
    assert_eq!(one["ID"], ep["ID"]);
    let nat: serde_json::Value =
        serde_json::from_str(&d.ok(&["hns", "network", "inspect", "nat"])).unwrap();
    assert_eq!(nat["Subnets"][0]["AddressPrefix"], "172.17.0.0/16");
    assert_eq!(d.ok(&["hns", "policy", "list"]).trim(), "[]");
    // Published ports: silo run -p, silo port, silo ps, the PortMapping policy.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "hnsnet",
        "--network-alias",
        "www",
        "--ip",
        "10.90.0.80",
        "-p",
        "127.0.0.1:18080:80",
        "-p",
        "18090-18091:90-91/udp",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let port = d.ok(&["port", "web"]);
    for want in [
        "80/tcp -> 127.0.0.1:18080",
        "90/udp -> 0.0.0.0:18090",
        "91/udp -> 0.0.0.0:18091",
    ] {
        assert!(port.contains(want), "{want} missing from {port}");
    }
    assert_eq!(d.ok(&["port", "web", "80"]).trim(), "127.0.0.1:18080");
    assert!(d.ok(&["ps"]).contains("127.0.0.1:18080->80/tcp"));
    let policies: serde_json::Value =
        serde_json::from_str(&d.ok(&["hns", "policy", "list"])).unwrap();
    let tcp = policies
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Settings"]["Protocol"] == 6)
        .unwrap();
    assert_eq!(tcp["Type"], "PortMapping");
    assert_eq!(tcp["Settings"]["ExternalPort"], 18080);
    assert_eq!(tcp["Settings"]["VIP"], "127.0.0.1");
    let got = d.in_netns(&["curl", "-sS", "-m", "5", "http://127.0.0.1:18080/hostname"]);
    assert!(got.status.success(), "{}", stderr(&got));
    // Names and aliases on the network, --dns and --add-host.
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "hnsnet",
        "--add-host",
        "gw:host-gateway",
        "busybox",
        "sh",
        "-c",
        "nslookup www; grep -w gw /etc/hosts",
    ]);
    assert!(out.contains("10.90.0.80"), "{out}");
    assert!(out.contains("172.17.0.1\tgw"), "{out}");
    let resolv = d.ok(&[
        "run",
        "--rm",
        "--network",
        "hnsnet",
        "--dns-search",
        "example.test",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("search example.test"), "{resolv}");
    // Connect and disconnect a running container.
    d.ok(&["run", "-d", "--name", "roamer", "busybox", "sleep", "300"]);
    d.ok(&["network", "connect", "--alias", "rm1", "hnsnet", "roamer"]);
    let addrs = d.ok(&["exec", "roamer", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.90.0."),
        "{addrs}"
    );
    d.ok(&["network", "disconnect", "hnsnet", "roamer"]);
    assert!(!d
        .ok(&["exec", "roamer", "ip", "-o", "link"])
        .contains("eth1"));
    // Endpoint policies through the CLI: an ACL cuts HTTP to web, a QOS
    // rate as tc writes it, refusals that name what was wrong.
    let eps: serde_json::Value = serde_json::from_str(&d.ok(&["hns", "endpoint", "list"])).unwrap();
    let web = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["IPAddress"] == "10.90.0.80")
        .and_then(|e| e["ID"].as_str())
        .unwrap()
        .to_string();
    let curl = || {
        d.in_netns(&[
            "curl",
            "-sS",
            "-m",
            "2",
            "-o",
            "/dev/null",
            "http://10.90.0.80/hostname",
        ])
        .status
        .success()
    };
    assert!(curl());
    let acl = d.ok(&[
        "hns",
        "policy",
        "add",
        &web,
        "--type",
        "acl",
        "--action",
        "block",
        "--direction",
        "in",
        "--protocol",
        "tcp",
        "--local-port",
        "80",
    ]);
    let acl = acl.trim().to_string();
    assert!(!curl());
    let qos = d.ok(&[
        "hns",
        "policy",
        "add",
        &web,
        "--type",
        "qos",
        "--max-bandwidth",
        "10mbit",
    ]);
    let listed = d.ok(&["hns", "policy", "list"]);
    assert!(
        listed.contains("\"MaximumOutgoingBandwidthInBytes\": 1250000"),
        "{listed}"
    );
    for (args, words) in [
        (
            vec!["--type", "qos", "--max-bandwidth", "fast"],
            "invalid rate",
        ),
        (
            vec!["--type", "acl", "--max-bandwidth", "1mbit"],
            "flags of a qos policy",
        ),
        (
            vec![
                "--type",
                "acl",
                "--action",
                "allow",
                "--direction",
                "out",
                "--remote-address",
                "10.0.0.0/99",
            ],
            "remote addresses",
        ),
    ] {
        let mut a = vec!["hns", "policy", "add", web.as_str()];
        a.extend(args);
        let out = d.cli(&a);
        assert!(!out.status.success(), "{a:?}");
        assert!(stderr(&out).contains(words), "{a:?}: {}", stderr(&out));
    }
    d.ok(&["hns", "policy", "remove", &web, &acl]);
    d.ok(&["hns", "policy", "remove", &web, qos.trim()]);
    assert!(curl());
    let out = d.cli(&["hns", "policy", "remove", &web, &acl]);
    assert!(
        !out.status.success() && stderr(&out).contains("no policy"),
        "{}",
        stderr(&out)
    );
    let out = d.cli(&[
        "hns",
        "endpoint",
        "add-remote",
        "hnsnet",
        "--ip",
        "10.90.0.200",
        "--provider-address",
        "192.0.2.1",
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("overlay"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "-f", "web", "roamer"]);
    assert_eq!(d.ok(&["hns", "policy", "list"]).trim(), "[]");
    d.ok(&["rm", "-f", "srv"]);
    d.ok(&["network", "rm", "hnsnet"]);
    assert!(!d.ok(&["network", "ls"]).contains("hnsnet"));
}

#[test]
fn silo_build_shows_steps_uses_the_cache_and_fails_clearly() {
    let d = Daemon::start_in_netns(&sibling(Path::new(SILO), "silod"), Cli::Silo(SILO.into()));
    d.import_busybox();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("msg.txt"), "built by silo\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nARG WHAT=plain\nCOPY msg.txt /msg.txt\nRUN echo \"$WHAT\" >> /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
    )
    .unwrap();
    let dir = ctx.path().to_str().unwrap();
    let out = d.ok(&["build", "-t", "sbuild:1", "--build-arg", "WHAT=fancy", dir]);
    assert!(out.contains("Step 4/5 : RUN echo"), "{out}");
    assert!(out.contains("Successfully tagged sbuild:1"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "sbuild:1"]), "built by silo\nfancy\n");
    let again = d.ok(&[
        "build",
        "-q",
        "-t",
        "sbuild:2",
        "--build-arg",
        "WHAT=fancy",
        dir,
    ]);
    assert!(again.trim().starts_with("sha256:"), "{again}");
    let verbose = d.ok(&["build", "--build-arg", "WHAT=fancy", dir]);
    assert_eq!(verbose.matches("Using cache").count(), 4, "{verbose}");
    // A Dockerfile outside the context, and a failing step.
    let other = tempfile::tempdir().unwrap();
    let df = other.path().join("Bad.dockerfile");
    std::fs::write(&df, "FROM busybox\nRUN exit 4\n").unwrap();
    let out = d.cli(&["build", "-f", df.to_str().unwrap(), dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("non-zero code: 4"),
        "{err}"
    );
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

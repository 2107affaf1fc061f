//! User-defined networks through the docker CLI, with silod in a network
//! namespace of its own (the host's network is never touched): create,
//! list, inspect, containers with addresses that reach each other on one
//! network and not across two, fixed addresses, /etc/hosts, and the bad
//! inputs, leaving no bridge, veth or nftables table behind.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use silo_testsupport::{stderr, stdout, Cli, Daemon};
use std::path::Path;

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

fn refused(d: &Daemon, args: &[&str], words: &str) {
    let out = d.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
}

#[test]
fn user_networks_connect_isolate_and_clean_up() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let id = d.ok(&["network", "create", "--subnet", "10.70.0.0/24", "front"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.71.0.0/24",
        "--label",
        "tier=back",
        "back",
    ]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "front bridge",
        "back bridge",
        "nat bridge",
        "host host",
        "none null",
    ] {
        assert!(ls.contains(want), "{want} missing from:\n{ls}");
    }
    let subnet = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "front",
    ]);
    assert_eq!(subnet.trim(), "10.70.0.0/24");
    let filtered = d.ok(&["network", "ls", "-q", "--filter", "label=tier=back"]);
    assert_eq!(filtered.lines().count(), 1, "{filtered}");

    // Bad input, each refused without a change.
    refused(&d, &["network", "create", "front"], "already exists");
    refused(
        &d,
        &["network", "create", "--subnet", "10.70.0.128/25", "over"],
        "overlaps",
    );
    refused(
        &d,
        &["network", "create", "--subnet", "10.72.0.0/33", "badcidr"],
        "invalid CIDR",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "--subnet",
            "10.73.0.0/24",
            "--gateway",
            "10.74.0.1",
            "gw",
        ],
        "10.74.0.1",
    );
    refused(
        &d,
        &["run", "--rm", "--network", "nosuch", "busybox", "true"],
        "nosuch",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "--ip",
            "10.99.0.5",
            "busybox",
            "true",
        ],
        "10.99.0.5",
    );
    let (head, body) = d.http_body(
        "POST",
        "/networks/create",
        r#"{"Name":"nov4","EnableIPv4":false}"#,
    );
    assert!(
        head.starts_with("HTTP/1.1 400") && body.contains("EnableIPv4"),
        "{head}\n{body}"
    );
    assert_eq!(d.ok(&["network", "ls", "-q"]).lines().count(), 5);
    // An exhausted range: a /30 has one address for containers.
    d.ok(&["network", "create", "--subnet", "10.87.0.0/30", "tiny"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "only",
        "--network",
        "tiny",
        "busybox",
        "sleep",
        "300",
    ]);
    refused(
        &d,
        &["run", "--rm", "--network", "tiny", "busybox", "true"],
        "no free address",
    );
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "tiny"])
            .trim(),
        "1"
    );
    d.ok(&["rm", "-f", "only"]);
    d.ok(&["network", "rm", "tiny"]);

    // Containers on front reach each other; one on back does not.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--network",
        "front",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip_a = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.front.IPAddress}}",
        "ca",
    ]);
    let ip_a = ip_a.trim();
    assert_eq!(ip_a, "10.70.0.2");
    let gw = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.front.Gateway}}",
        "ca",
    ]);
    assert_eq!(gw.trim(), "10.70.0.1");
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--ip",
        "10.70.0.50",
        "busybox",
        "sh",
        "-c",
        &format!("ping -c 1 -W 3 {ip_a} >/dev/null && ip -o -4 addr show eth0 && cat /etc/hosts"),
    ]);
    assert!(
        out.status.success(),
        "ping on one network failed: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("10.70.0.50/24"), "{text}");
    assert!(text.contains("10.70.0.50\t"), "hosts: {text}");
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        ip_a,
    ]);
    assert!(!out.status.success(), "a container on back reached front");
    // Legacy links: /etc/hosts names for the linked container's address.
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--link",
        "ca:db",
        "busybox",
        "sh",
        "-c",
        "ping -c 1 -W 3 db >/dev/null && grep -w db /etc/hosts",
    ]);
    assert!(out.status.success(), "link: {}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{ip_a}\tdb ca ")),
        "{}",
        stdout(&out)
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--link",
            "ca:db",
            "busybox",
            "true",
        ],
        "links need a network",
    );
    // ca is on front only: a container on the default network shares none with it.
    refused(
        &d,
        &["run", "--rm", "--link", "ca:db", "busybox", "true"],
        "not running on a network",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "--link",
            "nosuch:db",
            "busybox",
            "true",
        ],
        "nosuch",
    );
    d.ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "front",
        "busybox",
        "true",
    ]);
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "--link",
            "idle:x",
            "busybox",
            "true",
        ],
        "not running",
    );
    d.ok(&["rm", "idle"]);
    refused(&d, &["network", "rm", "front"], "active endpoints");
    let eps = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "front"]);
    assert_eq!(eps.trim(), "1");

    // Clean-up leaves nothing of the user networks in silod's namespace
    // (the default network's bridge and table stay, as docker0 does).
    let front_id = d.ok(&["network", "inspect", "-f", "{{.Id}}", "front"]);
    let back_id = d.ok(&["network", "inspect", "-f", "{{.Id}}", "back"]);
    d.ok(&["rm", "-f", "ca"]);
    d.ok(&["network", "rm", "front", "back"]);
    let links = stdout(&d.in_netns(&["ip", "-o", "link"]));
    for id in [&front_id, &back_id] {
        assert!(!links.contains(&format!("silo{}", &id[..11])), "{links}");
    }
    assert!(!links.contains(": sv"), "{links}");
    let tables = stdout(&d.in_netns(&["nft", "list", "tables"]));
    for id in [&front_id, &back_id] {
        assert!(!tables.contains(&format!("silo-{}", &id[..12])), "{tables}");
    }
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>().len(), 3, "{ls}");
}

#[test]
fn a_restart_keeps_running_containers_on_their_network_and_reconciles_strays() {
    let mut d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&["network", "create", "--subnet", "10.75.0.0/24", "keepnet"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--network",
        "keepnet",
        "-p",
        "8088:80",
        "busybox",
        "sleep",
        "300",
    ]);
    // Objects that belong to no endpoint or network.
    for args in [
        &[
            "ip", "link", "add", "svstray0", "type", "veth", "peer", "name", "svstray1",
        ][..],
        &["ip", "link", "add", "silostray", "type", "bridge"][..],
        &["nft", "add", "table", "inet", "silo-deadbeef0000"][..],
    ] {
        let out = d.in_netns(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    d.kill9();
    d.spawn();
    let ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.keepnet.IPAddress}}",
        "keep",
    ]);
    assert!(ip.trim().starts_with("10.75.0."), "{ip}");
    d.ok(&["exec", "keep", "ping", "-c", "1", "-W", "3", "10.75.0.1"]);
    // The published port is held and mapped again, and the embedded DNS
    // server answers again.
    let held = stdout(&d.in_netns(&["ss", "-Htln"]));
    assert!(held.contains(":8088 "), "{held}");
    let map = stdout(&d.in_netns(&["nft", "list", "map", "ip", "silo-ports", "any4"]));
    assert!(map.contains("tcp . 8088 : 10.75.0."), "{map}");
    let found = d.ok(&["exec", "keep", "nslookup", "keep"]);
    assert!(found.contains("10.75.0."), "{found}");
    let links = stdout(&d.in_netns(&["ip", "-o", "link"]));
    assert!(
        !links.contains("svstray") && !links.contains("silostray"),
        "{links}"
    );
    let tables = stdout(&d.in_netns(&["nft", "list", "tables"]));
    assert!(!tables.contains("deadbeef"), "{tables}");
    let eps = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "keepnet"]);
    assert_eq!(eps.trim(), "1");
    d.ok(&["rm", "-f", "keep"]);
    d.ok(&["network", "rm", "keepnet"]);
}

/// What silod's namespace and state hold that an endpoint could leak.
fn network_footprint(d: &Daemon) -> (String, String, String, usize) {
    let links = stdout(&d.in_netns(&["ip", "-o", "link", "show"]))
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .collect::<Vec<_>>()
        .join(",");
    // IPv4 only: link-local IPv6 addresses change state (tentative) on their own.
    let addrs = stdout(&d.in_netns(&["ip", "-o", "-4", "addr", "show"]));
    let rules = stdout(&d.in_netns(&["nft", "list", "ruleset"]));
    let netns = std::fs::read_dir(d.exec_root().join("netns"))
        .map(|r| r.count())
        .unwrap_or(0);
    (links, addrs, rules, netns)
}

#[test]
fn two_hundred_endpoints_come_and_go_without_a_trace() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&["network", "create", "--subnet", "10.76.0.0/24", "churn"]);
    // One endpoint first, so the bridge and table exist in both pictures.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "anchor",
        "--network",
        "churn",
        "busybox",
        "sleep",
        "600",
    ]);
    let before = network_footprint(&d);
    let leases_before = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "churn"]);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid().unwrap()))
            .unwrap()
            .count()
    };
    let fds_before = fds();
    for i in 0..200 {
        // Every other cycle also publishes a port (a DNAT element and a
        // held socket that must go with the container).
        let publish: &[&str] = if i % 2 == 0 { &["-p", "80"] } else { &[] };
        let mut args = vec!["run", "--rm", "--network", "churn"];
        args.extend_from_slice(publish);
        args.extend_from_slice(&["busybox", "true"]);
        let out = d.cli(&args);
        assert!(out.status.success(), "cycle {i}: {}", stderr(&out));
    }
    // A failing start (missing command) must not leak either.
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "churn",
        "busybox",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    // Detached veths go on a background thread: wait for it (10 s at most).
    let mut now = network_footprint(&d);
    for _ in 0..100 {
        if now == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = network_footprint(&d);
    }
    assert_eq!(now, before);
    // No descriptor (DNS socket, held port, netlink socket) stays behind;
    // a client connection may still be closing.
    let mut now = fds();
    for _ in 0..20 {
        if now <= fds_before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = fds();
    }
    assert!(
        now <= fds_before,
        "silod had {fds_before} descriptors, now {now}"
    );
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "churn"]),
        leases_before
    );
    let hns: serde_json::Value = serde_json::from_str(&d.http("GET", "/hns/networks").1).unwrap();
    let n = hns
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Name"] == "churn")
        .unwrap()
        .clone();
    assert_eq!(n["CurrentEndpointCount"], 1);
    assert!(n["TotalEndpoints"].as_u64().unwrap() >= 201, "{n}");
    d.ok(&["rm", "-f", "anchor"]);
    d.ok(&["network", "rm", "churn"]);
}

#[test]
fn the_default_network_gives_containers_addresses_that_reach_each_other() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&["run", "-d", "--name", "first", "busybox", "sleep", "300"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "first"]);
    let ip = ip.trim().to_string();
    assert!(ip.starts_with("172.17."), "{ip}");
    let by_name = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.nat.IPAddress}}",
        "first",
    ]);
    assert_eq!(by_name.trim(), ip);
    let gw = d.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "first"]);
    assert_eq!(gw.trim(), "172.17.0.1");
    // --network bridge is the same network.
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        "busybox",
        "sh",
        "-c",
        &format!("ping -c 1 -W 3 {ip} >/dev/null && ip -o -4 route show default"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("via 172.17.0.1"), "{}", stdout(&out));
    // Legacy links on the default network.
    let out = d.cli(&[
        "run",
        "--rm",
        "--link",
        "first:web",
        "busybox",
        "sh",
        "-c",
        "ping -c 1 -W 3 web >/dev/null && grep -w web /etc/hosts",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{ip}\tweb first ")),
        "{}",
        stdout(&out)
    );
    let members = d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "nat"]);
    assert_eq!(members.trim(), "1");
    // No warning any more about a loopback-only default network.
    let out = d.cli(&["run", "--rm", "busybox", "true"]);
    assert!(out.status.success());
    assert!(!stderr(&out).contains("WARNING"), "{}", stderr(&out));
    refused(&d, &["network", "rm", "nat"], "pre-defined");
    // A MAC address of one's own, given as docker's --mac-address does and
    // as API 1.43 clients do (top level); a taken one is refused.
    let mac = d.ok(&[
        "run",
        "--rm",
        "--mac-address",
        "02:42:0a:0b:0c:0d",
        "busybox",
        "cat",
        "/sys/class/net/eth0/address",
    ]);
    assert_eq!(mac.trim(), "02:42:0a:0b:0c:0d");
    let (head, body) = d.http_body(
        "POST",
        "/v1.43/containers/create?name=oldmac",
        r#"{"Image":"busybox","Cmd":["sleep","300"],"MacAddress":"02:42:0a:0b:0c:0e"}"#,
    );
    assert!(head.starts_with("HTTP/1.1 201"), "{head}\n{body}");
    d.ok(&["start", "oldmac"]);
    let mac = d.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "oldmac"]);
    assert_eq!(mac.trim(), "02:42:0a:0b:0c:0e");
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--mac-address",
            "02:42:0a:0b:0c:0e",
            "busybox",
            "true",
        ],
        "already used",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--mac-address",
            "03:00:00:00:00:01",
            "busybox",
            "true",
        ],
        "unicast",
    );
    refused(
        &d,
        &["run", "--rm", "--network-alias", "x", "busybox", "true"],
        "user-defined",
    );
    d.ok(&["rm", "-f", "first", "oldmac"]);
    no_endpoint_links_left(&d);
}

/// Waits (up to 10 s) for silod's namespace to hold no endpoint veth:
/// detached veths are deleted by a background thread, since a veth's
/// deletion waits for RCU grace periods no container exit should wait for.
fn no_endpoint_links_left(d: &Daemon) {
    let mut links = String::new();
    for _ in 0..100 {
        links = stdout(&d.in_netns(&["ip", "-o", "link"]));
        if !links.contains(": sv") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("endpoint veths left behind:\n{links}");
}

/// An "outside host": a namespace joined to silod's by a veth pair,
/// 10.201.0.2 outside and 10.201.0.1 on silod's side. Removed on drop.
struct Outside {
    name: String,
}

impl Outside {
    fn new(d: &Daemon) -> Outside {
        let name = format!("silo-out-{}", std::process::id());
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        };
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        run(&["ip", "netns", "add", &name]);
        let inside = |args: &[&str]| {
            let out = d.in_netns(args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        };
        inside(&[
            "ip", "link", "add", "vout", "type", "veth", "peer", "name", "vpeer", "netns", &name,
        ]);
        inside(&["ip", "addr", "add", "10.201.0.1/24", "dev", "vout"]);
        inside(&["ip", "link", "set", "vout", "up"]);
        run(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            "10.201.0.2/24",
            "dev",
            "vpeer",
        ]);
        run(&["ip", "-n", &name, "link", "set", "vpeer", "up"]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Outside { name }
    }

    fn curl(&self, url: &str) -> std::process::Output {
        std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-sS", "-m", "5", url])
            .output()
            .unwrap()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn published_ports_answer_from_outside_from_localhost_and_by_hairpin() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let outside = Outside::new(&d);
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:9090:80",
        "--expose",
        "81",
        "-P",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let short = &id.trim()[..12];
    let ports = d.ok(&["ps", "--format", "{{.Ports}}"]);
    for want in ["0.0.0.0:8080->80/tcp", "127.0.0.1:9090->80/tcp", "->81/tcp"] {
        assert!(ports.contains(want), "{want} missing from {ports}");
    }
    let port80 = d.ok(&["port", "web", "80"]);
    assert!(port80.contains("0.0.0.0:8080"), "{port80}");
    assert!(port80.contains("127.0.0.1:9090"), "{port80}");
    let mapped = d.ok(&[
        "inspect",
        "-f",
        "{{(index (index .NetworkSettings.Ports \"81/tcp\") 0).HostPort}}",
        "web",
    ]);
    assert!(mapped.trim().parse::<u16>().unwrap() > 0, "{mapped}");

    // From 127.0.0.1 and the bridge address on the host, with no proxy.
    for url in [
        "http://127.0.0.1:8080/hostname",
        "http://127.0.0.1:9090/hostname",
        "http://172.17.0.1:8080/hostname",
    ] {
        let out = d.in_netns(&["curl", "-sS", "-m", "5", url]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), short, "{url}");
    }
    // From another host, through the host's address on that segment; the
    // 127.0.0.1-only mapping is not reachable from there.
    let out = outside.curl("http://10.201.0.1:8080/hostname");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), short);
    assert!(!outside
        .curl("http://10.201.0.1:9090/hostname")
        .status
        .success());
    // From the container itself (hairpin) and from a neighbour, through
    // the host's address.
    let get = "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 172.17.0.1 8080";
    let hairpin = d.ok(&["exec", "web", "sh", "-c", get]);
    assert!(hairpin.trim_end().ends_with(short), "{hairpin}");
    let neighbour = d.ok(&["run", "--rm", "busybox", "sh", "-c", get]);
    assert!(neighbour.trim_end().ends_with(short), "{neighbour}");

    // A port silo has published, and one another program holds.
    refused(
        &d,
        &["run", "--rm", "-p", "8080:80", "busybox", "true"],
        "port is already allocated",
    );
    let mut holder = std::process::Command::new("nsenter")
        .arg(format!("--net={}", d.netns_file().display()))
        .args(["busybox", "nc", "-l", "-p", "8282"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    refused(
        &d,
        &["run", "--rm", "-p", "8282:80", "busybox", "true"],
        "already allocated",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    refused(
        &d,
        &[
            "run",
            "--rm",
            "-p",
            "80:80",
            "--network",
            "none",
            "busybox",
            "true",
        ],
        "port publishing",
    );
    refused(
        &d,
        &["run", "--rm", "-p", "abc:80", "busybox", "true"],
        "abc",
    );
    // The failed starts left no container running and no mapping.
    d.ok(&["rm", "-f", "web"]);
    let table = stdout(&d.in_netns(&["nft", "-j", "list", "table", "ip", "silo-ports"]));
    assert!(!table.contains("\"elem\""), "{table}");
    let held = stdout(&d.in_netns(&["ss", "-Htanu"]));
    assert!(!held.contains(":8080 "), "{held}");
    // The port is free again.
    d.ok(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
}

/// A DNS server for the tests: answers every question with 10.9.8.7 (a
/// Python script in silod's namespace on 127.0.0.1:53, independent of
/// silo's own DNS code). Killed on drop.
struct Upstream(std::process::Child);

impl Upstream {
    fn start(d: &Daemon) -> Upstream {
        let script = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    m, a = s.recvfrom(512)
    end = 12
    while m[end] != 0:
        end += m[end] + 1
    end += 5
    s.sendto(m[:2] + b"\x81\x80" + m[4:6] + b"\x00\x01\x00\x00\x00\x00" + m[12:end]
             + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([10, 9, 8, 7]), a)
"#;
        let mut child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", d.netns_file().display()))
            .args(["python3", "-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Upstream(child)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_embedded_dns_server_resolves_names_and_aliases_and_forwards_the_rest() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let _upstream = Upstream::start(&d);
    d.ok(&["network", "create", "--subnet", "10.76.0.0/24", "app"]);
    d.ok(&["network", "create", "--subnet", "10.77.0.0/24", "other"]);
    for name in ["db1", "db2"] {
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "app",
            "--network-alias",
            "store",
            "busybox",
            "sleep",
            "300",
        ]);
    }
    let ip = |n: &str| {
        d.ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.app.IPAddress}}",
            n,
        ])
        .trim()
        .to_string()
    };
    let (ip1, ip2) = (ip("db1"), ip("db2"));
    let short = d.ok(&["inspect", "-f", "{{.Id}}", "db2"])[..12].to_string();
    let script = format!(
        "cat /etc/resolv.conf; nslookup db1; nslookup {short}; nslookup store; nslookup STORE; nslookup outer.example"
    );
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns",
        "127.0.0.1",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "static:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        &format!("{script}; cat /etc/hosts"),
    ]);
    assert!(out.starts_with("nameserver 127.0.0.11\n"), "{out}");
    let resolv = d.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        resolv.starts_with("nameserver 127.0.0.11\nsearch corp.example\noptions ndots:2\n"),
        "{resolv}"
    );
    let answers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .collect();
    // db1; db2 by short id; store twice (both, in turns); outer by the upstream.
    assert_eq!(answers[0], ip1, "{out}");
    assert_eq!(answers[1], ip2, "{out}");
    let store_a = &answers[2..4];
    let store_b = &answers[4..6];
    for both in [store_a, store_b] {
        assert!(
            both.contains(&ip1.as_str()) && both.contains(&ip2.as_str()),
            "{out}"
        );
    }
    assert_ne!(store_a[0], store_b[0], "no round robin: {out}");
    assert_eq!(answers[6], "10.9.8.7", "{out}");
    assert!(out.contains("172.17.0.1\tgw\n"), "{out}");
    assert!(out.contains("10.1.2.3\tstatic\n"), "{out}");

    // Another network does not see app's names; the default network has no
    // embedded server (the host's resolvers, without loopback ones).
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "nslookup",
        "db1",
    ]);
    assert!(!stdout(&out).contains(&ip1), "{}", stdout(&out));
    let resolv = d.ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
    // Bad input.
    refused(
        &d,
        &["run", "--rm", "--dns", "not-an-ip", "busybox", "true"],
        "not-an-ip",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--add-host",
            "nohost:999.1.1.1",
            "busybox",
            "true",
        ],
        "999.1.1.1",
    );
    d.ok(&["rm", "-f", "db1", "db2"]);
}

#[test]
fn connect_and_disconnect_change_a_running_containers_interfaces() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&["network", "create", "--subnet", "10.78.0.0/24", "side"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "side",
        "busybox",
        "sleep",
        "300",
    ]);
    d.ok(&["run", "-d", "--name", "mover", "busybox", "sleep", "300"]);
    let before = d.ok(&["exec", "mover", "cat", "/etc/resolv.conf"]);
    assert!(!before.contains("127.0.0.11"), "{before}");
    d.ok(&[
        "network",
        "connect",
        "--alias",
        "mv",
        "--ip",
        "10.78.0.50",
        "side",
        "mover",
    ]);
    let addrs = d.ok(&["exec", "mover", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.78.0.50/24"),
        "{addrs}"
    );
    // The new network's names resolve from both sides at once.
    let found = d.ok(&["exec", "mover", "nslookup", "peer"]);
    assert!(found.contains("10.78.0.2"), "{found}");
    let found = d.ok(&["exec", "peer", "nslookup", "mv"]);
    assert!(found.contains("10.78.0.50"), "{found}");
    let names = d.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks.side.DNSNames}}",
        "mover",
    ]);
    assert!(
        names.contains("\"mover\"") && names.contains("\"mv\""),
        "{names}"
    );
    refused(
        &d,
        &["network", "connect", "side", "mover"],
        "already exists",
    );
    refused(&d, &["network", "connect", "nosuch", "mover"], "nosuch");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "alone",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    refused(&d, &["network", "connect", "side", "alone"], "none");

    d.ok(&["network", "disconnect", "side", "mover"]);
    let addrs = d.ok(&["exec", "mover", "ip", "-o", "-4", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    let after = d.ok(&["exec", "mover", "cat", "/etc/resolv.conf"]);
    assert!(!after.contains("127.0.0.11"), "{after}");
    refused(
        &d,
        &["network", "disconnect", "side", "mover"],
        "not connected",
    );
    // A stopped container's change shows at its next start.
    d.ok(&["stop", "-t", "0", "mover"]);
    d.ok(&["network", "connect", "side", "mover"]);
    d.ok(&["start", "mover"]);
    let addrs = d.ok(&["exec", "mover", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.78.0."),
        "{addrs}"
    );
    d.ok(&["rm", "-f", "mover", "peer", "alone"]);
    d.ok(&["network", "rm", "side"]);
    no_endpoint_links_left(&d);
}

#[test]
fn network_options_name_the_bridge_set_the_mtu_and_cut_traffic_between_containers() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.79.0.0/24",
        "-o",
        "com.docker.network.bridge.name=brquiet",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "quiet",
    ]);
    let opts = d.ok(&["network", "inspect", "-f", "{{json .Options}}", "quiet"]);
    assert!(
        opts.contains("\"com.docker.network.bridge.name\":\"brquiet\""),
        "{opts}"
    );
    let bridge = stdout(&d.in_netns(&["ip", "-o", "link", "show", "brquiet"]));
    assert!(bridge.contains("mtu 1400"), "{bridge}");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "q1",
        "--network",
        "quiet",
        "-p",
        "8181:80",
        "busybox",
        "sleep",
        "300",
    ]);
    let mtu = d.ok(&["exec", "q1", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1400");
    // The network's default host address for published ports.
    let port = d.ok(&["port", "q1", "80"]);
    assert_eq!(port.trim(), "127.0.0.1:8181");
    // No container-to-container traffic; the gateway still answers.
    let out = d.cli(&[
        "run",
        "--rm",
        "--network",
        "quiet",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.79.0.2",
    ]);
    assert!(!out.status.success(), "icc=false let a ping through");
    d.ok(&[
        "run",
        "--rm",
        "--network",
        "quiet",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.79.0.1",
    ]);
    let rules = stdout(&d.in_netns(&["nft", "list", "ruleset"]));
    assert!(
        !rules.contains("saddr 10.79.0.0/24 oifname != \"brquiet\" masquerade"),
        "{rules}"
    );
    // Options the driver does not know, or values it cannot take, are refused.
    refused(
        &d,
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.nosuch=1",
            "bad1",
        ],
        "nosuch",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.driver.mtu=9",
            "bad2",
        ],
        "MTU",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.name=brquiet",
            "bad3",
        ],
        "brquiet",
    );
    d.ok(&["rm", "-f", "q1"]);
    d.ok(&["network", "rm", "quiet"]);
    let rules = stdout(&d.in_netns(&["nft", "list", "ruleset"]));
    assert!(!rules.contains("brquiet"), "{rules}");
    assert!(stdout(&d.in_netns(&["ip", "-o", "link"]))
        .lines()
        .all(|l| !l.contains("brquiet")));
}

#[test]
fn ipv6_networks_are_dual_stack_with_addresses_routes_and_names() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.84.0.0/24",
        "--subnet",
        "fd00:84::/64",
        "v6net",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "six",
        "--network",
        "v6net",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip6 = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.v6net.GlobalIPv6Address}}",
        "six",
    ]);
    let ip6 = ip6.trim().to_string();
    assert!(ip6.starts_with("fd00:84::"), "{ip6}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "v6net",
        "--ip6",
        "fd00:84::99",
        "busybox",
        "sh",
        "-c",
        "ip -6 addr show eth0; ip -6 route; ping -6 -c 1 -W 3 six; nslookup -type=AAAA six",
    ]);
    assert!(out.contains("inet6 fd00:84::99/64"), "{out}");
    assert!(out.contains("default via fd00:84::1"), "{out}");
    assert!(out.contains(&format!("bytes from {ip6}")), "{out}");
    assert!(out.contains(&format!("Address: {ip6}")), "{out}");
    // The host reaches the container over IPv6 through the bridge.
    let out = d.in_netns(&["busybox", "ping", "-6", "-c", "1", "-W", "3", &ip6]);
    assert!(out.status.success(), "no IPv6 path from the host to {ip6}");
    // --ipv6 without a subnet gets a unique local /64.
    d.ok(&["network", "create", "--ipv6", "auto6"]);
    let cfg = d.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "auto6"]);
    assert!(cfg.contains("\"Subnet\":\"fd"), "{cfg}");
    // Bad input: a v6 subnet without --ipv6, an overlap, --ip6 outside or
    // on a network without IPv6.
    refused(
        &d,
        &["network", "create", "--subnet", "fd00:85::/64", "half"],
        "--ipv6",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:84::/48",
            "over6",
        ],
        "overlaps",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "v6net",
            "--ip6",
            "fd00:99::5",
            "busybox",
            "true",
        ],
        "fd00:99::5",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "auto6",
            "--ip",
            "10.84.0.9",
            "busybox",
            "true",
        ],
        "10.84.0.9",
    );
    d.ok(&["rm", "-f", "six"]);
    d.ok(&["network", "rm", "v6net", "auto6"]);
    no_endpoint_links_left(&d);
}

#[test]
fn a_transparent_network_puts_containers_on_the_parents_segment() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    // The parent: a veth whose other end is an "outside host" at 10.93.0.1.
    let outside = format!("silo-seg-{}", std::process::id());
    let sh = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &outside])
        .output();
    sh(&["ip", "netns", "add", &outside]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .output();
        }
    }
    let _gone = Gone(outside.clone());
    let inns = |args: &[&str]| {
        let out = d.in_netns(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    inns(&[
        "ip", "link", "add", "segpar", "type", "veth", "peer", "name", "segout", "netns", &outside,
    ]);
    sh(&[
        "ip",
        "-n",
        &outside,
        "addr",
        "add",
        "10.93.0.1/24",
        "dev",
        "segout",
    ]);
    sh(&["ip", "-n", &outside, "link", "set", "segout", "up"]);
    d.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=segpar",
        "--subnet",
        "10.93.0.0/24",
        "--gateway",
        "10.93.0.1",
        "seg",
    ]);
    let driver = d.ok(&["network", "inspect", "-f", "{{.Driver}}", "seg"]);
    assert_eq!(driver.trim(), "macvlan");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "onseg",
        "--network",
        "seg",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.seg.IPAddress}}",
        "onseg",
    ]);
    let ip = ip.trim().to_string();
    assert!(ip.starts_with("10.93.0."), "{ip}");
    // The outside host reaches the container on the segment, and back.
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &outside, "busybox", "ping", "-c", "1", "-W", "3", &ip,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "outside -> {ip}: {}", stdout(&out));
    d.ok(&["exec", "onseg", "ping", "-c", "1", "-W", "3", "10.93.0.1"]);
    let route = d.ok(&["exec", "onseg", "ip", "-o", "route", "show", "default"]);
    assert!(route.contains("via 10.93.0.1"), "{route}");
    let hns: serde_json::Value = serde_json::from_str(&d.http("GET", "/hns/networks").1).unwrap();
    assert!(hns
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["Name"] == "seg" && n["Type"] == "Transparent"));
    // Bad input: no parent, an unknown parent, a busy parent, ports.
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "10.94.0.0/24",
            "np",
        ],
        "parent",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=nosuch0",
            "--subnet",
            "10.94.0.0/24",
            "bad",
        ],
        "nosuch0",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=segpar",
            "--subnet",
            "10.95.0.0/24",
            "busy",
        ],
        "busy",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "seg",
            "-p",
            "80:80",
            "busybox",
            "true",
        ],
        "nat networks",
    );
    assert_eq!(
        d.ok(&["network", "ls", "-q", "--filter", "driver=macvlan"])
            .lines()
            .count(),
        1
    );
    d.ok(&["rm", "-f", "onseg"]);
    d.ok(&["network", "rm", "seg"]);
    // The parent is the host's: it stays.
    let links = stdout(&d.in_netns(&["ip", "-o", "link"]));
    assert!(links.contains("segpar"), "{links}");
}

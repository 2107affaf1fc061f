//! The HNS drivers beyond nat (l2bridge, l2tunnel, overlay across two
//! silods) and the endpoint policies (ACL, QOS, OutBoundNAT, Route), with
//! real kernel objects: every silod in a network namespace of its own,
//! "outside hosts" and the overlay's underlay as further namespaces, and
//! each driver's 200-cycle leak test.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::Value;
use silo_testsupport::{stderr, stdout, Cli, Daemon};
use std::path::Path;
use std::process::{Command, Output};

const SILOD: &str = env!("CARGO_BIN_EXE_silod");

/// A named network namespace ("an outside host"), removed on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("silo-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Ns(name);
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in {}: {}{}",
            self.0,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

impl Ns {
    /// A veth pair from silod's namespace (`here`) to this one (`there`,
    /// brought up), in a fresh daemon's test.
    fn wire(&self, d: &Daemon, here: &str, there: &str) {
        inns(
            d,
            &[
                "ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", &self.0,
            ],
        );
        self.ok(&["ip", "link", "set", there, "up"]);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs `args` in silod's namespace; it must succeed.
fn inns(d: &Daemon, args: &[&str]) -> String {
    let out = d.in_netns(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn refused(d: &Daemon, args: &[&str], words: &str) {
    let out = d.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
}

fn ip_of(d: &Daemon, c: &str, net: &str) -> String {
    d.ok(&[
        "inspect",
        "-f",
        &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
        c,
    ])
    .trim()
    .to_string()
}

fn sleeper(d: &Daemon, name: &str, net: &str) {
    d.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        net,
        "busybox",
        "sleep",
        "600",
    ]);
}

/// The HNS endpoint id of a container's endpoint.
fn endpoint_of(d: &Daemon, c: &str) -> String {
    let id = d.ok(&["inspect", "-f", "{{.Id}}", c]).trim().to_string();
    let eps: Value = serde_json::from_str(&d.http("GET", "/hns/endpoints").1).unwrap();
    eps.as_array()
        .unwrap()
        .iter()
        .find(|e| e["SharedContainers"][0] == id.as_str())
        .and_then(|e| e["ID"].as_str())
        .unwrap_or_else(|| panic!("no endpoint of {c}: {eps}"))
        .to_string()
}

/// A request to the HNS routes: (status code, body as JSON or text).
fn hns(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (head, text) = d.http_body(method, path, body);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, v)
}

fn add_policy(d: &Daemon, ep: &str, json: &str) -> String {
    let (code, v) = hns(d, "POST", &format!("/hns/endpoints/{ep}/policies"), json);
    assert_eq!(code, 201, "{json}: {v}");
    v["ID"].as_str().unwrap().to_string()
}

fn remove_policy(d: &Daemon, ep: &str, id: &str) {
    let (code, v) = hns(
        d,
        "DELETE",
        &format!("/hns/endpoints/{ep}/policies/{id}"),
        "",
    );
    assert_eq!(code, 204, "{v}");
}

/// Whether a container reaches `ip` with one ping.
fn pings(d: &Daemon, c: &str, ip: &str) -> bool {
    d.cli(&["exec", c, "ping", "-c", "1", "-W", "2", ip])
        .status
        .success()
}

/// What silod's namespace holds that an endpoint could leak.
fn footprint(d: &Daemon) -> String {
    let links: Vec<String> = stdout(&d.in_netns(&["ip", "-o", "link", "show"]))
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        links.join(","),
        stdout(&d.in_netns(&["ip", "-o", "-4", "addr", "show"])),
        stdout(&d.in_netns(&["ip", "-4", "route", "show"])),
        stdout(&d.in_netns(&["ip", "-4", "neigh", "show", "nud", "permanent"])),
        stdout(&d.in_netns(&["bridge", "fdb", "show"])),
        stdout(&d.in_netns(&["nft", "list", "ruleset"])),
    )
}

/// The address leases on record for network `net` (endpoints' and remote
/// endpoints'), from silod's state.
fn leases(d: &Daemon, net: &str) -> usize {
    let dir = d.data_root().join("network").join("networks");
    for e in std::fs::read_dir(&dir).unwrap() {
        let v: Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        if v["name"] == net {
            return v["pool"]["leases"].as_object().map_or(0, |m| m.len());
        }
    }
    panic!("no network {net} in {}", dir.display());
}

/// 200 containers come and go on `net` (an anchor container keeps the
/// network's shared objects); nothing is left behind.
fn churn(d: &Daemon, net: &str) {
    sleeper(d, "anchor", net);
    let before = footprint(d);
    let leases_before = leases(d, net);
    assert!(leases_before >= 1);
    for i in 0..200 {
        let out = d.cli(&["run", "--rm", "--network", net, "busybox", "true"]);
        assert!(out.status.success(), "{net} cycle {i}: {}", stderr(&out));
    }
    let out = d.cli(&["run", "--rm", "--network", net, "busybox", "/nonexistent"]);
    assert!(!out.status.success());
    let mut now = footprint(d);
    for _ in 0..100 {
        if now == before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = footprint(d);
    }
    assert_eq!(now, before, "{net} leaked");
    // Freed by the background reaper, like the links.
    let mut left = leases(d, net);
    for _ in 0..50 {
        if left == leases_before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = leases(d, net);
    }
    assert_eq!(left, leases_before, "{net} leaked leases");
    // Teardown reported no failure (a namespace already gone is none).
    let log = d.log();
    assert!(
        !log.contains("network service: removing endpoint"),
        "{net}: {log}"
    );
    d.ok(&["rm", "-f", "anchor"]);
}

#[test]
fn l2bridge_endpoints_share_the_parents_mac_on_its_segment() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let seg = Ns::new("l2seg");
    seg.wire(&d, "l2par", "l2out");
    seg.ok(&["ip", "addr", "add", "10.97.0.1/24", "dev", "l2out"]);
    // The host keeps its own address on the parent.
    inns(&d, &["ip", "addr", "add", "10.97.0.254/24", "dev", "l2par"]);
    inns(&d, &["ip", "link", "set", "l2par", "up"]);
    d.ok(&[
        "network",
        "create",
        "-d",
        "l2bridge",
        "-o",
        "parent=l2par",
        "--subnet",
        "10.97.0.0/24",
        "--gateway",
        "10.97.0.1",
        "l2",
    ]);
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{.Driver}}", "l2"])
            .trim(),
        "l2bridge"
    );
    sleeper(&d, "ca", "l2");
    sleeper(&d, "cb", "l2");
    let (ipa, ipb) = (ip_of(&d, "ca", "l2"), ip_of(&d, "cb", "l2"));
    // The outside host reaches the container, and knows it by the
    // parent's MAC, never the container's own.
    seg.ok(&["busybox", "ping", "-c", "1", "-W", "3", &ipa]);
    seg.ok(&["busybox", "ping", "-c", "1", "-W", "3", &ipb]);
    seg.ok(&["busybox", "ping", "-c", "1", "-W", "3", "10.97.0.254"]);
    let pmac = inns(&d, &["ip", "-o", "link", "show", "l2par"])
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .trim()
        .to_string();
    let amac = d
        .ok(&["exec", "ca", "cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_string();
    assert_ne!(pmac, amac);
    for ip in [&ipa, &ipb] {
        let neigh = seg.ok(&["ip", "neigh", "show", ip]);
        assert!(neigh.contains(&pmac), "{neigh} (parent {pmac})");
    }
    // From the container's own ARP too.
    seg.ok(&["ip", "neigh", "flush", "all"]);
    assert!(pings(&d, "ca", "10.97.0.1"));
    let neigh = seg.ok(&["ip", "neigh", "show", &ipa]);
    assert!(neigh.contains(&pmac), "{neigh} (parent {pmac})");
    // The container reaches the segment's router, and its neighbour on
    // this host at L2.
    assert!(pings(&d, "ca", "10.97.0.1"));
    assert!(pings(&d, "ca", &ipb));
    let hns_nets: Value = serde_json::from_str(&d.http("GET", "/hns/networks").1).unwrap();
    assert!(hns_nets
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["Name"] == "l2"
            && n["Type"] == "L2Bridge"
            && n["NetworkAdapterName"] == "l2par"));
    // -d ipvlan is the same driver here (the kernel has no ipvlan).
    inns(
        &d,
        &[
            "ip", "link", "add", "l2p2", "type", "veth", "peer", "name", "l2p2b",
        ],
    );
    d.ok(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        "parent=l2p2",
        "--subnet",
        "10.96.0.0/24",
        "iv",
    ]);
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{.Driver}}", "iv"])
            .trim(),
        "l2bridge"
    );
    d.ok(&["network", "rm", "iv"]);
    // Bad input: a parent in a bridge, a busy one, a missing one,
    // ipvlan's L3 mode.
    inns(&d, &["ip", "link", "add", "l2br", "type", "bridge"]);
    inns(&d, &["ip", "link", "set", "l2p2", "master", "l2br"]);
    let before = footprint(&d);
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "l2bridge",
            "-o",
            "parent=l2p2",
            "--subnet",
            "10.95.0.0/24",
            "x",
        ],
        "enslaved",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "l2bridge",
            "-o",
            "parent=l2par",
            "--subnet",
            "10.94.0.0/24",
            "y",
        ],
        "busy",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "l2bridge",
            "-o",
            "parent=nosuch0",
            "--subnet",
            "10.94.0.0/24",
            "z",
        ],
        "nosuch0",
    );
    refused(
        &d,
        &[
            "network",
            "create",
            "-d",
            "ipvlan",
            "-o",
            "parent=l2p2",
            "-o",
            "ipvlan_mode=l3",
            "--subnet",
            "10.94.0.0/24",
            "w",
        ],
        "only l2",
    );
    assert_eq!(footprint(&d), before);
    churn(&d, "l2");
    d.ok(&["rm", "-f", "ca", "cb"]);
    d.ok(&["network", "rm", "l2"]);
    // The parent is the host's: it stays, with its address.
    let par = inns(&d, &["ip", "-o", "-4", "addr", "show", "l2par"]);
    assert!(par.contains("10.97.0.254"), "{par}");
    let rules = inns(&d, &["nft", "list", "ruleset"]);
    assert!(!rules.contains("silo-l2"), "{rules}");
}

#[test]
fn l2tunnel_routes_every_packet_through_the_host() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    d.ok(&[
        "network",
        "create",
        "-d",
        "l2tunnel",
        "--subnet",
        "10.98.0.0/24",
        "tun",
    ]);
    sleeper(&d, "ca", "tun");
    sleeper(&d, "cb", "tun");
    let (ipa, ipb) = (ip_of(&d, "ca", "tun"), ip_of(&d, "cb", "tun"));
    let forwarded = || -> u64 {
        // /proc/net/snmp: the "Ip:" header line, then its values.
        let snmp = inns(&d, &["cat", "/proc/net/snmp"]);
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
        let i = names
            .split_whitespace()
            .position(|n| n == "ForwDatagrams")
            .unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    };
    let before = forwarded();
    d.ok(&["exec", "ca", "ping", "-c", "5", "-W", "2", &ipb]);
    let after = forwarded();
    // Five requests and five replies, each forwarded by the host.
    assert!(after - before >= 10, "forwarded {before} -> {after}");
    // No shared L2: a knows b by the host's MAC, not b's.
    let bmac = d
        .ok(&["exec", "cb", "cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_string();
    let neigh = d.ok(&["exec", "ca", "ip", "neigh", "show", &ipb]);
    assert!(!neigh.contains(&bmac), "{neigh}");
    // A /32 route per endpoint on the host.
    let routes = inns(&d, &["ip", "-4", "route", "show"]);
    assert!(routes.contains(&format!("{ipa} dev sv")), "{routes}");
    // The rest of the subnet is unreachable, and the network keeps to
    // itself: no way to a container on a nat network.
    assert!(routes.contains("unreachable 10.98.0.0/24"), "{routes}");
    d.ok(&["network", "create", "--subnet", "10.108.0.0/24", "other"]);
    sleeper(&d, "cn", "other");
    let ipn = ip_of(&d, "cn", "other");
    assert!(!pings(&d, "ca", &ipn));
    assert!(!pings(&d, "cn", &ipa));
    d.ok(&["rm", "-f", "cn"]);
    d.ok(&["network", "rm", "other"]);
    churn(&d, "tun");
    d.ok(&["rm", "-f", "ca", "cb"]);
    d.ok(&["network", "rm", "tun"]);
    let routes = inns(&d, &["ip", "-4", "route", "show"]);
    assert!(!routes.contains("10.98.0."), "{routes}");
}

/// Two silods (two "hosts") joined by a veth underlay, 192.168.210.1 and .2.
fn two_hosts() -> (Daemon, Daemon) {
    let h1 = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    let h2 = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    h1.import_busybox();
    h2.import_busybox();
    let pid2 = h2.pid().unwrap().to_string();
    inns(
        &h1,
        &[
            "ip", "link", "add", "under", "type", "veth", "peer", "name", "under", "netns", &pid2,
        ],
    );
    for (h, ip) in [(&h1, "192.168.210.1/24"), (&h2, "192.168.210.2/24")] {
        inns(h, &["ip", "addr", "add", ip, "dev", "under"]);
        inns(h, &["ip", "link", "set", "under", "up"]);
    }
    (h1, h2)
}

#[test]
fn overlay_networks_join_containers_on_two_hosts() {
    let (h1, h2) = two_hosts();
    for (h, local, range) in [
        (&h1, "192.168.210.1", "10.99.0.0/25"),
        (&h2, "192.168.210.2", "10.99.0.128/25"),
    ] {
        h.ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "-o",
            "vni=5001",
            "-o",
            &format!("local={local}"),
            "--subnet",
            "10.99.0.0/24",
            "--ip-range",
            range,
            "ov",
        ]);
    }
    sleeper(&h1, "c1", "ov");
    sleeper(&h2, "c2", "ov");
    let (ip1, ip2) = (ip_of(&h1, "c1", "ov"), ip_of(&h2, "c2", "ov"));
    // Each host is told of the other's endpoint.
    for (h, ip, vtep, name) in [
        (&h1, &ip2, "192.168.210.2", "c2"),
        (&h2, &ip1, "192.168.210.1", "c1"),
    ] {
        let body = format!(r#"{{"IPAddress":"{ip}","ProviderAddress":"{vtep}","Name":"{name}"}}"#);
        let (code, v) = hns(h, "POST", "/hns/networks/ov/remote-endpoints", &body);
        assert_eq!(code, 201, "{v}");
    }
    assert!(pings(&h1, "c1", &ip2));
    assert!(pings(&h2, "c2", &ip1));
    // Each host's gateway answers its own containers (the distributed
    // gateway's ARP stays on the host).
    assert!(pings(&h1, "c1", "10.99.0.1"));
    assert!(pings(&h2, "c2", "10.99.0.1"));
    // By name: the embedded DNS server knows the remote endpoint.
    h1.ok(&["exec", "c1", "ping", "-c", "1", "-W", "2", "c2"]);
    let view: Value = serde_json::from_str(&h1.http("GET", "/hns/networks/ov").1).unwrap();
    assert_eq!(view["Type"], "Overlay");
    assert_eq!(view["RemoteEndpoints"][0]["IPAddress"], ip2.as_str());
    assert_eq!(view["Policies"][0]["Settings"]["IsolationId"], 5001);
    // Bad remote endpoints: outside the subnet, an address in use, a
    // malformed body; nothing is added.
    for (body, words) in [
        (
            r#"{"IPAddress":"10.1.2.3","ProviderAddress":"192.168.210.2"}"#,
            "not in subnet",
        ),
        (
            &format!(r#"{{"IPAddress":"{ip1}","ProviderAddress":"192.168.210.2"}}"#) as &str,
            "in use",
        ),
        (
            r#"{"IPAddress":"10.99.0.200","ProviderAddress":"192.168.210.2","Colour":"red"}"#,
            "Colour",
        ),
        (
            r#"{"IPAddress":"10.99.0.201","ProviderAddress":"127.0.0.1"}"#,
            "provider address",
        ),
    ] {
        let (code, v) = hns(&h1, "POST", "/hns/networks/ov/remote-endpoints", body);
        assert_eq!(code, 400, "{body}: {v}");
        assert!(v.to_string().contains(words), "{body}: {v}");
    }
    let view: Value = serde_json::from_str(&h1.http("GET", "/hns/networks/ov").1).unwrap();
    assert_eq!(view["RemoteEndpoints"].as_array().unwrap().len(), 1);
    // A VNI in use, a VXLAN port another program holds: refused, nothing made.
    let before = footprint(&h1);
    refused(
        &h1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "-o",
            "vni=5001",
            "--subnet",
            "10.120.0.0/24",
            "dup",
        ],
        "in use",
    );
    let mut holder = Command::new("nsenter")
        .arg(format!("--net={}", h1.netns_file().display()))
        .args([
            "python3",
            "-c",
            "import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',4800));print('ready',flush=True);time.sleep(60)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    refused(
        &h1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "-o",
            "vni=5009",
            "-o",
            "vxlan_port=4800",
            "--subnet",
            "10.121.0.0/24",
            "held",
        ],
        "4800",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(footprint(&h1), before);
    // Forgetting the remote endpoint cuts the path.
    let (code, v) = hns(
        &h1,
        "DELETE",
        &format!("/hns/networks/ov/remote-endpoints/{ip2}"),
        "",
    );
    assert_eq!(code, 204, "{v}");
    assert!(!pings(&h1, "c1", &ip2));
    let (code, _) = hns(
        &h1,
        "DELETE",
        &format!("/hns/networks/ov/remote-endpoints/{ip2}"),
        "",
    );
    assert_eq!(code, 404);

    // Remote subnets: each host's own subnet on one VNI, routed through
    // the other host's bridge.
    for (h, subnet) in [(&h1, "10.110.1.0/24"), (&h2, "10.110.2.0/24")] {
        h.ok(&[
            "network", "create", "-d", "overlay", "-o", "vni=5002", "--subnet", subnet, "rs",
        ]);
    }
    sleeper(&h1, "r1", "rs");
    sleeper(&h2, "r2", "rs");
    let (r1, r2) = (ip_of(&h1, "r1", "rs"), ip_of(&h2, "r2", "rs"));
    let router = |h: &Daemon| -> String {
        let v: Value = serde_json::from_str(&h.http("GET", "/hns/networks/rs").1).unwrap();
        v["DistributedRouterMacAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (mac1, mac2) = (router(&h1), router(&h2));
    for (h, prefix, vtep, mac) in [
        (&h1, "10.110.2.0/24", "192.168.210.2", &mac2),
        (&h2, "10.110.1.0/24", "192.168.210.1", &mac1),
    ] {
        let body = format!(
            r#"{{"DestinationPrefix":"{prefix}","ProviderAddress":"{vtep}","DistributedRouterMacAddress":"{mac}"}}"#
        );
        let (code, v) = hns(h, "POST", "/hns/networks/rs/remote-subnets", &body);
        assert_eq!(code, 201, "{v}");
    }
    assert!(pings(&h1, "r1", &r2));
    assert!(pings(&h2, "r2", &r1));
    let view: Value = serde_json::from_str(&h1.http("GET", "/hns/networks/rs").1).unwrap();
    assert!(view["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["Type"] == "RemoteSubnetRoute"
            && p["Settings"]["DestinationPrefix"] == "10.110.2.0/24"));
    let (code, _) = hns(
        &h1,
        "DELETE",
        "/hns/networks/rs/remote-subnets/10.110.2.0%2F24",
        "",
    );
    assert_eq!(code, 204);
    assert!(!pings(&h1, "r1", &r2));
    // A restart keeps the remote objects: the path comes back with them.
    let body = format!(r#"{{"IPAddress":"{ip2}","ProviderAddress":"192.168.210.2"}}"#);
    assert_eq!(
        hns(&h1, "POST", "/hns/networks/ov/remote-endpoints", &body).0,
        201
    );
    // The restart re-makes the kernel side from the records: the
    // forwarding and neighbour entries are flushed before it.
    let vx = inns(&h1, &["ip", "-o", "link", "show", "type", "vxlan"]);
    let vx = vx.split(": ").nth(1).unwrap().to_string();
    inns(&h1, &["bridge", "fdb", "flush", "dev", &vx]);
    inns(&h1, &["ip", "neigh", "flush", "nud", "permanent"]);
    assert!(!pings(&h1, "c1", &ip2));
    let mut h1 = h1;
    h1.restart();
    assert!(pings(&h1, "c1", &ip2));
    churn(&h1, "ov");
    h1.ok(&["rm", "-f", "c1", "r1"]);
    h2.ok(&["rm", "-f", "c2", "r2"]);
    for h in [&h1, &h2] {
        h.ok(&["network", "rm", "ov", "rs"]);
        let links = inns(h, &["ip", "-o", "link"]);
        assert!(!links.contains(": sx"), "{links}");
    }
}

#[test]
fn endpoint_policies_are_added_and_removed_on_running_endpoints() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    // An outside host at 10.202.0.2, silod's side 10.202.0.1; it routes
    // the l2tunnel subnet back through silod's namespace.
    let out = Ns::new("pol");
    out.wire(&d, "pout", "ppeer");
    inns(&d, &["ip", "addr", "add", "10.202.0.1/24", "dev", "pout"]);
    inns(&d, &["ip", "link", "set", "pout", "up"]);
    out.ok(&["ip", "addr", "add", "10.202.0.2/24", "dev", "ppeer"]);
    out.ok(&["ip", "route", "add", "10.203.0.0/24", "via", "10.202.0.1"]);
    // It answers each connection with the address it came from.
    let mut echo = Command::new("ip")
        .args(["netns", "exec", &out.0, "python3", "-c"])
        .arg(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen(8)\nwhile True:\n c,a=s.accept()\n c.sendall(a[0].encode()+b'\\n')\n c.close()\n",
        )
        .spawn()
        .unwrap();
    d.ok(&[
        "network",
        "create",
        "-d",
        "l2tunnel",
        "--subnet",
        "10.203.0.0/24",
        "pt",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "pt",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    let ip = ip_of(&d, "web", "pt");
    let ep = endpoint_of(&d, "web");
    let seen = || -> String {
        for _ in 0..50 {
            let o = d.cli(&["exec", "web", "sh", "-c", "sleep 1 | nc 10.202.0.2 9000"]);
            if o.status.success() && !stdout(&o).trim().is_empty() {
                return stdout(&o).trim().to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the outside host never answered");
    };
    let http = || {
        out.run(&[
            "curl",
            "-sS",
            "-m",
            "3",
            "-o",
            "/dev/null",
            &format!("http://{ip}/"),
        ])
        .status
        .success()
    };
    assert_eq!(seen(), ip);
    assert!(http());

    // OutBoundNAT: masqueraded to silod's address, except toward an
    // exception prefix.
    let nat = add_policy(&d, &ep, r#"{"Type":"OutBoundNAT","Settings":{}}"#);
    assert_eq!(seen(), "10.202.0.1");
    remove_policy(&d, &ep, &nat);
    assert_eq!(seen(), ip);
    let nat = add_policy(
        &d,
        &ep,
        r#"{"Type":"OutBoundNAT","Settings":{"Exceptions":["10.202.0.0/24"]}}"#,
    );
    assert_eq!(seen(), ip);
    remove_policy(&d, &ep, &nat);

    // ACL: block inbound TCP 80 (the outside host's HTTP stops), then
    // outbound ICMP to the outside host; both undone by removal.
    let acl = add_policy(
        &d,
        &ep,
        r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"In","Protocols":"tcp","LocalPorts":"80","Priority":100}}"#,
    );
    assert!(!http());
    assert!(pings(&d, "web", "10.202.0.2"));
    let acl2 = add_policy(
        &d,
        &ep,
        r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"Out","Protocols":"icmp","RemoteAddresses":"10.202.0.0/24"}}"#,
    );
    assert!(!pings(&d, "web", "10.202.0.2"));
    // A higher-priority allow wins over the block.
    let allow = add_policy(
        &d,
        &ep,
        r#"{"Type":"ACL","Settings":{"Action":"Allow","Direction":"In","Protocols":"6","LocalPorts":"80","RemoteAddresses":"10.202.0.2","Priority":10}}"#,
    );
    assert!(http());
    for id in [&allow, &acl, &acl2] {
        remove_policy(&d, &ep, id);
    }
    assert!(http());
    assert!(pings(&d, "web", "10.202.0.2"));

    // QOS: a token bucket on the container's interface; traffic passes
    // through it (its counters move), and removal takes it away.
    let pid = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .trim()
        .to_string();
    let qdisc = || {
        sh(&[
            "nsenter",
            &format!("--net=/proc/{pid}/ns/net"),
            "tc",
            "-s",
            "qdisc",
            "show",
            "dev",
            "eth0",
        ])
    };
    let q = add_policy(
        &d,
        &ep,
        r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":250000}}"#,
    );
    let shown = qdisc();
    assert!(shown.contains("tbf") && shown.contains("2Mbit"), "{shown}");
    let sent = |s: &str| -> u64 {
        s.split_whitespace()
            .skip_while(|w| *w != "Sent")
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = sent(&shown);
    assert!(pings(&d, "web", "10.202.0.2"));
    assert!(sent(&qdisc()) > before);
    let (code, v) = hns(
        &d,
        "POST",
        &format!("/hns/endpoints/{ep}/policies"),
        r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":100}}"#,
    );
    assert_eq!(code, 409, "a second QOS: {v}");
    remove_policy(&d, &ep, &q);
    assert!(!qdisc().contains("tbf"));

    // Route: 10.202.0.0/24 through a next hop nobody answers for cuts the
    // outside host off; removal restores the default path.
    let r = add_policy(
        &d,
        &ep,
        r#"{"Type":"Route","Settings":{"DestinationPrefix":"10.202.0.0/24","NextHop":"10.203.0.250"}}"#,
    );
    let routes = d.ok(&["exec", "web", "ip", "route"]);
    assert!(
        routes.contains("10.202.0.0/24 via 10.203.0.250"),
        "{routes}"
    );
    assert!(!pings(&d, "web", "10.202.0.2"));
    let listed: Value = serde_json::from_str(&d.http("GET", "/hns/policies").1).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["Type"] == "Route" && p["ID"] == r.as_str()));
    remove_policy(&d, &ep, &r);
    assert!(pings(&d, "web", "10.202.0.2"));

    // Bad input: clear errors, nothing added.
    for (body, code, words) in [
        (
            r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"In","RemoteAddresses":"10.0.0.0/33"}}"#,
            400,
            "remote addresses",
        ),
        (
            r#"{"Type":"ACL","Settings":{"Action":"Block","Direction":"In","Protocols":"tcp","LocalPorts":"99999"}}"#,
            400,
            "local ports",
        ),
        (
            r#"{"Type":"QOS","Settings":{"MaximumOutgoingBandwidthInBytes":"fast"}}"#,
            400,
            "MaximumOutgoingBandwidthInBytes",
        ),
        (r#"{"Type":"Teleport","Settings":{}}"#, 400, "Teleport"),
    ] {
        let (c, v) = hns(&d, "POST", &format!("/hns/endpoints/{ep}/policies"), body);
        assert_eq!(c, code, "{body}: {v}");
        assert!(v.to_string().contains(words), "{body}: {v}");
    }
    let (c, v) = hns(
        &d,
        "DELETE",
        &format!("/hns/endpoints/{ep}/policies/nosuchpolicy"),
        "",
    );
    assert_eq!(c, 404, "{v}");
    assert!(v.to_string().contains("nosuchpolicy"), "{v}");
    let view: Value =
        serde_json::from_str(&d.http("GET", &format!("/hns/endpoints/{ep}")).1).unwrap();
    assert_eq!(view["Policies"].as_array().unwrap().len(), 0, "{view}");
    // A container that leaves with an OutBoundNAT takes its rule along.
    add_policy(&d, &ep, r#"{"Type":"OutBoundNAT","Settings":{}}"#);
    d.ok(&["rm", "-f", "web"]);
    let rules = inns(&d, &["nft", "list", "ruleset"]);
    assert!(!rules.contains(&ip), "{rules}");
    d.ok(&["network", "rm", "pt"]);
    let _ = echo.kill();
    let _ = echo.wait();
}

#[test]
fn transparent_endpoints_come_and_go_without_a_trace() {
    let d = Daemon::start_in_netns(Path::new(SILOD), Cli::Docker);
    d.import_busybox();
    let seg = Ns::new("trseg");
    seg.wire(&d, "trpar", "trout");
    d.ok(&[
        "network",
        "create",
        "-d",
        "transparent",
        "-o",
        "parent=trpar",
        "--subnet",
        "10.104.0.0/24",
        "tr",
    ]);
    churn(&d, "tr");
    d.ok(&["network", "rm", "tr"]);
}

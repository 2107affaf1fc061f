//! The network service end to end, inside a network namespace the test
//! makes (the "host"), with two more namespaces as containers: networks
//! created and persisted, endpoints with addresses and traffic, isolation
//! of nftables tables, and every bad input refused without a change.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use silo_network::{AttachSpec, CreateNetwork, JoinRequest, Service, ServiceError};

fn spec<'a>(owner: &'a str, ns: &'a std::path::Path, joins: &'a [JoinRequest]) -> AttachSpec<'a> {
    AttachSpec {
        owner,
        netns: ns,
        joins,
        ports: &[],
        names: &[],
        dns_servers: &[],
    }
}

/// A thread parked in a new network namespace; its ns file path.
fn namespace() -> (PathBuf, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let (rel_tx, rel_rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        // SAFETY: unshare with a namespace flag affects only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0);
        // SAFETY: gettid has no arguments.
        let tid = unsafe { libc::gettid() };
        let pid = std::process::id();
        tx.send(PathBuf::from(format!("/proc/{pid}/task/{tid}/ns/net")))
            .unwrap();
        let _ = rel_rx.recv();
    });
    (rx.recv().unwrap(), rel_tx, h)
}

fn in_ns<T: Send>(ns: &PathBuf, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(ns).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: setns on an open fd, for this thread only.
            let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
            assert_eq!(rc, 0);
            f()
        })
        .join()
        .unwrap()
    })
}

fn nft_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn networks_endpoints_traffic_persistence_and_bad_input() {
    let state = tempfile::tempdir().unwrap();
    let (host, host_rel, host_t) = namespace();
    let (a, a_rel, a_t) = namespace();
    let (b, b_rel, b_t) = namespace();
    let dir = state.path().to_path_buf();
    let (ip_a, ip_b, net_id) = in_ns(&host, || {
        let svc = Service::open(&dir).unwrap();
        // The default network is on record, without a bridge until used.
        assert_eq!(svc.get("bridge").unwrap().name, "nat");
        let n = svc
            .create(&CreateNetwork {
                name: "front".into(),
                subnet: Some("10.60.0.0/24".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n.pool.gateway, "10.60.0.1".parse::<IpAddr>().unwrap());
        assert!(
            nft_tables().contains(&format!("silo-{}", &n.id[..12])),
            "{}",
            nft_tables()
        );
        // Bad input: each refused, nothing made.
        let bad = [
            CreateNetwork {
                name: "front".into(),
                ..Default::default()
            },
            CreateNetwork {
                name: "other".into(),
                subnet: Some("10.60.0.128/25".parse().unwrap()),
                ..Default::default()
            },
            CreateNetwork {
                name: "bad name!".into(),
                ..Default::default()
            },
            CreateNetwork {
                name: "gw".into(),
                subnet: Some("10.61.0.0/24".parse().unwrap()),
                gateway: Some("10.62.0.1".parse().unwrap()),
                ..Default::default()
            },
            CreateNetwork {
                name: "drv".into(),
                driver: Some("overlay2".into()),
                ..Default::default()
            },
        ];
        for req in &bad {
            let e = svc.create(req).unwrap_err();
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(svc.list().len(), 2, "a bad create left a network");
        let join = |net: &str| JoinRequest {
            network: net.into(),
            aliases: vec!["web".into()],
            ip: None,
            ip6: None,
            mac: None,
        };
        let ea = svc.attach(&spec("ctr-a", &a, &[join("front")])).unwrap();
        let eb = svc.attach(&spec("ctr-b", &b, &[join("front")])).unwrap();
        let e = svc
            .attach(&spec("ctr-a", &a, &[join("front")]))
            .unwrap_err();
        assert!(matches!(e, ServiceError::AlreadyConnected { .. }), "{e}");
        let e = svc.remove("front").unwrap_err();
        assert!(matches!(e, ServiceError::InUse { .. }), "{e}");
        assert!(matches!(
            svc.remove("nat").unwrap_err(),
            ServiceError::Predefined(_)
        ));
        (ea[0].1.ip, eb[0].1.ip, n.id)
    });
    assert_eq!(ip_a, "10.60.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(ip_b, "10.60.0.3".parse::<IpAddr>().unwrap());

    // a → b on the network.
    let (ready_tx, ready_rx) = mpsc::channel();
    let recv = std::thread::spawn({
        let b = b.clone();
        move || {
            in_ns(&b, move || {
                let s = UdpSocket::bind((ip_b, 5353)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 8];
                let (n, from) = s.recv_from(&mut buf).unwrap();
                (buf[..n].to_vec(), from.ip())
            })
        }
    });
    ready_rx.recv().unwrap();
    in_ns(&a, || {
        UdpSocket::bind((ip_a, 0))
            .unwrap()
            .send_to(b"hi", (ip_b, 5353))
            .unwrap();
    });
    assert_eq!(recv.join().unwrap(), (b"hi".to_vec(), ip_a));

    // Persisted: a new service on the same state sees networks and leases.
    in_ns(&host, || {
        let svc = Service::open(&dir).unwrap();
        let n = svc.get("front").unwrap();
        assert_eq!(n.id, net_id);
        assert_eq!(n.endpoints.len(), 2);
        assert_eq!(n.pool.leases.len(), 2);
        assert_eq!(svc.endpoints_of("ctr-a")[0].1.ip, ip_a);
        // Reconcile after a restart: ctr-b no longer runs; a stray veth and
        // a stray table that belong to nothing go too.
        let st = Command::new("ip")
            .args([
                "link", "add", "svstray0", "type", "veth", "peer", "name", "svstray1",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("nft")
            .args(["add", "table", "inet", "silo-0badc0ffee00"])
            .status()
            .unwrap();
        assert!(st.success());
        let errors = svc.reconcile(&|owner| owner == "ctr-a");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(svc.endpoints_of("ctr-b").is_empty());
        assert_eq!(svc.get("front").unwrap().pool.leases.len(), 1);
        let links = silo_network::netlink::Netlink::open()
            .unwrap()
            .links()
            .unwrap();
        assert!(
            !links.iter().any(|l| l.name.starts_with("svstray")),
            "{links:?}"
        );
        assert!(!nft_tables().contains("0badc0ffee00"), "{}", nft_tables());
        assert!(nft_tables().contains(&format!("silo-{}", &net_id[..12])));
        svc.detach("ctr-a").unwrap();
        svc.detach("ctr-b").unwrap(); // idempotent: reconcile took it
        svc.settle();
        let n = svc.get("front").unwrap();
        assert!(n.endpoints.is_empty() && n.pool.leases.is_empty());
        assert_eq!((n.total_endpoints, n.max_concurrent_endpoints), (2, 2));
        assert!(svc.reconcile(&|_| false).is_empty());
        svc.remove("front").unwrap();
        // Only the host-wide port table stays (reconcile makes it).
        assert!(!nft_tables().contains("inet silo-"), "{}", nft_tables());
        let links = silo_network::netlink::Netlink::open()
            .unwrap()
            .links()
            .unwrap();
        assert_eq!(
            links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["lo"]
        );
    });
    for (rel, t) in [(host_rel, host_t), (a_rel, a_t), (b_rel, b_t)] {
        rel.send(()).unwrap();
        t.join().unwrap();
    }
}

//! The nat driver's bridge and endpoint transactions, in namespaces the
//! test makes: two endpoints talk through the bridge; a failing endpoint
//! leaves no veth; teardown is idempotent and leaves the namespaces clean.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use silo_network::ipam::{mac_for, Pool};
use silo_network::nat::{self, BridgeSpec, EndpointSpec};
use silo_network::netlink::Netlink;

/// A thread parked in a new network namespace until `release` is sent;
/// returns an fd of the namespace.
fn namespace() -> (OwnedFd, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let (rel_tx, rel_rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        // SAFETY: unshare with a namespace flag affects only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0);
        // SAFETY: gettid has no arguments.
        let tid = unsafe { libc::gettid() };
        let fd: OwnedFd = std::fs::File::open(format!("/proc/self/task/{tid}/ns/net"))
            .unwrap()
            .into();
        tx.send(fd).unwrap();
        let _ = rel_rx.recv();
    });
    (rx.recv().unwrap(), rel_tx, h)
}

fn names_in(ns: &OwnedFd) -> Vec<String> {
    let mut v = nat::in_netns(ns.as_fd(), |nl| nl.links())
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect::<Vec<_>>();
    v.sort();
    v
}

#[test]
fn endpoints_on_a_bridge_talk_and_leave_nothing() {
    let (host_ns, host_rel, host_t) = namespace();
    let (a_ns, a_rel, a_t) = namespace();
    let (b_ns, b_rel, b_t) = namespace();
    let mut pool = Pool::new("10.77.0.0/24".parse().unwrap(), None, None).unwrap();
    let bridge = BridgeSpec {
        network: "test".into(),
        bridge: "silo-nat0".into(),
        gateways: vec![(pool.gateway, 24)],
        mtu: None,
    };
    let ep = |id: &str, host: &str, ip: IpAddr| EndpointSpec {
        id: id.into(),
        host_ifname: host.into(),
        ifname: "eth0".into(),
        mac: match ip {
            IpAddr::V4(v4) => mac_for(v4),
            IpAddr::V6(_) => unreachable!(),
        },
        addresses: vec![(ip, 24)],
        default_gateway: Some("10.77.0.1".parse().unwrap()),
        default_gateway6: None,
        mtu: None,
        isolated: false,
    };
    let ip_a = pool.allocate("a", None).unwrap();
    let ip_b = pool.allocate("b", None).unwrap();
    let (ea, eb) = (ep("a", "svtesta", ip_a), ep("b", "svtestb", ip_b));
    let (a_fd, b_fd) = (a_ns.as_raw_fd(), b_ns.as_raw_fd());
    nat::in_netns(host_ns.as_fd(), |nl: &mut Netlink| {
        let br = nat::setup_bridge(nl, &bridge).unwrap();
        // Idempotent.
        assert_eq!(nat::setup_bridge(nl, &bridge).unwrap(), br);
        // SAFETY: the namespace fds stay open for the whole test.
        let (a, b) = unsafe {
            (
                std::os::fd::BorrowedFd::borrow_raw(a_fd),
                std::os::fd::BorrowedFd::borrow_raw(b_fd),
            )
        };
        nat::setup_endpoint(nl, br, &ea, a).unwrap();
        nat::setup_endpoint(nl, br, &eb, b).unwrap();
        // A second endpoint named eth0 in the same namespace fails, and
        // leaves no veth behind.
        let mut again = ep("a2", "svtesta2", "10.77.0.9".parse().unwrap());
        again.default_gateway = None;
        let e = nat::setup_endpoint(nl, br, &again, a).unwrap_err();
        assert!(e.to_string().contains("a2"), "{e}");
        assert!(
            nl.link("svtesta2")?.is_none(),
            "the failed endpoint's veth stayed"
        );
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(names_in(&a_ns), ["eth0", "lo"]);

    // Traffic from a to b through the bridge.
    let (bound_tx, bound_rx) = mpsc::channel();
    let receiver = std::thread::spawn({
        let b = b_ns.try_clone().unwrap();
        move || {
            nat::in_netns(b.as_fd(), move |_| {
                let s = UdpSocket::bind((ip_b, 7777)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                bound_tx.send(()).unwrap();
                let mut buf = [0u8; 8];
                let (n, from) = s.recv_from(&mut buf).unwrap();
                assert_eq!(from.ip(), ip_a);
                Ok(buf[..n].to_vec())
            })
            .unwrap()
            .unwrap()
        }
    });
    bound_rx.recv().unwrap();
    nat::in_netns(a_ns.as_fd(), |_| {
        let s = UdpSocket::bind((ip_a, 0)).unwrap();
        s.send_to(b"ping", (ip_b, 7777)).unwrap();
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(receiver.join().unwrap(), b"ping");

    // Teardown: twice (idempotent), then the bridge.
    nat::in_netns(host_ns.as_fd(), |nl| {
        for _ in 0..2 {
            nat::teardown_endpoint(nl, "a", "svtesta").unwrap();
            nat::teardown_endpoint(nl, "b", "svtestb").unwrap();
        }
        nat::teardown_bridge(nl, &bridge).unwrap();
        nat::teardown_bridge(nl, &bridge).unwrap();
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(names_in(&host_ns), ["lo"]);
    assert_eq!(names_in(&a_ns), ["lo"]);
    assert_eq!(names_in(&b_ns), ["lo"]);
    assert_eq!(pool.release("a"), [ip_a]);
    for (rel, t) in [(host_rel, host_t), (a_rel, a_t), (b_rel, b_t)] {
        rel.send(()).unwrap();
        t.join().unwrap();
    }
}

#[test]
fn bad_names_are_refused_before_anything_is_made() {
    let (host_ns, rel, t) = namespace();
    nat::in_netns(host_ns.as_fd(), |nl| {
        let bad = BridgeSpec {
            network: "x".into(),
            bridge: "a-name-much-too-long".into(),
            gateways: vec![],
            mtu: None,
        };
        let e = nat::setup_bridge(nl, &bad).unwrap_err();
        assert!(e.to_string().contains("a-name-much-too-long"), "{e}");
        assert_eq!(nl.links()?.len(), 1, "something was created");
        Ok(())
    })
    .unwrap()
    .unwrap();
    rel.send(()).unwrap();
    t.join().unwrap();
}

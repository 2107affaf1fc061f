//! The rtnetlink client against the real kernel, in network namespaces made
//! by the test (a thread's `unshare(CLONE_NEWNET)`), never the host's: a
//! bridge, a veth pair across two namespaces, addresses, a default route,
//! a UDP datagram through them, and deletion that leaves nothing.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use silo_network::netlink::Netlink;

/// Moves the calling thread into a new network namespace (loopback up) and
/// returns an fd of it.
fn new_netns() -> OwnedFd {
    // SAFETY: unshare with a namespace flag affects only this thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET)");
    let mut nl = Netlink::open().unwrap();
    let lo = nl.link("lo").unwrap().unwrap();
    nl.set_up(lo.index).unwrap();
    // SAFETY: gettid has no arguments.
    let tid = unsafe { libc::gettid() };
    std::fs::File::open(format!("/proc/self/task/{tid}/ns/net"))
        .unwrap()
        .into()
}

#[test]
fn bridge_veth_addresses_route_and_traffic_in_private_namespaces() {
    // The "container": its own namespace, on its own thread.
    let (ns_tx, ns_rx) = mpsc::channel::<OwnedFd>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (bound_tx, bound_rx) = mpsc::channel::<()>();
    let container = std::thread::spawn(move || {
        let fd = new_netns();
        ns_tx.send(fd.try_clone().unwrap()).unwrap();
        go_rx.recv().unwrap(); // the veth peer has arrived
        let mut nl = Netlink::open().unwrap();
        let eth = nl.link("eth0").unwrap().expect("eth0 moved in");
        nl.set_mac(eth.index, [2, 0x42, 10, 5, 0, 2]).unwrap();
        nl.add_address(eth.index, "10.5.0.2".parse().unwrap(), 24)
            .unwrap();
        nl.set_up(eth.index).unwrap();
        nl.add_default_route("10.5.0.1".parse().unwrap()).unwrap();
        let again = nl.add_address(eth.index, "10.5.0.2".parse().unwrap(), 24);
        assert_eq!(again.unwrap_err().errno(), Some(libc::EEXIST));
        // IPv4 only: the kernel adds an IPv6 link-local address on its own.
        let v4: Vec<_> = nl
            .addresses(eth.index)
            .unwrap()
            .into_iter()
            .filter(|(a, _)| a.is_ipv4())
            .collect();
        assert_eq!(v4, [("10.5.0.2".parse::<IpAddr>().unwrap(), 24)]);
        assert_eq!(
            nl.link("eth0").unwrap().unwrap().mac,
            [2, 0x42, 10, 5, 0, 2]
        );
        let sock = UdpSocket::bind("10.5.0.2:9999").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        bound_tx.send(()).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip(), "10.5.0.1".parse::<IpAddr>().unwrap());
        drop(sock);
        fd
    });

    // The "host": another private namespace, on this test's own thread.
    let host = std::thread::spawn(move || {
        let _host_ns = new_netns();
        let peer_ns = ns_rx.recv().unwrap();
        let mut nl = Netlink::open().unwrap();
        let br = nl.add_bridge("silo-test0").unwrap();
        assert_eq!(
            nl.add_bridge("silo-test0").unwrap_err().errno(),
            Some(libc::EEXIST)
        );
        nl.add_address(br, "10.5.0.1".parse().unwrap(), 24).unwrap();
        nl.set_up(br).unwrap();
        let vh = nl.add_veth("vtest0", "eth0", peer_ns.as_fd()).unwrap();
        nl.set_master(vh, br).unwrap();
        nl.set_up(vh).unwrap();
        let l = nl.link("vtest0").unwrap().unwrap();
        assert_eq!(l.master, Some(br));
        assert!(
            nl.link("eth0").unwrap().is_none(),
            "the peer stayed on the host side"
        );
        go_tx.send(()).unwrap();
        bound_rx.recv().unwrap();
        let s = UdpSocket::bind("10.5.0.1:0").unwrap();
        // The bridge's port needs a moment to forward (no STP: it does at once).
        s.send_to(b"hello", "10.5.0.2:9999").unwrap();
        let fd = container.join().unwrap();
        // Deleting the host side takes the peer with it.
        nl.del_link(vh).unwrap();
        assert!(nl.link("vtest0").unwrap().is_none());
        nl.del_link(br).unwrap();
        assert!(nl.link("silo-test0").unwrap().is_none());
        fd
    });
    let container_ns = host.join().unwrap();
    // The container's namespace has only loopback left.
    let names = std::thread::spawn(move || {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&container_ns);
        // SAFETY: setns on an fd we own, for this thread only.
        let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        assert_eq!(rc, 0);
        Netlink::open()
            .unwrap()
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(names, ["lo"]);
}

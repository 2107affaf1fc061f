//! The embedded DNS server of user-defined networks, at 127.0.0.11:53 in
//! each container on one (as Docker's): container names, short ids and
//! network aliases of the networks the asking container is on resolve to
//! their addresses (several containers sharing an alias are answered in
//! turn, round robin); every other query is forwarded unchanged to the
//! container's upstream servers (`--dns`, else the host's resolv.conf).
//!
//! Each container's socket is opened inside its network namespace and then
//! served, with all the others, by one thread of silod (poll), so a
//! container costs one descriptor, no thread and no process. Forwarding
//! happens from silod's namespace, so resolvers on the host's loopback
//! (systemd-resolved, dnsmasq) work too. Only the question section is
//! parsed: answers are built for A (and an empty answer for AAAA) of known
//! names; anything else travels byte for byte. UDP only: the answers are
//! small, and a truncated upstream answer is relayed with its TC bit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's address inside each container.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// TTL of local answers (Docker's).
const TTL: u32 = 600;
/// How long a forwarded query waits for each upstream server.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Forwarded queries in flight at most; more are dropped (the client
/// retries), so a flood cannot make silod spawn without bound.
const MAX_FORWARDS: usize = 64;
/// Forwarded queries in flight at most for one container, so one cannot
/// take every slot (a `--dns` that never answers holds one for seconds).
const MAX_FORWARDS_PER_CLIENT: usize = 8;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A query that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS message too short")]
    Short,
    #[error("not a standard query with one question")]
    NotQuery,
    #[error("malformed name in the question")]
    Name,
}

/// The question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends in the message.
    pub end: usize,
}

/// Parses the header and the (single) question of a query.
pub fn parse_query(msg: &[u8]) -> Result<Question, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::Short);
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return Err(DnsError::NotQuery);
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Name)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression has no place in a question's first name.
        if len > 63 {
            return Err(DnsError::Name);
        }
        let label = msg.get(pos..pos + len).ok_or(DnsError::Name)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
        if pos > 12 + 255 {
            return Err(DnsError::Name);
        }
    }
    let tail = msg.get(pos..pos + 4).ok_or(DnsError::Short)?;
    Ok(Question {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        name: labels.join("."),
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end: pos + 4,
    })
}

/// An authoritative answer to `query` with `addrs` as A (IPv4) and AAAA
/// (IPv6) records; none: an empty NOERROR answer (a known name without an
/// address of the asked family).
pub fn answer(query: &[u8], q: &Question, addrs: &[IpAddr]) -> Vec<u8> {
    let rd = query[2] & 0x01;
    let mut out = Vec::with_capacity(q.end + addrs.len() * 16);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, AA, RD as asked; RA; rcode 0.
    out.push(0x84 | rd);
    out.push(0x80);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.end]);
    for a in addrs {
        let (ty, data) = match a {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        // The name is a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// A SERVFAIL for a query that could not be forwarded.
fn servfail(query: &[u8], q: &Question) -> Vec<u8> {
    let mut out = answer(query, q, &[]);
    out[2] &= !0x04; // not authoritative
    out[3] = 0x82;
    out
}

/// What the server asks of the network service.
pub trait Names: Send + Sync {
    /// The addresses `name` has for `owner` (None: not a local name).
    fn lookup(&self, owner: &str, name: &str) -> Option<Vec<IpAddr>>;
}

struct Client {
    owner: String,
    sock: Arc<UdpSocket>,
    upstreams: Vec<IpAddr>,
}

/// The server: one thread for every container's socket.
pub struct Server {
    clients: Mutex<HashMap<String, Client>>,
    wake: Mutex<Option<OwnedFd>>,
    forwards: AtomicUsize,
    /// Forwards in flight by owner.
    per_client: Mutex<HashMap<String, usize>>,
    turn: AtomicUsize,
    names: Box<dyn Names>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dns::Server")
            .field(
                "clients",
                &self.clients.lock().map(|c| c.len()).unwrap_or(0),
            )
            .finish()
    }
}

/// Opens a UDP socket at 127.0.0.11:53 inside the namespace `ns`, on a
/// thread of its own (setns moves only the calling thread).
pub fn bind_in(ns: BorrowedFd<'_>) -> std::io::Result<UdpSocket> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on an fd the caller keeps open for the call; it
            // moves only this short-lived thread.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let addr = SocketAddr::new(IpAddr::V4(ADDRESS), 53);
            let sock = match UdpSocket::bind(addr) {
                // Loopback is down in this namespace: bring it up, once.
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    let mut nl = crate::netlink::Netlink::open().map_err(std::io::Error::other)?;
                    let lo = nl.link("lo").map_err(std::io::Error::other)?.ok_or(e)?;
                    nl.set_up(lo.index).map_err(std::io::Error::other)?;
                    UdpSocket::bind(addr)?
                }
                other => other?,
            };
            sock.set_nonblocking(true)?;
            Ok(sock)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

/// The host's resolvers, from resolv.conf.
fn host_resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next().and_then(|a| a.parse().ok()))
                .flatten()
        })
        .collect()
}

impl Server {
    /// A server that looks names up in `names`; its thread starts with
    /// the first container.
    pub fn new(names: Box<dyn Names>) -> Arc<Server> {
        Arc::new(Server {
            clients: Mutex::new(HashMap::new()),
            wake: Mutex::new(None),
            forwards: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            names,
        })
    }

    /// Serves `sock` for `owner` (replacing an earlier one), forwarding
    /// unknown names to `upstreams` (empty: the host's resolvers).
    pub fn add(self: &Arc<Self>, owner: &str, sock: UdpSocket, upstreams: Vec<IpAddr>) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                owner.to_string(),
                Client {
                    owner: owner.to_string(),
                    sock: Arc::new(sock),
                    upstreams,
                },
            );
        self.poke();
    }

    /// Stops serving `owner` (its socket closes).
    pub fn remove(self: &Arc<Self>, owner: &str) {
        let gone = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(owner);
        if gone.is_some() {
            self.poke();
        }
    }

    /// Whether `owner` is served.
    pub fn serves(&self, owner: &str) -> bool {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(owner)
    }

    /// Wakes the thread (starting it the first time) to see the new set.
    fn poke(self: &Arc<Self>) {
        let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        if wake.is_none() {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills the two-element array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
                warn(&format!(
                    "embedded DNS: no wake pipe: {}",
                    std::io::Error::last_os_error()
                ));
                return;
            }
            // SAFETY: both descriptors are fresh and owned here.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            *wake = Some(w);
            let me = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("silo-dns".into())
                .spawn(move || serve(me, r));
            if let Err(e) = spawned {
                warn(&format!("embedded DNS: no thread: {e}"));
            }
        }
        if let Some(w) = wake.as_ref() {
            // SAFETY: a one-byte write to our own pipe; a full pipe already
            // wakes the thread.
            unsafe { libc::write(w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
    }

    fn resolve(&self, owner: &str, q: &Question) -> Option<Vec<IpAddr>> {
        if q.qclass != CLASS_IN || !matches!(q.qtype, TYPE_A | TYPE_AAAA) {
            return None;
        }
        let mut addrs = self.names.lookup(owner, &q.name)?;
        addrs.retain(|a| a.is_ipv4() == (q.qtype == TYPE_A));
        if addrs.len() > 1 {
            let n = self.turn.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(n);
        }
        Some(addrs)
    }

    /// Handles one datagram from a container.
    fn handle(self: &Arc<Self>, c: &Client, msg: &[u8], from: SocketAddr) {
        let Ok(q) = parse_query(msg) else {
            return;
        };
        if let Some(addrs) = self.resolve(&c.owner, &q) {
            let _ = c.sock.send_to(&answer(msg, &q, &addrs), from);
            return;
        }
        {
            let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let mine = per.entry(c.owner.clone()).or_insert(0);
            if *mine >= MAX_FORWARDS_PER_CLIENT {
                return;
            }
            if self.forwards.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
                self.forwards.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            *mine += 1;
        }
        let owner = c.owner.clone();
        let upstreams = if c.upstreams.is_empty() {
            host_resolvers()
        } else {
            c.upstreams.clone()
        };
        let sock = Arc::clone(&c.sock);
        let msg = msg.to_vec();
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("silo-dns-fwd".into())
            .spawn(move || {
                let reply = forward(&msg, &upstreams).unwrap_or_else(|| servfail(&msg, &q));
                let _ = sock.send_to(&reply, from);
                me.done_forwarding(&owner);
            });
        if spawned.is_err() {
            self.done_forwarding(&c.owner);
        }
    }

    fn done_forwarding(&self, owner: &str) {
        self.forwards.fetch_sub(1, Ordering::AcqRel);
        let mut per = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(owner);
            }
        }
    }
}

/// Asks each upstream in turn; the first answer with the query's id wins.
fn forward(msg: &[u8], upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let local: SocketAddr = match up {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(s) = UdpSocket::bind(local) else {
            continue;
        };
        if s.connect((*up, 53)).is_err() || s.send(msg).is_err() {
            continue;
        }
        let _ = s.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        let mut buf = vec![0u8; 65535];
        while let Ok(n) = s.recv(&mut buf) {
            if n >= 12 && buf[..2] == msg[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

/// The service has no logger of its own; silod's stderr is its log.
fn warn(msg: &str) {
    eprintln!("{msg}");
}

/// The thread: polls the wake pipe and every client socket.
fn serve(server: std::sync::Weak<Server>, wake: OwnedFd) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Some(s) = server.upgrade() else { return };
        let clients: Vec<(String, Arc<UdpSocket>)> = s
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| (c.owner.clone(), Arc::clone(&c.sock)))
            .collect();
        drop(s);
        let mut fds: Vec<libc::pollfd> = std::iter::once(wake.as_raw_fd())
            .chain(clients.iter().map(|(_, s)| s.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll over a live array of pollfd of the length passed.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5000) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            let mut drain = [0u8; 64];
            // SAFETY: a read into a local buffer of the length passed.
            while unsafe { libc::read(wake.as_raw_fd(), drain.as_mut_ptr().cast(), drain.len()) }
                > 0
            {}
        }
        let Some(s) = server.upgrade() else { return };
        for (pfd, (owner, sock)) in fds[1..].iter().zip(&clients) {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let client = Client {
                    owner: owner.clone(),
                    sock: Arc::clone(sock),
                    upstreams: s
                        .clients
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(owner)
                        .map(|c| c.upstreams.clone())
                        .unwrap_or_default(),
                };
                s.handle(&client, &buf[..n], from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, as a resolver sends it.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn questions_parse_and_answers_point_back_at_them() {
        let m = query(0x1234, "Web.Example", TYPE_A);
        let q = parse_query(&m).unwrap();
        assert_eq!(q.name, "web.example");
        assert_eq!((q.id, q.qtype, q.qclass, q.end), (0x1234, 1, 1, m.len()));
        let a = answer(
            &m,
            &q,
            &[
                Ipv4Addr::new(10, 0, 0, 2).into(),
                Ipv4Addr::new(10, 0, 0, 3).into(),
            ],
        );
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 2, "two answers");
        assert_eq!(&a[a.len() - 4..], &[10, 0, 0, 3]);
        assert_eq!(&a[m.len()..m.len() + 2], &[0xc0, 0x0c]);
        let m6 = query(7, "web", TYPE_AAAA);
        let q6 = parse_query(&m6).unwrap();
        let a6 = answer(&m6, &q6, &["fd00::2".parse().unwrap()]);
        assert_eq!(&a6[a6.len() - 18..a6.len() - 16], &[0, 16], "rdlength 16");
        assert_eq!(a6[a6.len() - 1], 2);
        let f = servfail(&m, &q);
        assert_eq!(f[3] & 0x0f, 2);
    }

    #[test]
    fn hostile_messages_are_refused() {
        assert_eq!(parse_query(&[0; 5]), Err(DnsError::Short));
        let mut resp = query(1, "a", TYPE_A);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp), Err(DnsError::NotQuery));
        let mut cut = query(1, "abc", TYPE_A);
        cut.truncate(14);
        assert!(parse_query(&cut).is_err());
        let mut ptr = query(1, "a", TYPE_A);
        ptr[12] = 0xc0;
        assert_eq!(parse_query(&ptr), Err(DnsError::Name));
        // A name longer than DNS allows.
        let long = vec!["a".repeat(60); 6].join(".");
        assert!(parse_query(&query(1, &long, TYPE_A)).is_err());
    }
}

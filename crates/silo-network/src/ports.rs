//! Published ports (HNS's PortMapping policy): a host port forwarded to an
//! endpoint's port with nftables DNAT, with no proxy process. One table for
//! the host, `ip silo-ports`, holds two maps (by port, and by host address
//! and port) that a start or stop changes by one element transaction, and
//! the rules that make the mapping reachable from every host address,
//! including 127.0.0.1 (DNAT in `output`, `route_localnet` on the bridge and
//! a masquerade of loopback sources). Each host port is also held by a
//! socket bound in silod, so no other program can take it while it is
//! published, and a port some program already holds is a clear error.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// The table holding every published port of the host.
pub const TABLE: &str = "silo-ports";

/// A transport protocol a port can be published for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            other => Err(format!("unknown protocol {other:?} (tcp, udp or sctp)")),
        }
    }
}

/// A port to publish, as asked: the host port may be a range to pick from
/// (`first == last` for one port; `0, 0` for any free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRequest {
    pub protocol: Protocol,
    /// None: every host address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_first: u16,
    pub host_last: u16,
    pub container_port: u16,
}

/// A published port, as made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortMapping {
    /// Whether two mappings want the same host port.
    pub fn clashes(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// Why a port could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("port {0} is not a valid port (1-65535)")]
    Invalid(u16),
    #[error("host port range {first}-{last} is empty")]
    Range { first: u16, last: u16 },
    #[error("Bind for {addr}:{port} failed: port is already allocated ({by})")]
    Taken {
        addr: String,
        port: String,
        by: String,
    },
    #[error("reserving {proto} port {addr}:{port}: {source}")]
    Reserve {
        proto: Protocol,
        addr: String,
        port: u16,
        source: std::io::Error,
    },
}

fn host_addr(ip: Option<Ipv4Addr>) -> String {
    ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
}

/// Binds `proto` port `port` (0: any) on `ip` and returns the socket and
/// the port it got. TCP sockets listen (so nothing else can bind the port
/// even with SO_REUSEADDR) but never accept: DNAT takes the traffic first.
fn bind(proto: Protocol, ip: Option<Ipv4Addr>, port: u16) -> std::io::Result<(OwnedFd, u16)> {
    let (ty, p) = match proto {
        Protocol::Tcp => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        Protocol::Udp => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        Protocol::Sctp => (libc::SOCK_STREAM, libc::IPPROTO_SCTP),
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, p) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if proto == Protocol::Tcp {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let addr = SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: bind with a sockaddr_in that lives across the call.
    if unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            len,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    if proto != Protocol::Udp {
        // SAFETY: listen on the socket just bound.
        if unsafe { libc::listen(sock.as_raw_fd(), 1) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let mut got: libc::sockaddr_in = sin;
    let mut got_len = len;
    // SAFETY: getsockname into a sockaddr_in of the length passed.
    if unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut got as *mut libc::sockaddr_in).cast(),
            &mut got_len,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok((sock, u16::from_be(got.sin_port)))
}

/// Holds the host port a request asks for: the first free one of its
/// range, or one the kernel picks. `taken` are silo's own mappings (with
/// their owners), checked first for a clear error. SCTP ports are held
/// only where the kernel has SCTP.
pub fn reserve(
    req: &PortRequest,
    taken: &[(PortMapping, String)],
) -> Result<(PortMapping, Option<OwnedFd>), PortError> {
    if req.container_port == 0 {
        return Err(PortError::Invalid(0));
    }
    if req.host_first > req.host_last {
        return Err(PortError::Range {
            first: req.host_first,
            last: req.host_last,
        });
    }
    let mapping = |host_port| PortMapping {
        protocol: req.protocol,
        host_ip: req.host_ip,
        host_port,
        container_port: req.container_port,
    };
    let addr = host_addr(req.host_ip);
    let mut last_err = None;
    for port in req.host_first..=req.host_last {
        if port != 0 {
            if let Some((_, by)) = taken.iter().find(|(m, _)| m.clashes(&mapping(port))) {
                last_err = Some(PortError::Taken {
                    addr: addr.clone(),
                    port: port.to_string(),
                    by: format!("published by {by}"),
                });
                continue;
            }
        }
        match bind(req.protocol, req.host_ip, port) {
            Ok((fd, got)) => return Ok((mapping(got), Some(fd))),
            Err(e) if req.protocol == Protocol::Sctp && port != 0 => {
                if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
                    return Ok((mapping(port), None));
                }
                last_err = Some(taken_or(req.protocol, &addr, port, e));
            }
            Err(e) => last_err = Some(taken_or(req.protocol, &addr, port, e)),
        }
    }
    Err(last_err.unwrap_or(PortError::Range {
        first: req.host_first,
        last: req.host_last,
    }))
}

fn taken_or(proto: Protocol, addr: &str, port: u16, e: std::io::Error) -> PortError {
    if e.raw_os_error() == Some(libc::EADDRINUSE) {
        PortError::Taken {
            addr: addr.to_string(),
            port: port.to_string(),
            by: "another program holds it".into(),
        }
    } else {
        PortError::Reserve {
            proto,
            addr: addr.to_string(),
            port,
            source: e,
        }
    }
}

/// The element a mapping is in its map: (map, key, value).
fn element(m: &PortMapping, target: Ipv4Addr) -> (&'static str, String, String) {
    let value = format!("{target} . {}", m.container_port);
    match m.host_ip {
        None => ("any4", format!("{} . {}", m.protocol, m.host_port), value),
        Some(ip) => (
            "addr4",
            format!("{ip} . {} . {}", m.protocol, m.host_port),
            value,
        ),
    }
}

/// The script that (re)creates the table with `mappings` (each with the
/// endpoint address it forwards to) in it.
pub fn table_script(mappings: &[(PortMapping, Ipv4Addr)]) -> String {
    let mut s = format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
         \x20 map any4 {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \x20 map addr4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n    fib daddr type local jump ports\n  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }}\n\
         \x20 chain ports {{\n\
         \x20   meta l4proto {{ tcp, udp, sctp }} dnat ip to ip daddr . meta l4proto . th dport map @addr4\n\
         \x20   meta l4proto {{ tcp, udp, sctp }} dnat ip to meta l4proto . th dport map @any4\n  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr 127.0.0.0/8 ct status dnat masquerade\n  }}\n}}\n"
    );
    s.push_str(&add_script(mappings));
    s
}

/// The script that adds mappings (one transaction).
pub fn add_script(mappings: &[(PortMapping, Ipv4Addr)]) -> String {
    mappings
        .iter()
        .map(|(m, t)| {
            let (map, k, v) = element(m, *t);
            format!("add element ip {TABLE} {map} {{ {k} : {v} }}\n")
        })
        .collect()
}

/// The script that removes mappings (one transaction).
pub fn delete_script(mappings: &[PortMapping]) -> String {
    mappings
        .iter()
        .map(|m| {
            let (map, k, _) = element(m, Ipv4Addr::UNSPECIFIED);
            format!("delete element ip {TABLE} {map} {{ {k} }}\n")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ip: Option<Ipv4Addr>, port: u16) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip: ip,
            host_port: port,
            container_port: 80,
        }
    }

    #[test]
    fn clashes_by_protocol_port_and_address() {
        let lo = Some(Ipv4Addr::LOCALHOST);
        let other = Some(Ipv4Addr::new(10, 0, 0, 1));
        assert!(m(None, 8080).clashes(&m(lo, 8080)));
        assert!(m(lo, 8080).clashes(&m(lo, 8080)));
        assert!(!m(lo, 8080).clashes(&m(other, 8080)));
        assert!(!m(None, 8080).clashes(&m(None, 8081)));
        let mut udp = m(None, 8080);
        udp.protocol = Protocol::Udp;
        assert!(!udp.clashes(&m(None, 8080)));
    }

    #[test]
    fn scripts_name_the_right_map() {
        let t = Ipv4Addr::new(172, 17, 0, 2);
        let add = add_script(&[(m(None, 8080), t), (m(Some(Ipv4Addr::LOCALHOST), 9090), t)]);
        assert!(
            add.contains("add element ip silo-ports any4 { tcp . 8080 : 172.17.0.2 . 80 }"),
            "{add}"
        );
        assert!(
            add.contains("addr4 { 127.0.0.1 . tcp . 9090 : 172.17.0.2 . 80 }"),
            "{add}"
        );
        let del = delete_script(&[m(None, 8080)]);
        assert_eq!(del, "delete element ip silo-ports any4 { tcp . 8080 }\n");
        assert!(table_script(&[]).contains("fib daddr type local jump ports"));
    }

    #[test]
    fn a_held_port_is_refused_and_any_port_is_picked() {
        let any = PortRequest {
            protocol: Protocol::Tcp,
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_first: 0,
            host_last: 0,
            container_port: 80,
        };
        let (got, fd) = reserve(&any, &[]).unwrap();
        assert!(got.host_port != 0 && fd.is_some());
        let again = PortRequest {
            host_first: got.host_port,
            host_last: got.host_port,
            ..any
        };
        let e = reserve(&again, &[]).unwrap_err();
        assert!(e.to_string().contains("already allocated"), "{e}");
        let e = reserve(&again, &[(got, "web".into())]).unwrap_err();
        assert!(e.to_string().contains("published by web"), "{e}");
        drop(fd);
        assert!(reserve(&again, &[]).is_ok());
    }
}

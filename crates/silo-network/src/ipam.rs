//! IP address management: subnets, a network's pool of addresses with its
//! gateway and optional allocation range, and leases kept by owner so they
//! survive restarts (the pool is serde; the service writes it atomically).
//! Addresses are handed out lowest first after the last one given, so a
//! released address is not reused at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An address management request failed; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid CIDR {0:?}: want ADDRESS/PREFIX, such as 172.31.0.0/16")]
    BadCidr(String),
    #[error("{addr} is not in subnet {subnet}")]
    OutsideSubnet { addr: IpAddr, subnet: Subnet },
    #[error("subnet {subnet}: no free address left{}", range.map(|r| format!(" in range {r}")).unwrap_or_default())]
    Exhausted {
        subnet: Subnet,
        range: Option<Subnet>,
    },
    #[error("address {addr} is already in use (by {owner})")]
    InUse { addr: IpAddr, owner: String },
    #[error(
        "subnet {subnet} is too small for containers (want at most /30 for IPv4, /126 for IPv6)"
    )]
    TooSmall { subnet: Subnet },
    #[error("{addr} cannot be used: it is the subnet's {what}")]
    Reserved { addr: IpAddr, what: &'static str },
    #[error("{0}")]
    Invalid(String),
}

/// An IPv4 or IPv6 prefix, kept normalized (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Subnet, IpamError> {
        let bad = || IpamError::BadCidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Subnet {
            addr: mask(addr, prefix),
            prefix,
        })
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn bits(a: IpAddr) -> u32 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    let host_bits = bits(a) - u32::from(prefix);
    let v = to_u128(a);
    let m = if host_bits >= 128 {
        0
    } else {
        v >> host_bits << host_bits
    };
    from_u128(m, a.is_ipv4())
}

impl Subnet {
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.addr.is_ipv4() && mask(a, self.prefix) == self.addr
    }

    /// Whether two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && (self.contains(other.addr) || other.contains(self.addr))
    }

    /// The first and last address of the subnet.
    fn bounds(&self) -> (u128, u128) {
        let lo = to_u128(self.addr);
        let host_bits = bits(self.addr) - u32::from(self.prefix);
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        (lo, lo + span)
    }

    /// The first usable host address (the default gateway).
    pub fn first_host(&self) -> IpAddr {
        from_u128(self.bounds().0 + 1, self.addr.is_ipv4())
    }
}

/// A network's addresses: the subnet, its gateway, the range containers
/// get addresses from, and the leases by owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Subnet>,
    /// address → owner (an endpoint id).
    #[serde(default)]
    pub leases: BTreeMap<IpAddr, String>,
    /// Where the next search starts (so released addresses rest a while).
    #[serde(default)]
    pub next: Option<IpAddr>,
}

impl Pool {
    /// A pool over `subnet`; the gateway defaults to its first host; `range`
    /// (inside the subnet) limits what containers get.
    pub fn new(
        subnet: Subnet,
        gateway: Option<IpAddr>,
        range: Option<Subnet>,
    ) -> Result<Pool, IpamError> {
        let max = bits(subnet.addr);
        if u32::from(subnet.prefix) + 2 > max {
            return Err(IpamError::TooSmall { subnet });
        }
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) {
            return Err(IpamError::OutsideSubnet {
                addr: gateway,
                subnet,
            });
        }
        if let Some(r) = range {
            if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
                return Err(IpamError::OutsideSubnet {
                    addr: r.addr,
                    subnet,
                });
            }
        }
        let pool = Pool {
            subnet,
            gateway,
            range,
            leases: BTreeMap::new(),
            next: None,
        };
        pool.check_usable(gateway, "gateway")?;
        Ok(pool)
    }

    fn check_usable(&self, a: IpAddr, _role: &str) -> Result<(), IpamError> {
        let (lo, hi) = self.subnet.bounds();
        let v = to_u128(a);
        if v == lo {
            return Err(IpamError::Reserved {
                addr: a,
                what: "network address",
            });
        }
        if a.is_ipv4() && v == hi {
            return Err(IpamError::Reserved {
                addr: a,
                what: "broadcast address",
            });
        }
        Ok(())
    }

    /// Leases an address to `owner`: `wanted` (it must be in the subnet and
    /// free) or the next free one in the range. An owner holding a lease
    /// gets the same address again.
    pub fn allocate(&mut self, owner: &str, wanted: Option<IpAddr>) -> Result<IpAddr, IpamError> {
        if let Some((a, _)) = self.leases.iter().find(|(_, o)| *o == owner) {
            if wanted.is_none_or(|w| w == *a) {
                return Ok(*a);
            }
        }
        if let Some(w) = wanted {
            if !self.subnet.contains(w) {
                return Err(IpamError::OutsideSubnet {
                    addr: w,
                    subnet: self.subnet,
                });
            }
            self.check_usable(w, "address")?;
            if w == self.gateway {
                return Err(IpamError::Reserved {
                    addr: w,
                    what: "gateway",
                });
            }
            if let Some(o) = self.leases.get(&w) {
                return Err(IpamError::InUse {
                    addr: w,
                    owner: o.clone(),
                });
            }
            self.leases.insert(w, owner.to_string());
            return Ok(w);
        }
        let area = self.range.unwrap_or(self.subnet);
        let (lo, hi) = area.bounds();
        let (slo, shi) = self.subnet.bounds();
        let v4 = self.subnet.addr.is_ipv4();
        let start = self
            .next
            .map(to_u128)
            .filter(|n| (lo..=hi).contains(n))
            .unwrap_or(lo);
        let span = hi - lo + 1;
        // Walk the range once, from `start`, wrapping. Large IPv6 ranges
        // stop after a bounded number of probes.
        let probes = span.min(1 << 20);
        for i in 0..probes {
            let v = lo + (start - lo + i) % span;
            if v == slo || (v4 && v == shi) {
                continue;
            }
            let a = from_u128(v, v4);
            if a == self.gateway || self.leases.contains_key(&a) {
                continue;
            }
            self.leases.insert(a, owner.to_string());
            self.next = Some(from_u128(if v == hi { lo } else { v + 1 }, v4));
            return Ok(a);
        }
        Err(IpamError::Exhausted {
            subnet: self.subnet,
            range: self.range,
        })
    }

    /// Releases every address of `owner`; returns them.
    pub fn release(&mut self, owner: &str) -> Vec<IpAddr> {
        let gone: Vec<IpAddr> = self
            .leases
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.leases.remove(a);
        }
        gone
    }
}

/// The MAC address an IPv4 endpoint gets, as Docker makes them:
/// 02:42 followed by the four address bytes (locally administered).
pub fn mac_for(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_parse_normalize_and_overlap() {
        let s: Subnet = "172.31.5.9/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.31.0.0/16");
        assert!(s.contains(ip("172.31.255.1")));
        assert!(!s.contains(ip("172.32.0.1")));
        let t: Subnet = "172.31.4.0/24".parse().unwrap();
        assert!(s.overlaps(&t) && t.overlaps(&s));
        assert!(!t.overlaps(&"172.31.5.0/24".parse().unwrap()));
        let v6: Subnet = "fd00:1::/64".parse().unwrap();
        assert!(v6.contains(ip("fd00:1::5")));
        assert!(!v6.overlaps(&s));
        for bad in ["1.2.3.4", "1.2.3.4/33", "x/8", "fd00::/129", "1.2.3/8"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn leases_go_in_order_skip_the_gateway_and_persist() {
        let mut p = Pool::new("10.9.0.0/29".parse().unwrap(), None, None).unwrap();
        assert_eq!(p.gateway, ip("10.9.0.1"));
        let got: Vec<IpAddr> = (0..5)
            .map(|i| p.allocate(&format!("e{i}"), None).unwrap())
            .collect();
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
        );
        let e = p.allocate("e9", None).unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
        assert_eq!(
            p.allocate("e1", None).unwrap(),
            ip("10.9.0.3"),
            "same owner, same address"
        );
        assert_eq!(p.release("e1"), [ip("10.9.0.3")]);
        assert_eq!(p.allocate("e7", None).unwrap(), ip("10.9.0.3"));
        // Through JSON and back, with its leases.
        let back: Pool = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn requested_addresses_and_ranges_are_checked() {
        let mut p = Pool::new(
            "192.168.7.0/24".parse().unwrap(),
            Some(ip("192.168.7.254")),
            Some("192.168.7.128/25".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(p.allocate("a", None).unwrap(), ip("192.168.7.128"));
        assert_eq!(
            p.allocate("b", Some(ip("192.168.7.9"))).unwrap(),
            ip("192.168.7.9")
        );
        assert!(matches!(
            p.allocate("c", Some(ip("192.168.7.9"))),
            Err(IpamError::InUse { .. })
        ));
        assert!(matches!(
            p.allocate("c", Some(ip("10.0.0.1"))),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(matches!(
            p.allocate("c", Some(ip("192.168.7.254"))),
            Err(IpamError::Reserved { .. })
        ));
        assert!(matches!(
            p.allocate("c", Some(ip("192.168.7.255"))),
            Err(IpamError::Reserved { .. })
        ));
        assert!(Pool::new("10.0.0.0/24".parse().unwrap(), Some(ip("10.0.1.1")), None).is_err());
        assert!(Pool::new("10.0.0.0/31".parse().unwrap(), None, None).is_err());
        let e = Pool::new("10.0.0.0/24".parse().unwrap(), Some(ip("10.0.1.1")), None).unwrap_err();
        assert!(e.to_string().contains("10.0.1.1"), "{e}");
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(
            mac_for("172.17.0.2".parse().unwrap()),
            [2, 0x42, 172, 17, 0, 2]
        );
    }
}

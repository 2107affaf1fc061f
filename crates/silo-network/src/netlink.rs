//! A small synchronous rtnetlink client: links (bridge, veth), addresses,
//! routes. A [`Netlink`] is bound to the network namespace of the thread
//! that opened it (netlink sockets keep their namespace), so callers open
//! one per namespace, on a thread that is in it, and pass it in.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
pub use netlink_packet_route::link::InfoBridgePort;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage};
use netlink_packet_route::route::{RouteHeader, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use thiserror::Error;

/// A netlink request failed.
#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
    #[error("{what}: malformed netlink answer: {message}")]
    Decode { what: String, message: String },
}

impl NetlinkError {
    /// The kernel's errno, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// An rtnetlink socket in one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

/// What a link dump says of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub up: bool,
    /// The bridge it is enslaved to, if any.
    pub master: Option<u32>,
    pub kind: Option<String>,
    /// (rx packets, tx packets, rx bytes, tx bytes), as the link counts them.
    pub counters: Option<(u64, u64, u64, u64)>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends one request and reads the answers up to the ACK (or DONE).
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(NetlinkError::Socket)?;
        let mut out = Vec::new();
        let decode = |m: String| NetlinkError::Decode {
            what: what.to_string(),
            message: m,
        };
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(NetlinkError::Socket)?;
            let mut offset = 0;
            while offset < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| decode(e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(decode("zero-length message".into()));
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out), // the ACK
                            Some(code) => Err(NetlinkError::Kernel {
                                what: what.to_string(),
                                source: io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            "listing links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if any: one lookup by name, not a dump of
    /// every link (a start must not cost more with more containers).
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("looking up link {name}"),
            RouteNetlinkMessage::GetLink(m),
            NLM_F_ACK,
        ) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge; returns its index.
    pub fn add_bridge(&mut self, name: &str) -> Result<u32> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let what = format!("creating bridge {name}");
        self.request(
            &what,
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.index_of(name, &what)
    }

    /// Creates a veth pair: `host` here and `peer` moved into the namespace
    /// `peer_ns` (an open /proc/…/ns/net or pinned file) right away.
    pub fn add_veth(&mut self, host: &str, peer: &str, peer_ns: BorrowedFd<'_>) -> Result<u32> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        let what = format!("creating veth pair {host}/{peer}");
        self.request(
            &what,
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.index_of(host, &what)
    }

    /// Creates a macvlan link (bridge mode) on `parent` named `name`, made
    /// directly inside the namespace `ns` (None: this one).
    pub fn add_macvlan(
        &mut self,
        name: &str,
        parent: u32,
        ns: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(parent));
        if let Some(ns) = ns {
            m.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])),
        ]));
        self.request(
            &format!("creating macvlan {name} on link {parent}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    fn index_of(&mut self, name: &str, what: &str) -> Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::Decode {
                what: what.to_string(),
                message: format!("{name} is not listed after its creation"),
            })
    }

    fn set(&mut self, what: String, index: u32, f: impl FnOnce(&mut LinkMessage)) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        f(&mut m);
        self.request(&what, RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
        Ok(())
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set(format!("bringing link {index} up"), index, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Enslaves a link to a bridge.
    pub fn set_master(&mut self, index: u32, bridge: u32) -> Result<()> {
        self.set(
            format!("adding link {index} to bridge {bridge}"),
            index,
            |m| {
                m.attributes.push(LinkAttribute::Controller(bridge));
            },
        )
    }

    /// Sets bridge port flags on a link enslaved to a bridge (hairpin
    /// mode, so a frame may leave by the port it came in; isolation, so
    /// isolated ports never talk to each other).
    pub fn set_bridge_port(&mut self, index: u32, flags: Vec<InfoBridgePort>) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(flags)),
        ]));
        self.request(
            &format!("setting bridge port flags on link {index}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set(format!("setting the MTU of link {index}"), index, |m| {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        })
    }

    /// Sets a link's MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set(format!("setting the MAC of link {index}"), index, |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        })
    }

    /// Renames a link (it must be down).
    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        self.set(format!("renaming link {index} to {name}"), index, |m| {
            m.attributes.push(LinkAttribute::IfName(name.to_string()));
        })
    }

    /// Deletes a link (a veth takes its peer with it).
    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(
            &format!("deleting link {index}"),
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// Adds `addr/prefix` to a link.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = family(addr);
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv6() {
            // No duplicate address detection: silo's IPAM hands out each
            // address once, and DAD would keep it tentative for a second.
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            &format!("adding address {addr}/{prefix} to link {index}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The addresses of a link, with their prefix lengths.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let msgs = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                if a.header.index != index {
                    continue;
                }
                for attr in &a.attributes {
                    if let AddressAttribute::Address(ip) = attr {
                        out.push((*ip, a.header.prefix_len));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Adds a default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(gateway);
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        }));
        self.request(
            &format!("adding a default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates a VXLAN link: network identifier `vni`, UDP port `port`,
    /// source address `local` (None: the route's), learning off (remote
    /// endpoints are told, not learned). Returns its index.
    pub fn add_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        port: u16,
        local: Option<std::net::Ipv4Addr>,
    ) -> Result<u32> {
        let mut data = vec![
            InfoVxlan::Id(vni),
            InfoVxlan::Port(port),
            InfoVxlan::Learning(false),
        ];
        if let Some(l) = local {
            data.push(InfoVxlan::Local(l));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ]));
        let what = format!("creating VXLAN link {name} (VNI {vni}, port {port})");
        self.request(
            &what,
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.index_of(name, &what)
    }

    /// The forwarding entry "frames for `mac` on VXLAN link `index` go to
    /// VTEP `dst`" (all-zero `mac`: flood broadcast and unknown frames
    /// there too; several such entries append). Replaces an equal one.
    pub fn fdb_add(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        let flood = mac == [0; 6];
        let m = fdb_message(index, mac, dst);
        let flags = if flood {
            NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        } else {
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        };
        match self.request(
            &format!("adding forwarding entry {} via {dst}", mac_str(mac)),
            RouteNetlinkMessage::NewNeighbour(m),
            flags,
        ) {
            // An equal flood entry is already there.
            Err(e) if flood && e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Removes a forwarding entry made by [`Netlink::fdb_add`] (a missing
    /// one is fine).
    pub fn fdb_del(&mut self, index: u32, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        let m = fdb_message(index, mac, dst);
        match self.request(
            &format!("removing forwarding entry {} via {dst}", mac_str(mac)),
            RouteNetlinkMessage::DelNeighbour(m),
            NLM_F_ACK,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
            r => r.map(drop),
        }
    }

    /// A permanent neighbour entry: `ip` is at `mac` on link `index`.
    pub fn neigh_add(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        let m = neigh_message(index, ip, Some(mac));
        self.request(
            &format!("adding neighbour {ip} at {}", mac_str(mac)),
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Removes a neighbour entry (a missing one is fine).
    pub fn neigh_del(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let m = neigh_message(index, ip, None);
        match self.request(
            &format!("removing neighbour {ip}"),
            RouteNetlinkMessage::DelNeighbour(m),
            NLM_F_ACK,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Adds the route `dst/prefix` (through `via`, on link `oif`; `onlink`
    /// takes `via` as on the link whatever its subnet).
    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        self.request(
            &format!("adding route {r}"),
            RouteNetlinkMessage::NewRoute(route_message(r)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Deletes a route (a missing one is fine).
    pub fn del_route(&mut self, r: &Route) -> Result<()> {
        match self.request(
            &format!("deleting route {r}"),
            RouteNetlinkMessage::DelRoute(route_message(r)),
            NLM_F_ACK,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ESRCH | libc::ENOENT | libc::ENODEV)) => {
                Ok(())
            }
            r => r.map(drop),
        }
    }

    /// Puts a token bucket filter (`tbf`) as the root queueing discipline
    /// of link `index`: at most `rate` bytes a second leave it, in bursts
    /// of at most `burst` bytes, with `limit` bytes queued. Replaces the
    /// current root discipline.
    pub fn set_tbf(&mut self, index: u32, rate: u64, burst: u32, limit: u32) -> Result<()> {
        // struct tc_tbf_qopt: rate and peak rate (struct tc_ratespec, 12
        // bytes each: cell_log u8, linklayer u8, overhead u16, cell_align
        // i16, mpu u16, rate u32), limit, buffer and mtu (u32 each). The
        // burst goes in TCA_TBF_BURST as bytes, so no ticks are needed.
        const TCA_TBF_PARMS: u16 = 1;
        const TCA_TBF_RATE64: u16 = 4;
        const TCA_TBF_BURST: u16 = 6;
        const TC_LINKLAYER_ETHERNET: u8 = 1;
        let mut q = vec![0u8; 36];
        q[1] = TC_LINKLAYER_ETHERNET;
        q[8..12].copy_from_slice(&(rate.min(u32::MAX as u64) as u32).to_ne_bytes());
        q[24..28].copy_from_slice(&limit.to_ne_bytes());
        let mut opts = vec![TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, q))];
        if rate > u32::MAX as u64 {
            opts.push(TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                rate.to_ne_bytes().to_vec(),
            )));
        }
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_BURST,
            burst.to_ne_bytes().to_vec(),
        )));
        let mut m = TcMessage::default();
        m.header.index = index as i32;
        m.header.parent = TcHandle::ROOT;
        m.header.handle = TcHandle {
            major: 0x5110,
            minor: 0,
        };
        m.attributes.push(TcAttribute::Kind("tbf".into()));
        m.attributes.push(TcAttribute::Options(opts));
        self.request(
            &format!("setting a rate of {rate} bytes/s on link {index}"),
            RouteNetlinkMessage::NewQueueDiscipline(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Removes the root queueing discipline of link `index` (back to the
    /// default; none set is fine).
    pub fn del_root_qdisc(&mut self, index: u32) -> Result<()> {
        let mut m = TcMessage::default();
        m.header.index = index as i32;
        m.header.parent = TcHandle::ROOT;
        match self.request(
            &format!("removing the rate limit of link {index}"),
            RouteNetlinkMessage::DelQueueDiscipline(m),
            NLM_F_ACK,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {
                Ok(())
            }
            r => r.map(drop),
        }
    }
}

/// A route for [`Netlink::add_route`] and [`Netlink::del_route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix: u8,
    pub via: Option<IpAddr>,
    pub oif: Option<u32>,
    pub onlink: bool,
    /// An `unreachable` route (no device, no next hop).
    pub unreachable: bool,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix)?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " dev {o}")?;
        }
        Ok(())
    }
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn route_message(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(r.dst);
    m.header.destination_prefix_length = r.prefix;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = if r.via.is_some() || r.unreachable {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    m.header.kind = if r.unreachable {
        RouteType::Unreachable
    } else {
        RouteType::Unicast
    };
    if r.onlink {
        m.header.flags = RouteFlags::Onlink;
    }
    m.attributes
        .push(RouteAttribute::Destination(route_address(r.dst)));
    if let Some(v) = r.via {
        m.attributes.push(RouteAttribute::Gateway(route_address(v)));
    }
    if let Some(o) = r.oif {
        m.attributes.push(RouteAttribute::Oif(o));
    }
    m
}

fn neigh_address(a: IpAddr) -> NeighbourAddress {
    match a {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

fn neigh_message(index: u32, ip: IpAddr, mac: Option<[u8; 6]>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(neigh_address(ip)));
    if let Some(mac) = mac {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    m
}

fn fdb_message(index: u32, mac: [u8; 6], dst: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(neigh_address(dst)));
    m
}

/// A MAC as Linux prints it.
pub fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn family(a: IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        master: None,
        kind: None,
        counters: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Address(m) => out.mac = m.clone(),
            LinkAttribute::Controller(i) => out.master = Some(*i),
            LinkAttribute::Stats64(st) => {
                out.counters = Some((st.rx_packets, st.tx_packets, st.rx_bytes, st.tx_bytes))
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        out.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

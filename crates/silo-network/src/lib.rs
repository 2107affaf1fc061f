//! silo-network: the network service (the Host Networking Service of the
//! slides, on Linux): networks, endpoints, IP address management and the
//! drivers that realise them with netlink. It knows nothing of Docker; the
//! engine reaches it through its `NetworkService` seam.
//!
//! This first part holds the building blocks: a synchronous rtnetlink client
//! ([`netlink`]) and IP address management with persistent leases ([`ipam`]).

pub mod ipam;
pub mod netlink;

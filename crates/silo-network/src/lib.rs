//! silo-network: the network service (the Host Networking Service of the
//! slides, on Linux): networks, endpoints, IP address management and the
//! drivers that realise them with netlink. It knows nothing of Docker; the
//! engine reaches it through its `NetworkService` seam.
//!
//! This first part holds the building blocks: a synchronous rtnetlink client
//! ([`netlink`]), IP address management with persistent leases ([`ipam`]),
//! and the nat driver's bridge and endpoint transactions ([`nat`]).

pub mod dns;
pub mod driver;
pub mod firewall;
pub mod ipam;
pub mod l2;
pub mod nat;
pub mod netlink;
pub mod nft;
pub mod overlay;
pub mod policy;
pub mod ports;
pub mod service;
pub mod view;

pub use service::{
    AttachSpec, CreateNetwork, Endpoint, JoinRequest, Network, Service, ServiceError,
};

//! The one definition of each small helper that several silo crates need:
//! atomic file writes ([`fs`]), random ids ([`id`]), signal names
//! ([`signal`]), pidfds ([`pidfd`]), Docker's multiplexed stdio framing
//! ([`frame`]), socket queries ([`socket`]) and detach keys ([`escape`]). A leaf: it knows nothing of containers, and nothing above it.

pub mod escape;
pub mod frame;
pub mod fs;
pub mod id;
pub mod pidfd;
pub mod signal;
pub mod socket;

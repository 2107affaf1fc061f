//! The compute service (HCS on Windows): an OCI bundle becomes a compute
//! system with a state machine `creating → created → running ⇄ paused →
//! stopped`, and each step is an operation with its own typed error.
//!
//! It drives the job layer (`silo-job`) and the isolation layer
//! (`silo-isolation`, `silo-seccomp`) and knows nothing of daemons or APIs.

mod bundle;
mod events;
mod host;
pub mod store;
mod system;

pub use bundle::{validate_id, Prepared};
pub use events::Event;
pub use host::{Host, HostError};
pub use system::*;

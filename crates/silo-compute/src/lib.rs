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

/// The exit code Docker and runc report for a wait(2) status: the exit
/// status, or 128 + the signal that killed the process (255 otherwise).
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

#[cfg(test)]
mod exit_code_tests {
    #[test]
    fn exit_codes_follow_docker() {
        // Encoded as wait(2) does: code << 8, or the signal number.
        assert_eq!(super::exit_code(3 << 8), 3);
        assert_eq!(super::exit_code(libc::SIGKILL), 137);
        assert_eq!(super::exit_code(0), 0);
    }
}

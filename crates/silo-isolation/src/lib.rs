//! The isolation layer (Windows Silos and the sandbox → namespaces, rootfs,
//! capabilities, seccomp): everything between `clone` and `execve`.
//!
//! It knows nothing of images, networks or daemons. The leaf modules are
//! small, single-purpose steps; `init` runs them in order inside the new
//! process, and `spawn` is the parent's side of that conversation.

pub mod caps;
pub mod console;
pub mod fds;
pub mod hooks;
mod init;
pub mod mounts;
pub mod ns;
pub mod oom;
pub mod paths;
pub mod personality;
pub mod pin;
pub mod rlimits;
pub mod spawn;
mod sync;
pub mod sysctl;
pub mod user;

pub use spawn::{
    exec_into, spawn_init, CommandFailure, ExecPlan, InitPlan, ParentSide, SpawnError,
};

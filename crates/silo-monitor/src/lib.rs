//! silo-monitor: the per-container monitor ("shim"). It is the parent of a
//! container's init, holds its stdio, writes Docker's json-file log,
//! records the exit status and serves attach, so that silod can die and
//! come back without the container noticing.
//!
//! Files in the state directory: `monitor.json`, `exit.json`,
//! `container-json.log` (+ `.1`), `log-errors.json`, `monitor.log`,
//! `attach.sock`, `control.sock`.

pub mod args;
pub mod fdio;
pub mod files;
pub mod jsonlog;
pub mod monitor;
pub mod process;
pub mod protocol;
pub mod trim;

pub use args::{parse, Args, ArgsError, USAGE};
pub use monitor::{Monitor, StartError};
pub use process::{detach, run};
pub use protocol::{AttachRequest, ControlRequest, ExitInfo, MonitorInfo, Resize};

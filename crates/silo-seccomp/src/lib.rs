//! Syscall filtering for silo: OCI and Docker seccomp profiles, compiled to classic BPF with
//! libseccomp, cached on disk by profile hash, and installed with an async-signal-safe loader.
//!
//! The pipeline is: a Docker-format profile (or [`docker_default`]) is resolved for a capability
//! set with [`resolve_docker_profile`] into an OCI [`silo_oci::Seccomp`]; [`compile`] (or
//! [`compile_cached`]) turns that into a [`Program`]; and [`load`] installs the program in the
//! forked child right before `execve`.

mod cache;
mod compile;
mod docker;
mod fields;
mod load;
mod program;

pub use cache::{cache_key, compile_cached};
pub use compile::{compile, CompileError};
pub use docker::{
    docker_default, resolve_docker_profile, resolve_docker_profile_for, ProfileError, Target,
    DOCKER_DEFAULT_PROFILE,
};
pub use fields::FieldError;
pub use load::{load, LoadError};
pub use program::{Program, SockFilter};

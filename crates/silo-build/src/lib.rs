//! silo-build: image builds from Dockerfiles, as dockerd's classic builder
//! does them: the Dockerfile parser ([`parse`]), variable substitution
//! ([`expand`]), `.dockerignore` matching ([`ignore`]), and the builder
//! over the engine core ([`builder`]). It knows nothing of Docker's wire
//! types: the Docker adapter turns `POST /build` into a [`BuildRequest`].

pub mod builder;
pub mod context;
pub mod expand;
pub mod ignore;
pub mod parse;

pub use builder::{build, BuildError, BuildRequest, Event};
pub use parse::{parse, Args, Dockerfile, Instruction, ParseError};

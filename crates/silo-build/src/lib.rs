//! silo-build: image builds from Dockerfiles, as dockerd's classic builder
//! does them. This first part holds what needs no engine: the Dockerfile
//! parser ([`parse`]), variable substitution ([`expand`]) and
//! `.dockerignore` matching ([`ignore`]).

pub mod expand;
pub mod ignore;
pub mod parse;

pub use parse::{parse, Args, Dockerfile, Instruction, ParseError};

//! The Docker adapter: what the Docker Engine API means, in terms of
//! silo-engine. Requests in Docker's wire types (`bollard-stubs`) are
//! checked with Docker's rules and translated into the engine's own
//! configurations; the engine's state is shown in Docker's shapes
//! (inspect, ps, events, stats, images, volumes, info). Docker-only
//! semantics live here: the image's defaults merged into a container, the
//! healthcheck merge and its CMD-SHELL form, filters, status lines.
//!
//! The engine never sees these types; `silo-api` (HTTP) calls this crate.
//! The request a container was created from is kept with it as the
//! engine's `docker` extension, so inspect shows it back as given.

use bollard_stubs::models::ContainerCreateBody;
use silo_engine::Engine;
use std::sync::Arc;

mod build;
mod containers;
mod create;
mod distribution;
mod events;
mod exec;
mod health;
mod images;
mod inspect;
mod legacy;
mod networks;
mod stats;
mod system;
mod volumes;

pub use create::legacy_mac_address;
pub use distribution::{error_line, pull_reference, registry_auth};
pub use events::EventStream;
pub use exec::{detach_keys, ExecCreated};
pub use inspect::Filters;
pub use legacy::Legacy;
pub use stats::StatsStream;
pub use system::{API_VERSION, MIN_API_VERSION};

/// Why a Docker request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused or failed it (or the adapter found it wrong).
    #[error(transparent)]
    Engine(#[from] silo_engine::Error),
    /// Nothing to do: starting a running container, stopping a stopped one.
    #[error("{0}")]
    NotModified(String),
    /// A feature silo does not offer (yet).
    #[error("{0}")]
    NotImplemented(String),
    /// Something Docker looks up that is not there (a volume plugin).
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// The message a Docker client expects for this error.
    pub fn docker_message(&self) -> String {
        match self {
            Error::Engine(silo_engine::Error::NotFound {
                kind: silo_engine::Kind::Volume,
                id,
            }) => format!("get {id}: no such volume"),
            other => other.to_string(),
        }
    }
}

/// Shorthand for adapter results.
pub type Result<T> = std::result::Result<T, Error>;

/// A request field that is wrong (Docker's 400, naming the field).
pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Engine(silo_engine::Error::invalid(field, message))
}

/// A signal as Docker takes it (name or number).
pub(crate) fn signal(s: &str) -> Result<i32> {
    silo_sys::signal::parse(s).map_err(|e| invalid("signal", e.to_string()))
}

/// The Docker front end over one engine.
#[derive(Clone)]
pub struct Docker {
    engine: Arc<Engine>,
}

impl Docker {
    pub fn new(engine: Arc<Engine>) -> Docker {
        Docker { engine }
    }

    /// The engine under this front end.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// The create request as the engine keeps it.
pub(crate) fn extension(body: &ContainerCreateBody) -> Result<silo_engine::Extensions> {
    let raw = serde_json::value::to_raw_value(body).map_err(|e| {
        Error::Engine(silo_engine::Error::internal(
            "encoding the create request",
            e,
        ))
    })?;
    Ok([(create::EXTENSION.to_string(), raw)].into())
}

/// The request a container was created from; for one created by another
/// front end (or whose record lost it), one that says the same.
pub(crate) fn body_of(c: &silo_engine::Container) -> ContainerCreateBody {
    c.extension(create::EXTENSION)
        .unwrap_or_else(|| inspect::synthesize(c))
}

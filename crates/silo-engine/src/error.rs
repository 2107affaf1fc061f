//! The engine's errors, by what went wrong rather than by any protocol's
//! status codes: each front end maps them to its own (the Docker API to
//! HTTP statuses, the CRI to gRPC codes).

use std::fmt;

/// What kind of object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Image,
    Volume,
    Exec,
    Pod,
    Network,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Volume => "volume",
            Kind::Exec => "exec instance",
            Kind::Pod => "pod",
            Kind::Network => "network",
        }
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no such object.
    #[error("No such {}: {id}", kind.name())]
    NotFound { kind: Kind, id: String },
    /// The object's state does not allow the operation (it is running, the
    /// name is taken, it is in use).
    #[error("{0}")]
    Conflict(String),
    /// The request is wrong; `field` names what was (in the engine's terms,
    /// or a front end's when it made the error).
    #[error("{message}")]
    InvalidArgument { field: String, message: String },
    /// Something the operation needs is missing from this host or daemon
    /// (a helper binary, a kernel feature); saying how to get it.
    #[error("{0}")]
    Unavailable(String),
    /// The container's or exec's own command could not be run: `code` is
    /// the exit code a shell gives it (127 not found, 126 not executable).
    #[error("{message}")]
    CommandFailed { code: i64, message: String },
    /// A registry refused or failed a pull, push or login.
    #[error("{message}")]
    Registry {
        failure: RegistryFailure,
        message: String,
    },
    /// The engine failed: `context` says what it was doing.
    #[error("{context}: {source}")]
    Internal {
        context: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Tearing something down failed at one or more steps; every step ran.
    #[error(transparent)]
    Teardown(#[from] TeardownError),
}

impl Error {
    pub fn not_found(kind: Kind, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict(message.into())
    }

    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// How a registry operation failed, for front ends' status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFailure {
    /// No such repository, tag, manifest or blob (or none for the platform).
    NotFound,
    /// Credentials are needed or were wrong.
    Unauthorized,
    /// The credentials do not allow it.
    Denied,
    /// Anything else: the registry's error or an unreachable registry.
    Failed,
}

/// Shorthand for engine results.
pub type Result<T> = std::result::Result<T, Error>;

/// One step of a container's life that teardown undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The runtime's record and whatever of the container still runs.
    Runtime,
    /// The network attachment and the pinned network namespace.
    Network,
    /// The container's filesystem (snapshot).
    Snapshot,
    /// Anonymous volumes made for it.
    Volumes,
    /// Its directory (bundle, logs, /etc files) and the exec-root link.
    Files,
    /// Its record in the store.
    Record,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Runtime => "runtime state",
            Step::Network => "network",
            Step::Snapshot => "filesystem",
            Step::Volumes => "anonymous volumes",
            Step::Files => "files",
            Step::Record => "record",
        }
    }
}

/// Teardown failed at these steps (the others were done).
#[derive(Debug)]
pub struct TeardownError {
    pub id: String,
    pub failures: Vec<(Step, String)>,
}

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tearing down {}: ", self.id)?;
        for (i, (step, e)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {e}", step.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for TeardownError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_was_wrong() {
        assert_eq!(
            Error::not_found(Kind::Container, "web").to_string(),
            "No such container: web"
        );
        assert_eq!(
            Error::not_found(Kind::Exec, "e1").to_string(),
            "No such exec instance: e1"
        );
        let e = Error::invalid("process.user", "unable to find user bob");
        assert!(matches!(&e, Error::InvalidArgument { field, .. } if field == "process.user"));
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = Error::internal("writing /x", io);
        assert!(e.to_string().starts_with("writing /x: "), "{e}");
        let t = TeardownError {
            id: "c1".into(),
            failures: vec![(Step::Network, "busy".into()), (Step::Files, "EIO".into())],
        };
        assert_eq!(
            Error::from(t).to_string(),
            "tearing down c1: network: busy; files: EIO"
        );
    }
}

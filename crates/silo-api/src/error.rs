//! The error every handler returns, rendered in Docker's shape
//! (`{"message": "..."}`; 304 with no body). This is where the engine's
//! and the adapter's errors get their HTTP status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The Docker adapter (or the engine under it) refused or failed it.
    #[error(transparent)]
    Docker(#[from] silo_docker::Error),
    /// The request itself was wrong (query parameter, JSON body).
    #[error("{0}")]
    BadRequest(String),
    /// The daemon failed outside the engine (a task died, a socket broke).
    #[error("{0}")]
    Internal(String),
    /// A feature the daemon does not offer (yet).
    #[error("{0}")]
    NotImplemented(String),
    /// No such endpoint.
    #[error("{0}")]
    NotFound(String),
    /// Not available on this daemon (swarm: silod is never a manager).
    #[error("{0}")]
    Unavailable(String),
}

impl From<silo_engine::Error> for ApiError {
    fn from(e: silo_engine::Error) -> ApiError {
        ApiError::Docker(e.into())
    }
}

/// The HTTP status Docker uses for an engine error.
fn engine_status(e: &silo_engine::Error) -> u16 {
    use silo_engine::Error as E;
    match e {
        E::NotFound { .. } => 404,
        E::Conflict(_) => 409,
        E::InvalidArgument { .. } | E::CommandFailed { .. } => 400,
        E::Unavailable(_) => 503,
        E::Internal { .. } | E::Teardown(_) => 500,
        E::Registry { failure, .. } => match failure {
            silo_engine::RegistryFailure::NotFound => 404,
            silo_engine::RegistryFailure::Unauthorized => 401,
            silo_engine::RegistryFailure::Denied => 403,
            silo_engine::RegistryFailure::Failed => 500,
        },
    }
}

impl ApiError {
    /// The HTTP status code Docker uses for this error.
    pub fn status(&self) -> StatusCode {
        use silo_docker::Error as D;
        let code = match self {
            ApiError::Docker(D::Engine(e)) => engine_status(e),
            ApiError::Docker(D::NotModified(_)) => 304,
            ApiError::Docker(D::NotImplemented(_)) | ApiError::NotImplemented(_) => 501,
            ApiError::Docker(D::NotFound(_)) | ApiError::NotFound(_) => 404,
            ApiError::BadRequest(_) => 400,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The message, in the words Docker's clients expect.
    pub fn message(&self) -> String {
        match self {
            ApiError::Docker(e) => e.docker_message(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        (
            status,
            Json(serde_json::json!({ "message": self.message() })),
        )
            .into_response()
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use silo_engine::{Error as E, Kind};

    #[test]
    fn statuses_are_dockers() {
        let s = |e: ApiError| e.status().as_u16();
        assert_eq!(s(E::not_found(Kind::Container, "x").into()), 404);
        assert_eq!(s(E::conflict("running").into()), 409);
        assert_eq!(s(E::invalid("HostConfig.Memory", "too small").into()), 400);
        assert_eq!(s(E::internal("x", std::io::Error::other("y")).into()), 500);
        assert_eq!(
            s(ApiError::Docker(silo_docker::Error::NotModified("".into()))),
            304
        );
        let v: ApiError = E::not_found(Kind::Volume, "v1").into();
        assert_eq!(v.message(), "get v1: no such volume");
    }
}

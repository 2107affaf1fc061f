//! The error every handler returns, rendered in Docker's shape
//! (`{"message": "..."}` with the engine's status code; 304 with no body).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use silo_engine::EngineError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The engine refused or failed the operation.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request itself was wrong (query parameter, JSON body).
    #[error("{0}")]
    BadRequest(String),
    /// The daemon failed outside the engine (a task died, a socket broke).
    #[error("{0}")]
    Internal(String),
    /// A feature the daemon does not offer (yet).
    #[error("{0}")]
    NotImplemented(String),
}

impl ApiError {
    /// The HTTP status code Docker uses for this error.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ApiError::Engine(e) => e.status(),
            ApiError::BadRequest(_) => 400,
            ApiError::Internal(_) => 500,
            ApiError::NotImplemented(_) => 501,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
            Json(serde_json::json!({ "message": self.to_string() })),
        )
            .into_response()
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

//! Exec endpoints: create, start (hijacked like attach, or detached),
//! inspect, resize.

use crate::containers::size_args;
use crate::error::ApiResult;
use crate::hijack::hijack;
use crate::params::{json_body, Params};
use crate::stream::blocking;
use crate::Shared;
use axum::body::to_bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::{ExecConfig, ExecStartConfig};

pub async fn create(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let config: ExecConfig = json_body(&body, "exec create", false)?;
    let created = blocking(move || engine.exec_create(&id, config)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn start(
    State(engine): State<Shared>,
    Path(exec_id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.map_err(|e| {
        crate::error::ApiError::BadRequest(format!("exec start: reading the body: {e}"))
    })?;
    let config: ExecStartConfig = json_body(&bytes, "exec start", true)?;
    let detach = config.detach.unwrap_or(false);
    let tty = config.tty.unwrap_or(false);
    if !detach && crate::hijack::wants_upgrade(&parts.headers) {
        // Checked before the 101, so a missing or used exec is a plain error.
        let (e2, x2) = (engine.clone(), exec_id.clone());
        let exec_tty = blocking(move || e2.exec_startable(&x2)).await?;
        let req = Request::from_parts(parts, axum::body::Body::empty());
        return Ok(crate::hijack::upgrade_then(
            req,
            tty || exec_tty,
            move || {
                engine.exec_start(&exec_id, false, tty)?.ok_or_else(|| {
                    silo_engine::Error::internal(
                        "exec start",
                        std::io::Error::other("an attached exec came without a stream"),
                    )
                    .into()
                })
            },
        ));
    }
    let stream = blocking(move || engine.exec_start(&exec_id, detach, tty)).await?;
    match stream {
        None => Ok(StatusCode::OK.into_response()),
        Some(stream) => {
            let req = Request::from_parts(parts, axum::body::Body::empty());
            Ok(hijack(req, stream))
        }
    }
}

pub async fn inspect(
    State(engine): State<Shared>,
    Path(exec_id): Path<String>,
) -> ApiResult<Response> {
    let doc = blocking(move || engine.exec_inspect(&exec_id)).await?;
    Ok(Json(doc).into_response())
}

pub async fn resize(
    State(engine): State<Shared>,
    Path(exec_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let (h, w) = size_args(&params)?;
    blocking(move || engine.exec_resize(&exec_id, h, w)).await?;
    Ok(StatusCode::OK.into_response())
}

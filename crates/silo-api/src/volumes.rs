//! Volume endpoints: create, list, inspect, remove, prune.

use crate::error::ApiResult;
use crate::params::{json_body, Params};
use crate::stream::blocking;
use crate::Shared;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::VolumeCreateRequest;

pub async fn create(State(engine): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let req: VolumeCreateRequest = json_body(&body, "volume create", true)?;
    let vol = blocking(move || engine.volume_create(req)).await?;
    Ok((StatusCode::CREATED, Json(vol)).into_response())
}

pub async fn list(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let list = blocking(move || engine.volumes(&filters)).await?;
    Ok(Json(list).into_response())
}

pub async fn inspect(
    State(engine): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let vol = blocking(move || engine.volume_inspect(&name)).await?;
    Ok(Json(vol).into_response())
}

pub async fn remove(
    State(engine): State<Shared>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let force = params.flag("force", false)?;
    blocking(move || engine.volume_remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let report = blocking(move || engine.prune_volumes(&filters)).await?;
    Ok(Json(report).into_response())
}

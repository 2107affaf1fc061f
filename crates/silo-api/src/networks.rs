//! Network endpoints: `/networks` list, inspect, create, remove, prune,
//! and connect and disconnect (running containers change interfaces live).

use crate::error::ApiResult;
use crate::params::{json_body, Params};
use crate::stream::blocking;
use crate::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub async fn list(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let v = blocking(move || engine.networks(&filters)).await?;
    Ok(Json(v).into_response())
}

pub async fn inspect(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let v = blocking(move || engine.network_inspect(&id)).await?;
    Ok(Json(v).into_response())
}

pub async fn create(State(engine): State<Shared>, body: axum::body::Bytes) -> ApiResult<Response> {
    let mut req: bollard_stubs::models::NetworkCreateRequest =
        json_body(&body, "network create", false)?;
    // EnableIPv6 in any key case (the docker CLI's forgiveness), never
    // dropped by an exact-case decoder.
    let raw: serde_json::Value = json_body(&body, "network create", false)?;
    if let Some(v) = raw
        .as_object()
        .into_iter()
        .flatten()
        .find_map(|(k, v)| k.eq_ignore_ascii_case("EnableIPv6").then(|| v.as_bool()))
        .flatten()
    {
        req.enable_ipv6 = Some(v);
    }
    let v = blocking(move || engine.network_create(&req)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn remove(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    blocking(move || engine.network_remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(State(engine): State<Shared>) -> ApiResult<Response> {
    let v = blocking(move || engine.network_prune()).await?;
    Ok(Json(v).into_response())
}

pub async fn connect(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: bollard_stubs::models::NetworkConnectRequest =
        json_body(&body, "network connect", false)?;
    blocking(move || engine.network_connect(&id, &req)).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn disconnect(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: bollard_stubs::models::NetworkDisconnectRequest =
        json_body(&body, "network disconnect", false)?;
    blocking(move || engine.network_disconnect(&id, &req)).await?;
    Ok(StatusCode::OK.into_response())
}

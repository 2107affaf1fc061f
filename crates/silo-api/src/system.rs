//! System endpoints: ping, version, info, events, disk usage, and silo's
//! HCS views.

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream::{blocking, channel_body};
use crate::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub async fn ping() -> Response {
    let mut resp = Response::new(Body::from("OK"));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // The classic builder ("1"), so the docker CLI sends POST /build.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    resp
}

pub async fn version(State(engine): State<Shared>) -> ApiResult<Response> {
    let v = blocking(move || Ok(engine.version())).await?;
    Ok(Json(v).into_response())
}

pub async fn info(State(engine): State<Shared>) -> ApiResult<Response> {
    let info = blocking(move || engine.info()).await?;
    Ok(Json(info).into_response())
}

pub async fn system_df(State(engine): State<Shared>) -> ApiResult<Response> {
    let df = blocking(move || engine.system_df()).await?;
    let value = serde_json::to_value(&df)
        .map_err(|e| ApiError::Internal(format!("encoding disk usage: {e}")))?;
    Ok(Json(legacy_df(value)).into_response())
}

/// API 1.45 clients read `LayersSize`, `Images`, `Containers`, `Volumes`
/// and `BuildCache`; newer engines send `*Usage` objects with `Items`.
/// Both shapes are sent.
pub fn legacy_df(mut value: serde_json::Value) -> serde_json::Value {
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    let items = |obj: &serde_json::Map<String, serde_json::Value>, key: &str| {
        obj.get(key)
            .and_then(|u| u.get("Items"))
            .cloned()
            .unwrap_or_else(|| serde_json::json!([]))
    };
    for (legacy, usage) in [
        ("Images", "ImageUsage"),
        ("Containers", "ContainerUsage"),
        ("Volumes", "VolumeUsage"),
        ("BuildCache", "BuildCacheUsage"),
    ] {
        if !obj.contains_key(legacy) {
            let list = items(obj, usage);
            obj.insert(legacy.to_string(), list);
        }
    }
    if !obj.contains_key("LayersSize") {
        let size = obj
            .get("ImageUsage")
            .and_then(|u| u.get("TotalSize"))
            .cloned()
            .unwrap_or_else(|| serde_json::json!(0));
        obj.insert("LayersSize".to_string(), size);
    }
    value
}

/// How long the events stream may wait for the next event: at most
/// `tick`, and no later than `until`; None once `until` has passed.
fn events_wait(until: Option<SystemTime>, now: SystemTime, tick: Duration) -> Option<Duration> {
    match until {
        None => Some(tick),
        Some(u) => match u.duration_since(now) {
            Ok(left) if !left.is_zero() => Some(left.min(tick)),
            _ => None,
        },
    }
}

/// Streams events as JSON lines; the connection stays open until `until`
/// passes (as in Docker, also when no event comes after it) or the client
/// leaves.
pub async fn events(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let since = params.timestamp("since")?.map(|t| t as i64);
    let until_f = params.timestamp("until")?;
    let until = until_f.map(|t| t as i64);
    let deadline = until_f.map(|t| UNIX_EPOCH + Duration::try_from_secs_f64(t).unwrap_or_default());
    let rx = blocking(move || Ok(engine.events(since, until, &filters))).await?;
    let (tx, body) = channel_body(64);
    tokio::task::spawn_blocking(move || loop {
        let got = match events_wait(deadline, SystemTime::now(), Duration::from_millis(500)) {
            Some(wait) => rx.recv_timeout(wait),
            // Past `until`: what is already queued, then the end.
            None => rx.try_recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(event) => {
                let mut line = match serde_json::to_vec(&event) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "event not serializable");
                        continue;
                    }
                };
                line.push(b'\n');
                if tx.blocking_send(Ok(Bytes::from(line))).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if tx.is_closed() {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

pub async fn hcs_list(State(engine): State<Shared>) -> ApiResult<Response> {
    let list = blocking(move || engine.hcs_list()).await?;
    Ok(Json(list).into_response())
}

pub async fn hcs_inspect(
    State(engine): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let doc = blocking(move || engine.hcs_inspect(&id)).await?;
    Ok(Json(doc).into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("page not found".to_string())
}

/// `POST /silo/sandbox/{id}/attach?path=DIR`.
pub async fn sandbox_attach(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: crate::params::Params,
) -> ApiResult<Response> {
    let path = params.required("path")?.to_string();
    blocking(move || engine.sandbox_attach(&id, &path)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /silo/sandbox/detach?path=DIR`.
pub async fn sandbox_detach(
    State(engine): State<Shared>,
    params: crate::params::Params,
) -> ApiResult<Response> {
    let path = params.required("path")?.to_string();
    blocking(move || engine.sandbox_detach(&path)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `GET /silo/sandbox/{id}/export?format=raw|vhdx|qcow2`: the disk image.
pub async fn sandbox_export(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: crate::params::Params,
) -> ApiResult<Response> {
    let format = params.non_empty("format").unwrap_or("raw").to_string();
    {
        let (engine, id, format) = (engine.clone(), id.clone(), format.clone());
        blocking(move || engine.sandbox_check(&id, &format)).await?;
    }
    let body = crate::containers::tar_stream(move |out| engine.sandbox_export(&id, &format, out));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// `GET /hns/{networks|endpoints|policies}`.
pub async fn hns_list(
    State(engine): State<Shared>,
    Path(what): Path<String>,
) -> ApiResult<Response> {
    let v = blocking(move || engine.hns_list(&what)).await?;
    Ok(Json(v).into_response())
}

/// `GET /hns/{networks|endpoints}/{id}`.
pub async fn hns_inspect(
    State(engine): State<Shared>,
    Path((what, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = blocking(move || engine.hns_inspect(&what, &id)).await?;
    Ok(Json(v).into_response())
}

/// `POST /hns/{endpoints|networks}/{id}/{policies|remote-endpoints|remote-subnets}`.
pub async fn hns_add(
    State(engine): State<Shared>,
    Path((what, id, sub)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let v = blocking(move || engine.hns_add(&what, &id, &sub, &body)).await?;
    Ok((axum::http::StatusCode::CREATED, Json(v)).into_response())
}

/// `DELETE /hns/{endpoints|networks}/{id}/{sub}/{item}`.
pub async fn hns_remove(
    State(engine): State<Shared>,
    Path((what, id, sub, item)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    blocking(move || engine.hns_remove(&what, &id, &sub, &item)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::events_wait;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_events_stream_ends_at_until() {
        let tick = Duration::from_millis(500);
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(events_wait(None, now, tick), Some(tick));
        let soon = now + Duration::from_millis(200);
        assert_eq!(
            events_wait(Some(soon), now, tick),
            Some(Duration::from_millis(200))
        );
        assert_eq!(events_wait(Some(now + tick * 4), now, tick), Some(tick));
        assert_eq!(events_wait(Some(now), now, tick), None);
        assert_eq!(events_wait(Some(now - tick), now, tick), None);
    }

    #[test]
    fn df_gets_the_legacy_shape() {
        let v = super::legacy_df(serde_json::json!({
            "ImageUsage": {"TotalSize": 42, "Items": [{"Id": "sha256:x"}]},
            "ContainerUsage": {"Items": []},
        }));
        assert_eq!(v["LayersSize"], 42);
        assert_eq!(v["Images"][0]["Id"], "sha256:x");
        assert_eq!(v["Containers"], serde_json::json!([]));
        assert_eq!(v["Volumes"], serde_json::json!([]));
        assert_eq!(v["BuildCache"], serde_json::json!([]));
        assert_eq!(v["ImageUsage"]["TotalSize"], 42);
    }
}

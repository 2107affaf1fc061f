//! Container endpoints: create, list, inspect, lifecycle, wait, remove,
//! rename, update, logs, attach, resize, top, stats, archive, export, prune.

use crate::error::{ApiError, ApiResult};
use crate::hijack::{hijack, MULTIPLEXED_STREAM, RAW_STREAM};
use crate::params::{base64, json_body, Params};
use crate::stream::{blocking, channel_body, frame, ChannelWriter, Chunk};
use crate::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::{
    ContainerCreateBody, ContainerStatsResponse, ContainerUpdateBody, ContainerWaitExitError,
    ContainerWaitResponse,
};
use silo_engine::{LogOptions, WaitCondition};
use std::io::Write;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn create(
    State(engine): State<Shared>,
    params: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let name = params.non_empty("name").map(str::to_string);
    let mut spec: ContainerCreateBody = json_body(&body, "container create", false)?;
    // API < 1.44 sends the MAC address at the top level, a field the
    // request type no longer has: moved to the endpoint, never dropped.
    let raw: serde_json::Value = json_body(&body, "container create", false)?;
    let mac = raw.as_object().into_iter().flatten().find_map(|(k, v)| {
        k.eq_ignore_ascii_case("MacAddress")
            .then(|| v.as_str().map(str::to_string))
            .flatten()
    });
    if let Some(mac) = mac.filter(|m| !m.is_empty()) {
        silo_docker::legacy_mac_address(&mut spec, &mac);
    }
    let created = blocking(move || engine.create_container(name.as_deref(), spec)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn list(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let all = params.flag("all", false)?;
    let limit = params
        .number::<i64>("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let size = params.flag("size", false)?;
    let filters = params.filters()?;
    let list = blocking(move || engine.list(all, limit, size, &filters)).await?;
    Ok(Json(list).into_response())
}

pub async fn inspect(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let size = params.flag("size", false)?;
    let doc = blocking(move || engine.inspect_document(&id, size)).await?;
    Ok(Json(doc).into_response())
}

pub async fn start(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    blocking(move || engine.start(&id)).await?;
    Ok(no_content())
}

fn stop_args(params: &Params) -> ApiResult<(Option<String>, Option<i64>)> {
    let signal = params.non_empty("signal").map(str::to_string);
    let timeout = params.number::<i64>("t")?;
    Ok((signal, timeout))
}

pub async fn stop(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let (signal, timeout) = stop_args(&params)?;
    blocking(move || engine.stop(&id, signal.as_deref(), timeout)).await?;
    Ok(no_content())
}

pub async fn restart(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let (signal, timeout) = stop_args(&params)?;
    blocking(move || engine.restart(&id, signal.as_deref(), timeout)).await?;
    Ok(no_content())
}

pub async fn kill(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let signal = params.non_empty("signal").map(str::to_string);
    blocking(move || engine.kill(&id, signal.as_deref())).await?;
    Ok(no_content())
}

pub async fn pause(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    blocking(move || engine.pause(&id)).await?;
    Ok(no_content())
}

pub async fn unpause(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    blocking(move || engine.unpause(&id)).await?;
    Ok(no_content())
}

fn wait_condition(params: &Params) -> ApiResult<WaitCondition> {
    match params.non_empty("condition") {
        None | Some("not-running") => Ok(WaitCondition::NotRunning),
        Some("next-exit") => Ok(WaitCondition::NextExit),
        Some("removed") => Ok(WaitCondition::Removed),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid condition {other:?}: expected not-running, next-exit or removed"
        ))),
    }
}

/// Headers go out at once (the CLI posts `wait` before `start` and waits
/// for them); the JSON body follows when the condition holds.
pub async fn wait(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let condition = wait_condition(&params)?;
    {
        // Unknown containers get a proper 404 before any header is sent.
        let (engine, id) = (engine.clone(), id.clone());
        blocking(move || engine.exists(&id)).await?;
    }
    let (tx, body) = channel_body(1);
    tokio::task::spawn_blocking(move || {
        let result = engine
            .wait(&id, condition)
            .unwrap_or_else(|e| ContainerWaitResponse {
                status_code: 125,
                error: Some(ContainerWaitExitError {
                    message: Some(e.to_string()),
                }),
            });
        let mut line = serde_json::to_vec(&result).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.blocking_send(Ok(Bytes::from(line)));
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

pub async fn remove(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let force = params.flag("force", false)?;
    let volumes = params.flag("v", false)?;
    if params.flag("link", false)? {
        return Err(ApiError::BadRequest(
            "removing links (link=true) is not supported".to_string(),
        ));
    }
    blocking(move || engine.remove(&id, force, volumes)).await?;
    Ok(no_content())
}

pub async fn rename(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let name = params.required("name")?.to_string();
    blocking(move || engine.rename(&id, &name)).await?;
    Ok(no_content())
}

pub async fn update(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let upd: ContainerUpdateBody = json_body(&body, "container update", false)?;
    let resp = blocking(move || engine.update(&id, upd)).await?;
    Ok(Json(resp).into_response())
}

fn stream_response(body: Body, tty: bool) -> Response {
    let mut resp = Response::new(body);
    let ct = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

pub async fn logs(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let tail = match params.non_empty("tail") {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!("invalid tail {n:?}: expected a number or \"all\""))
        })?),
    };
    let opts = LogOptions {
        follow: params.flag("follow", false)?,
        stdout: params.flag("stdout", false)?,
        stderr: params.flag("stderr", false)?,
        since: params.timestamp("since")?.unwrap_or(0.0),
        until: params.timestamp("until")?.unwrap_or(0.0),
        timestamps: params.flag("timestamps", false)?,
        tail: tail.map(|t| t.max(0) as usize),
    };
    let (tx, body) = channel_body(32);
    let (ready_tx, ready_rx) = oneshot::channel::<silo_docker::Result<bool>>();
    tokio::task::spawn_blocking(move || {
        let (tty, chunks) = match engine.logs(&id, opts) {
            Ok(x) => x,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let _ = ready_tx.send(Ok(tty));
        for chunk in chunks {
            let bytes = if tty {
                Bytes::from(chunk.bytes)
            } else {
                frame(chunk.stream, &chunk.bytes)
            };
            if tx.blocking_send(Ok(bytes)).is_err() {
                break;
            }
        }
    });
    let tty = ready_rx
        .await
        .map_err(|_| ApiError::Internal("the log reader stopped".to_string()))?
        .map_err(ApiError::Docker)?;
    Ok(stream_response(body, tty))
}

pub async fn attach(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
    req: Request,
) -> ApiResult<Response> {
    let o = silo_engine::AttachOptions {
        stdin: params.flag("stdin", false)?,
        stdout: params.flag("stdout", false)?,
        stderr: params.flag("stderr", false)?,
        logs: params.flag("logs", false)?,
        stream: params.flag("stream", false)?,
        detach_keys: silo_docker::detach_keys(params.non_empty("detachKeys").unwrap_or(""))
            .map_err(ApiError::Docker)?,
    };
    let stream = blocking(move || engine.attach(&id, o)).await?;
    Ok(hijack(req, stream))
}

pub(crate) fn size_args(params: &Params) -> ApiResult<(u16, u16)> {
    let h = params.number::<u16>("h")?.unwrap_or(0);
    let w = params.number::<u16>("w")?.unwrap_or(0);
    Ok((h, w))
}

pub async fn resize(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let (h, w) = size_args(&params)?;
    blocking(move || engine.resize(&id, h, w)).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn changes(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let changes = blocking(move || engine.changes(&id)).await?;
    Ok(Json(changes).into_response())
}

pub async fn top(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let ps_args = params.non_empty("ps_args").map(str::to_string);
    let top = blocking(move || engine.top(&id, ps_args.as_deref())).await?;
    Ok(Json(top).into_response())
}

fn stats_line(sample: &ContainerStatsResponse) -> Chunk {
    let mut line = serde_json::to_vec(sample).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

pub async fn stats(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let stream = params.flag("stream", true)?;
    let one_shot = params.flag("one-shot", false)?;
    let (mut samples, first) = blocking(move || {
        let mut samples = engine.stats(&id)?;
        let first = samples.sample()?;
        Ok((samples, first))
    })
    .await?;
    if !stream {
        let sample = if one_shot {
            first
        } else {
            // Like dockerd: a second sample a second later so CPU usage can be computed.
            blocking(move || {
                std::thread::sleep(Duration::from_secs(1));
                samples.sample()
            })
            .await?
        };
        return Ok(Json(sample).into_response());
    }
    let (tx, body): (mpsc::Sender<Chunk>, Body) = channel_body(2);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(stats_line(&first)).is_err() {
            return;
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if tx.is_closed() {
                break;
            }
            let Ok(sample) = samples.sample() else { break };
            if tx.blocking_send(stats_line(&sample)).is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

async fn path_stat(engine: Shared, id: String, path: String) -> ApiResult<HeaderValue> {
    let stat = blocking(move || engine.archive_stat(&id, &path)).await?;
    let json = serde_json::to_vec(&stat)
        .map_err(|e| ApiError::Internal(format!("encoding the path stat: {e}")))?;
    HeaderValue::from_str(&base64(&json))
        .map_err(|e| ApiError::Internal(format!("path stat header: {e}")))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

pub async fn archive_head(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let path = params.required("path")?.to_string();
    let stat = path_stat(engine, id, path).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(STAT_HEADER, stat);
    Ok(resp)
}

/// Runs `produce` on the blocking pool writing into a streaming body.
pub(crate) fn tar_stream<F>(produce: F) -> Body
where
    F: FnOnce(&mut dyn Write) -> silo_docker::Result<()> + Send + 'static,
{
    let (tx, body) = channel_body(8);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter::new(tx);
        let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, writer);
        let result = produce(&mut buffered);
        let flushed = buffered.flush();
        if let Ok(writer) = buffered.into_inner() {
            if let Err(e) = result {
                writer.fail(e.to_string());
            } else if let Err(e) = flushed {
                writer.fail(e.to_string());
            }
        }
    });
    body
}

pub(crate) fn tar_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    resp
}

pub async fn archive_get(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let path = params.required("path")?.to_string();
    let stat = path_stat(engine.clone(), id.clone(), path.clone()).await?;
    let body = tar_stream(move |out| engine.archive_get(&id, &path, out));
    let mut resp = tar_response(body);
    resp.headers_mut().insert(STAT_HEADER, stat);
    Ok(resp)
}

pub async fn archive_put(
    State(engine): State<Shared>,
    Path(id): Path<String>,
    params: Params,
    req: Request,
) -> ApiResult<Response> {
    let path = params.required("path")?.to_string();
    let mut reader = crate::stream::feed_reader(req.into_body());
    blocking(move || {
        let done = engine.archive_put(&id, &path, &mut reader);
        reader.drain(crate::stream::DRAIN_LIMIT);
        done
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn export(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    {
        let (engine, id) = (engine.clone(), id.clone());
        blocking(move || engine.exists(&id)).await?;
    }
    let body = tar_stream(move |out| engine.export(&id, out));
    Ok(tar_response(body))
}

pub async fn prune(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let report = blocking(move || engine.prune_containers(&filters)).await?;
    Ok(Json(report).into_response())
}

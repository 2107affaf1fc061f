//! Image endpoints: pull and import (`POST /images/create`), push, list,
//! inspect, tag, remove, prune, and the registry's `/auth` and
//! `/distribution/{name}/json`.

use crate::error::{ApiError, ApiResult};
use crate::params::{split_repo_tag, Params};
use crate::stream::{blocking, feed_reader, progress_stream};
use crate::Shared;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The credentials in `X-Registry-Auth`, if any.
fn credentials(headers: &HeaderMap) -> ApiResult<Option<silo_engine::Credentials>> {
    let h = headers
        .get("x-registry-auth")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("X-Registry-Auth is not ASCII".to_string()))
        })
        .transpose()?;
    silo_docker::registry_auth(h).map_err(ApiError::Docker)
}

pub async fn create(
    State(engine): State<Shared>,
    params: Params,
    req: Request,
) -> ApiResult<Response> {
    if let Some(from) = params.non_empty("fromImage") {
        let reference =
            silo_docker::pull_reference(from, params.non_empty("tag")).map_err(ApiError::Docker)?;
        let platform = params.non_empty("platform").map(str::to_string);
        let creds = credentials(req.headers())?;
        return progress_stream(move |emit| {
            engine.pull(&reference, platform.as_deref(), creds, emit)
        })
        .await;
    }
    match params.non_empty("fromSrc") {
        Some("-") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "fromSrc {other:?}: importing from a URL is not supported, send the tarball in the body (fromSrc=-)"
            )))
        }
        None => {
            return Err(ApiError::BadRequest(
                "either fromSrc or fromImage is required".to_string(),
            ))
        }
    }
    // The CLI sends `repo=name:tag` with an empty `tag`.
    let (repo, tag) = match params.non_empty("repo") {
        None => (None, params.non_empty("tag").map(str::to_string)),
        Some(r) => {
            let (name, inline_tag) = split_repo_tag(r);
            let tag = params.non_empty("tag").or(inline_tag).map(str::to_string);
            (Some(name.to_string()), tag)
        }
    };
    let changes = params.all("changes");
    let message = params.non_empty("message").map(str::to_string);
    let mut reader = feed_reader(req.into_body());
    let id = blocking(move || {
        let done = engine.import_image(
            &mut reader,
            repo.as_deref(),
            tag.as_deref(),
            &changes,
            message.as_deref(),
        );
        reader.drain(crate::stream::DRAIN_LIMIT);
        done
    })
    .await?;
    let mut line = serde_json::to_vec(&serde_json::json!({ "status": id }))
        .map_err(|e| ApiError::Internal(format!("encoding the import status: {e}")))?;
    line.push(b'\n');
    let mut resp = Response::new(axum::body::Body::from(line));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

pub async fn list(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let all = params.flag("all", false)?;
    let filters = params.filters()?;
    let list = blocking(move || engine.images(all, &filters)).await?;
    Ok(Json(list).into_response())
}

pub async fn prune(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    let filters = params.filters()?;
    let report = blocking(move || engine.prune_images(&filters)).await?;
    Ok(Json(report).into_response())
}

/// `/images/{name}/json`, `/images/{name}/tag` and `DELETE /images/{name}`:
/// image names may contain '/', so the tail is matched here.
pub async fn by_name(
    State(engine): State<Shared>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Response> {
    if method == Method::DELETE {
        let force = params.flag("force", false)?;
        let noprune = params.flag("noprune", false)?;
        let deleted = blocking(move || engine.remove_image(&rest, force, noprune)).await?;
        return Ok(Json(deleted).into_response());
    }
    if method == Method::GET {
        if let Some(name) = rest.strip_suffix("/get") {
            return save(engine, vec![name.to_string()]).await;
        }
        if let Some(name) = rest.strip_suffix("/history") {
            let name = name.to_string();
            let doc = blocking(move || engine.history(&name)).await?;
            return Ok(Json(doc).into_response());
        }
        if let Some(name) = rest.strip_suffix("/json") {
            let name = name.to_string();
            let doc = blocking(move || engine.image_inspect_document(&name)).await?;
            return Ok(Json(doc).into_response());
        }
    }
    if method == Method::POST {
        if let Some(name) = rest.strip_suffix("/push") {
            let name = name.to_string();
            let tag = params.non_empty("tag").map(str::to_string);
            let creds = credentials(&headers)?;
            return progress_stream(move |emit| engine.push(&name, tag.as_deref(), creds, emit))
                .await;
        }
        if let Some(name) = rest.strip_suffix("/tag") {
            let name = name.to_string();
            let repo = params.required("repo")?;
            let (repo, inline_tag) = split_repo_tag(repo);
            let repo = repo.to_string();
            let tag = params.non_empty("tag").or(inline_tag).map(str::to_string);
            blocking(move || engine.tag_image(&name, &repo, tag.as_deref())).await?;
            return Ok(StatusCode::CREATED.into_response());
        }
    }
    Err(crate::system::not_found().await)
}

/// `POST /auth`: checks credentials with the registry (the client stores them).
pub async fn auth(State(engine): State<Shared>, body: axum::body::Bytes) -> ApiResult<Response> {
    let answer = blocking(move || engine.login(&body)).await?;
    Ok(Json(answer).into_response())
}

/// `GET /distribution/{name}/json`: the registry's descriptor and platforms.
pub async fn distribution(
    State(engine): State<Shared>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(name) = rest.strip_suffix("/json").map(str::to_string) else {
        return Err(crate::system::not_found().await);
    };
    let creds = credentials(&headers)?;
    let answer = blocking(move || engine.distribution(&name, creds)).await?;
    Ok(Json(answer).into_response())
}

/// `GET /images/get?names=…`: several images in one archive.
pub async fn get(State(engine): State<Shared>, params: Params) -> ApiResult<Response> {
    save(engine, params.all("names")).await
}

async fn save(engine: Shared, names: Vec<String>) -> ApiResult<Response> {
    let items = {
        let engine = engine.clone();
        blocking(move || engine.save_items(&names)).await?
    };
    let body = crate::containers::tar_stream(move |out| engine.save(&items, out));
    Ok(crate::containers::tar_response(body))
}

/// `POST /images/load`: an image archive in the body.
pub async fn load(State(engine): State<Shared>, req: Request) -> ApiResult<Response> {
    let mut reader = feed_reader(req.into_body());
    let lines = blocking(move || {
        let done = engine.load(&mut reader);
        reader.drain(crate::stream::DRAIN_LIMIT);
        done
    })
    .await?;
    // A stream (chunked), as dockerd answers: the SDK reads a body without
    // chunking as one JSON document.
    let chunks =
        futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(lines))]);
    let mut resp = Response::new(axum::body::Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `POST /commit?container=…`: a container's changes as a new image.
pub async fn commit(
    State(engine): State<Shared>,
    params: Params,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let container = params.required("container")?.to_string();
    let (repo, inline_tag) = match params.non_empty("repo") {
        Some(r) => {
            let (name, t) = split_repo_tag(r);
            (Some(name.to_string()), t.map(str::to_string))
        }
        None => (None, None),
    };
    let tag = params.non_empty("tag").map(str::to_string).or(inline_tag);
    let comment = params.non_empty("comment").map(str::to_string);
    let author = params.non_empty("author").map(str::to_string);
    let pause = params.flag("pause", true)?;
    let changes = params.all("changes");
    let config: Option<bollard_stubs::models::ContainerConfig> =
        if body.iter().all(u8::is_ascii_whitespace) || &body[..] == b"null" {
            None
        } else {
            Some(crate::params::json_body(&body, "commit config", true)?)
        };
    let id = blocking(move || {
        engine.commit(
            &container,
            repo.as_deref(),
            tag.as_deref(),
            comment.as_deref(),
            author.as_deref(),
            pause,
            &changes,
            config,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "Id": id }))).into_response())
}

/// `POST /build`: a build from the tar context in the body, answered with
/// Docker's JSON stream (an error before the first line is an HTTP status).
pub async fn build(
    State(engine): State<Shared>,
    params: Params,
    req: Request,
) -> ApiResult<Response> {
    let mut reader = feed_reader(req.into_body());
    let query = params.0.clone();
    progress_stream(move |emit| {
        let done = engine.build(&query, &mut reader, emit);
        reader.drain(crate::stream::DRAIN_LIMIT);
        done
    })
    .await
}

/// `POST /build/prune`.
pub async fn build_prune(State(engine): State<Shared>) -> ApiResult<Response> {
    let v = blocking(move || engine.build_prune()).await?;
    Ok(Json(v).into_response())
}

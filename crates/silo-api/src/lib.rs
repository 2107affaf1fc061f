//! The Docker Engine API (the subset the docker CLI uses) over HTTP/1.1 on
//! a unix socket: the front end. Requests are answered by the Docker
//! adapter (`silo_docker::Docker`, blocking) from the blocking pool; this
//! crate owns HTTP: routes, parameters, status codes, streams and hijacked
//! connections. Paths work with or without a `/v1.xx` prefix; every
//! response carries `Api-Version`.

mod containers;
mod error;
mod exec;
mod fold;
pub mod hijack;
mod images;
mod networks;
mod params;
pub mod stream;
mod system;
mod volumes;

pub use error::{ApiError, ApiResult};
pub use params::{parse_bool, parse_filters};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Uri};
use axum::routing::{get, head, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use silo_docker::Docker;
use std::convert::Infallible;
use std::future::Future;
use tokio::net::UnixListener;
use tower::ServiceExt;

pub use silo_docker::{API_VERSION, MIN_API_VERSION};

/// The Docker front end shared by every handler.
pub(crate) type Shared = Docker;

/// Every route of the API (paths without the version prefix).
pub fn router(engine: Docker) -> Router {
    Router::new()
        // system
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/auth", post(images::auth))
        .route("/commit", post(images::commit))
        .route("/distribution/{*rest}", get(images::distribution))
        .route("/events", get(system::events))
        .route("/system/df", get(system::system_df))
        // containers
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/changes", get(containers::changes))
        .route("/containers/{id}/stats", get(containers::stats))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get)
                .merge(head(containers::archive_head))
                .put(containers::archive_put),
        )
        .route("/containers/{id}/export", get(containers::export))
        .route("/containers/{id}/exec", post(exec::create))
        // exec
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        // images
        .route("/images/create", post(images::create))
        .route("/images/json", get(images::list))
        .route("/images/prune", post(images::prune))
        .route("/images/get", get(images::get))
        .route("/images/load", post(images::load))
        .route("/build", post(images::build))
        .route("/build/prune", post(images::build_prune))
        .route(
            "/images/{*rest}",
            get(images::by_name)
                .post(images::by_name)
                .delete(images::by_name),
        )
        // networks
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        // volumes
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        // silo extensions
        .route("/silo/hcs", get(system::hcs_list))
        .route("/silo/hcs/{id}", get(system::hcs_inspect))
        .route("/hns/{what}", get(system::hns_list))
        .route("/hns/{what}/{id}", get(system::hns_inspect))
        .route("/hns/{what}/{id}/{sub}", post(system::hns_add))
        .route(
            "/hns/{what}/{id}/{sub}/{item}",
            axum::routing::delete(system::hns_remove),
        )
        .route("/silo/sandbox/detach", post(system::sandbox_detach))
        .route("/silo/sandbox/{id}/attach", post(system::sandbox_attach))
        .route("/silo/sandbox/{id}/export", get(system::sandbox_export))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::not_found)
        .with_state(engine)
}

/// Strips a leading `/v<major>.<minor>` segment from a path.
pub fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    let is_version = !version.is_empty()
        && version.contains('.')
        && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !is_version {
        return path;
    }
    if end == rest.len() {
        "/"
    } else {
        &rest[end..]
    }
}

fn rewrite_uri(uri: &Uri) -> Option<Uri> {
    let stripped = strip_version(uri.path());
    if stripped.len() == uri.path().len() {
        return None;
    }
    let pq = match uri.query() {
        Some(q) => format!("{stripped}?{q}"),
        None => stripped.to_string(),
    };
    pq.parse().ok()
}

/// (major, minor) of an API version such as "1.45".
fn api_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// dockerd's answer to a client whose API version is outside what we
/// serve; None when it is inside (or the path names none).
fn version_refused(path: &str) -> Option<String> {
    let stripped = strip_version(path);
    if stripped.len() == path.len() {
        return None;
    }
    let asked = path[2..path.len() - stripped.len()].trim_end_matches('/');
    let wanted = api_version(asked)?;
    if api_version(silo_docker::API_VERSION).is_some_and(|max| wanted > max) {
        return Some(format!(
            "client version {asked} is too new. Maximum supported API version is {}",
            silo_docker::API_VERSION
        ));
    }
    if api_version(silo_docker::MIN_API_VERSION).is_some_and(|min| wanted < min) {
        return Some(format!(
            "client version {asked} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            silo_docker::MIN_API_VERSION
        ));
    }
    None
}

/// Swarm's endpoints: silod is never a swarm manager, and says so the way
/// dockerd on a node outside a swarm does (503), which SDKs take as "no
/// swarm" and go on.
fn is_swarm_path(path: &str) -> bool {
    [
        "/swarm",
        "/services",
        "/nodes",
        "/tasks",
        "/secrets",
        "/configs",
    ]
    .iter()
    .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Routes one request: version prefix removed, Docker's headers added.
pub async fn handle(router: Router, req: Request<Body>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (mut parts, body) = req.into_parts();
    let refused = version_refused(parts.uri.path());
    if let Some(uri) = rewrite_uri(&parts.uri) {
        parts.uri = uri;
    }
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let req = Request::from_parts(parts, body);
    let started = std::time::Instant::now();
    let mut resp = if let Some(message) = refused {
        error::ApiError::BadRequest(message).into_response()
    } else if is_swarm_path(&path) {
        error::ApiError::Unavailable(
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
        )
        .into_response()
    } else {
        match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    tracing::debug!(
        %method,
        %path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("silod/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}

/// Serves the API on `listener` until `shutdown` completes; then stops
/// accepting and returns (connections still open are left to end with the
/// process; containers keep running).
pub async fn serve<F>(listener: UnixListener, engine: Docker, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    serve_app(listener, router(engine), shutdown).await
}

/// Serves any router the way [`serve`] does (version prefix stripped,
/// Docker's headers added, upgrades allowed).
pub async fn serve_app<F>(listener: UnixListener, app: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req.map(Body::new)).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped() {
        assert_eq!(strip_version("/v1.45/containers/json"), "/containers/json");
        assert_eq!(strip_version("/v1.24/_ping"), "/_ping");
        assert_eq!(strip_version("/containers/json"), "/containers/json");
        assert_eq!(strip_version("/volumes/v1.2"), "/volumes/v1.2");
        assert_eq!(strip_version("/vx/foo"), "/vx/foo");
        assert_eq!(strip_version("/v1.45"), "/");
        let uri: Uri = "/v1.50/images/json?all=1".parse().unwrap();
        assert_eq!(rewrite_uri(&uri).unwrap().to_string(), "/images/json?all=1");
        assert!(rewrite_uri(&"/info".parse().unwrap()).is_none());
    }
}

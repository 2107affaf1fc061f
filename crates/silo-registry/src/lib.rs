//! silo-registry: a blocking client for the OCI distribution API, enough to
//! pull and push images: manifests and indexes (OCI and Docker schema 2),
//! blobs with resume by HTTP range, monolithic uploads, token and basic
//! auth, insecure (HTTP) registries and pull mirrors.
//!
//! It knows nothing of where blobs go: callers pass a writer. One
//! [`Repository`] is one repository on one registry with its own token;
//! it is `Sync`, so layers download on several threads at once.
//!
//! Why not `oci-client`: it brings an async stack (reqwest, hyper, tower,
//! tokio) into what the store runs on blocking threads, it cannot resume a
//! blob from an offset, and it has no mirrors or HTTP fallback for insecure
//! registries. This crate is about 600 lines over `ureq`.

mod auth;

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use silo_oci::image::media;
use silo_oci::reference::{Reference, DOCKER_HUB};
use thiserror::Error;

pub use auth::Credentials;

/// The largest manifest or index accepted (registries cap them at 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Docker Hub's API host.
const HUB_API: &str = "registry-1.docker.io";

/// A registry operation failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{registry}: authentication required{}", detail(.message))]
    Unauthorized { registry: String, message: String },
    #[error("{registry}: access denied{}", detail(.message))]
    Denied { registry: String, message: String },
    #[error("{what} not found{}", detail(.message))]
    NotFound { what: String, message: String },
    #[error("{url}: registry answered {status}{}", detail(.message))]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {source}")]
    Transport { url: String, source: ureq::Error },
    #[error("{url}: reading the response: {source}")]
    Read { url: String, source: io::Error },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{what}: content has digest {actual}, expected {expected}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("writing {what}: {source}")]
    Sink { what: String, source: io::Error },
}

fn detail(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

impl RegistryError {
    /// Whether retrying may help (a dropped connection, a 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } | RegistryError::Read { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

type Response = ureq::http::Response<ureq::Body>;

/// Daemon-wide registry settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Registries reached over HTTP (or HTTPS without certificate checks):
    /// "host[:port]" or CIDR ranges ("10.0.0.0/8"). Loopback always is.
    pub insecure: Vec<String>,
    /// Mirrors for Docker Hub ("https://mirror.example" or "http://127.0.0.1:5001"),
    /// tried in order before Docker Hub for pulls.
    pub mirrors: Vec<String>,
    /// Mirrors of any registry by its host ("registry.k8s.io", "docker.io"),
    /// tried in order (after `mirrors` for Docker Hub) before it.
    pub host_mirrors: std::collections::BTreeMap<String, Vec<String>>,
}

impl Config {
    /// Whether `host` ("host[:port]") may be reached without TLS checks.
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = host_name(host);
        if name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            if entry == host || entry == name {
                return true;
            }
            match (entry.split_once('/'), name.parse::<IpAddr>()) {
                (Some((net, bits)), Ok(ip)) => in_cidr(ip, net, bits),
                _ => false,
            }
        })
    }
}

/// "host" of "host:port" (and of "[v6]:port").
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// One HTTP client for all registries.
pub struct Client {
    config: Config,
    secure: ureq::Agent,
    unverified: ureq::Agent,
    /// host → base URL that answered ("https://host" or "http://host").
    endpoints: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

fn agent(verify: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!verify)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(concat!("silo/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .max_redirects(5)
        .build()
        .into()
}

impl Client {
    pub fn new(config: Config) -> Client {
        Client {
            config,
            secure: agent(true),
            unverified: agent(false),
            endpoints: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The registry host a reference's domain is served from.
    fn api_host(domain: &str) -> &str {
        if domain == DOCKER_HUB {
            HUB_API
        } else {
            domain
        }
    }

    /// Opens repository `reference.path` on its registry, for pulling
    /// (`push` false) or pushing.
    pub fn repository(
        &self,
        reference: &Reference,
        credentials: Option<Credentials>,
        push: bool,
    ) -> Result<Repository<'_>> {
        let host = Self::api_host(&reference.domain).to_string();
        let base = self.endpoint(&host)?;
        Ok(Repository {
            client: self,
            registry: reference.domain.clone(),
            base,
            host,
            path: reference.path.clone(),
            auth: auth::Auth::new(credentials, &reference.path, push),
        })
    }

    /// Repositories to try for a pull: Docker Hub's mirrors first.
    pub fn pull_sources(
        &self,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Vec<Result<Repository<'_>>> {
        let mut out = Vec::new();
        let hub: &[String] = if reference.domain == DOCKER_HUB {
            &self.config.mirrors
        } else {
            &[]
        };
        let by_host = self
            .config
            .host_mirrors
            .get(&reference.domain)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        {
            for m in hub.iter().chain(by_host) {
                let base = m.trim_end_matches('/').to_string();
                let host = base
                    .split_once("://")
                    .map(|(_, h)| h)
                    .unwrap_or(&base)
                    .to_string();
                out.push(Ok(Repository {
                    client: self,
                    registry: host.clone(),
                    base,
                    host,
                    path: reference.path.clone(),
                    auth: auth::Auth::new(None, &reference.path, false),
                }));
            }
        }
        out.push(self.repository(reference, credentials, false));
        out
    }

    /// Checks credentials against a registry ("host[:port]", or a Docker
    /// Hub URL): GET /v2/ with the auth flow.
    pub fn login(&self, server: &str, credentials: Credentials) -> Result<()> {
        let domain = server_domain(server);
        let host = Self::api_host(&domain).to_string();
        let base = self.endpoint(&host)?;
        let repo = Repository {
            client: self,
            registry: domain,
            base,
            host,
            path: String::new(),
            auth: auth::Auth::new(Some(credentials), "", false),
        };
        let url = format!("{}/v2/", repo.base);
        let resp = repo.send(|a, h| authed(a.get(&url), h).call(), &url)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(repo.status_error(&url, resp, "registry"))
        }
    }

    fn agent_for(&self, host: &str) -> &ureq::Agent {
        if self.config.is_insecure(host) {
            &self.unverified
        } else {
            &self.secure
        }
    }

    /// The base URL for `host`: HTTPS, or for an insecure registry HTTPS
    /// (unchecked) falling back to HTTP. Remembered per host.
    fn endpoint(&self, host: &str) -> Result<String> {
        if let Some((_, b)) = self
            .endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(h, _)| h == host)
        {
            return Ok(b.clone());
        }
        let https = format!("https://{host}");
        if !self.config.is_insecure(host) {
            return Ok(https);
        }
        let http = format!("http://{host}");
        // Loopback registries are nearly always plain HTTP: try that first.
        let order = if self.config.is_insecure(host) && is_loopback(host) {
            [http.clone(), https.clone()]
        } else {
            [https.clone(), http.clone()]
        };
        let mut last = None;
        for base in order {
            let url = format!("{base}/v2/");
            match self.unverified.get(&url).call() {
                Ok(_) => {
                    self.endpoints
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((host.to_string(), base.clone()));
                    return Ok(base);
                }
                Err(e) => last = Some(RegistryError::Transport { url, source: e }),
            }
        }
        Err(last.unwrap_or(RegistryError::Protocol {
            url: host.to_string(),
            message: "no endpoint".to_string(),
        }))
    }
}

fn is_loopback(host: &str) -> bool {
    let n = host_name(host);
    n == "localhost" || n.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// "https://index.docker.io/v1/" and friends → "docker.io"; otherwise the
/// host[:port] of a URL or the string itself.
pub fn server_domain(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// A manifest or index as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// "sha256:…" of the bytes (checked against the registry's header and
    /// against the reference's digest when there was one).
    pub digest: String,
}

/// One repository on one registry.
pub struct Repository<'c> {
    client: &'c Client,
    /// The registry's name as users write it (for errors).
    registry: String,
    base: String,
    host: String,
    path: String,
    auth: auth::Auth,
}

impl std::fmt::Debug for Repository<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({}/v2/{})", self.base, self.path)
    }
}

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

use silo_oci::image::sha256_digest as sha256;

impl Repository<'_> {
    /// The registry (or mirror) host this talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn agent(&self) -> &ureq::Agent {
        self.client.agent_for(&self.host)
    }

    /// Sends a request built by `make`, running the auth flow on a 401 and
    /// retrying once with credentials or a token.
    fn send(
        &self,
        make: impl Fn(&ureq::Agent, Option<&str>) -> std::result::Result<Response, ureq::Error>,
        url: &str,
    ) -> Result<Response> {
        let agent = self.agent();
        let attempt = || {
            let header = self.auth.header();
            make(agent, header.as_deref()).map_err(|source| RegistryError::Transport {
                url: url.to_string(),
                source,
            })
        };
        let resp = attempt()?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let message = error_message(resp);
        if !self.auth.respond(&challenge, agent, &self.registry)? {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                message,
            });
        }
        attempt()
    }

    fn status_error(&self, url: &str, resp: Response, what: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let message = error_message(resp);
        match status {
            401 => RegistryError::Unauthorized {
                registry: self.registry.clone(),
                message,
            },
            403 => RegistryError::Denied {
                registry: self.registry.clone(),
                message,
            },
            404 => RegistryError::NotFound {
                what: what.to_string(),
                message,
            },
            _ => RegistryError::Status {
                url: url.to_string(),
                status,
                message,
            },
        }
    }

    /// Fetches a manifest or index by tag or digest.
    pub fn manifest(&self, reference: &str) -> Result<Fetched> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.path);
        let resp = self.send(
            |a, h| {
                authed(a.get(&url), h)
                    .header("Accept", ACCEPT_MANIFESTS)
                    .call()
            },
            &url,
        )?;
        if !resp.status().is_success() {
            let what = format!("manifest for {}/{}:{reference}", self.registry, self.path);
            return Err(self.status_error(&url, resp, &what));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = resp
            .into_body()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|source| RegistryError::Transport {
                url: url.clone(),
                source,
            })?;
        let digest = sha256(&bytes);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(e) = expected {
            if e != digest {
                return Err(RegistryError::Digest {
                    what: format!("manifest {}/{}:{reference}", self.registry, self.path),
                    expected: e,
                    actual: digest,
                });
            }
        }
        // The body's own mediaType wins over a generic Content-Type.
        let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            });
        let media_type = body_type
            .or(content_type)
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Downloads blob `digest` into `sink`, starting at byte `offset` (a
    /// range request; a registry that ignores the range is handled by
    /// skipping). `progress` gets the running byte count (offset included).
    /// Returns the bytes written to `sink`. The caller checks the digest.
    pub fn blob(
        &self,
        digest: &str,
        offset: u64,
        sink: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.path);
        let range = format!("bytes={offset}-");
        let resp = self.send(
            |a, h| {
                let req = authed(a.get(&url), h);
                if offset > 0 {
                    req.header("Range", &range).call()
                } else {
                    req.call()
                }
            },
            &url,
        )?;
        let status = resp.status().as_u16();
        if status != 200 && status != 206 {
            let what = format!("blob {digest} in {}/{}", self.registry, self.path);
            return Err(self.status_error(&url, resp, &what));
        }
        let mut skip = if status == 200 { offset } else { 0 };
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = offset;
        let mut written = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RegistryError::Read {
                        url: url.clone(),
                        source,
                    })
                }
            };
            let mut chunk = &buf[..n];
            if skip > 0 {
                let s = skip.min(n as u64) as usize;
                chunk = &chunk[s..];
                skip -= s as u64;
            }
            sink.write_all(chunk)
                .map_err(|source| RegistryError::Sink {
                    what: digest.to_string(),
                    source,
                })?;
            written += chunk.len() as u64;
            done += chunk.len() as u64;
            progress(done);
        }
        Ok(written)
    }

    /// Whether the registry has blob `digest` in this repository.
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.path);
        let resp = self.send(|a, h| authed(a.head(&url), h).call(), &url)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(&url, resp, "blob")),
        }
    }

    /// Uploads a blob of `size` bytes read from `body` (monolithic: one
    /// POST to open the upload, one PUT with the content and digest).
    pub fn upload_blob(&self, digest: &str, size: u64, body: &mut dyn Read) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.path);
        let resp = self.send(|a, h| authed(a.post(&url), h).send_empty(), &url)?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error(&url, resp, "upload"));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                url: url.clone(),
                message: "upload answered without a Location".to_string(),
            })?;
        let mut put = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str("digest=");
        put.push_str(digest);
        let len = size.to_string();
        // The body can be read once: no auth retry here (the POST above
        // already obtained the token).
        let resp = authed(self.agent().put(&put), self.auth.header().as_deref())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", &len)
            .send(ureq::SendBody::from_reader(body))
            .map_err(|source| RegistryError::Transport {
                url: put.clone(),
                source,
            })?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(&put, resp, "upload"));
        }
        Ok(())
    }

    /// Stores a manifest under `reference` (a tag or its digest).
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.path);
        let resp = self.send(
            |a, h| {
                authed(a.put(&url), h)
                    .header("Content-Type", media_type)
                    .send(bytes)
            },
            &url,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(&url, resp, "manifest"));
        }
        Ok(sha256(bytes))
    }
}

/// Adds the Authorization header, if there is one.
fn authed<B>(req: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(h) => req.header("Authorization", h),
        None => req,
    }
}

/// The registry's error message: the first `errors[].message` of a JSON
/// body, or the start of a text body.
fn error_message(resp: Response) -> String {
    let mut body = resp.into_body();
    let text = body
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<Err1>,
    }
    #[derive(serde::Deserialize)]
    struct Err1 {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errs>(&text) {
        if let Some(first) = e.errors.first() {
            return if first.message.is_empty() {
                first.code.clone()
            } else {
                first.message.clone()
            };
        }
    }
    text.trim().chars().take(200).collect()
}

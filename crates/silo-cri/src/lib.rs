//! The Kubernetes CRI v1: kubelet's RuntimeService and ImageService over
//! gRPC on a unix socket, translated onto the engine core (never through
//! the Docker adapter). The proto is upstream's `api.proto` (cri-api v1,
//! Apache-2.0, in `proto/` with its licence), compiled by protox.

#[cfg(feature = "client")]
pub mod client;
pub mod cni;
mod exec;
mod images;
mod runtime;
pub mod spdy;
mod spdy_stream;

pub mod streaming;
pub mod translate;
pub mod ws;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

use silo_engine::Engine;
use std::sync::Arc;
pub use tonic;
use tonic::Status;

/// The extension under which the CRI keeps its records with pods and containers.
pub const EXTENSION: &str = "cri";

/// The CRI front end.
#[derive(Clone)]
pub struct Cri {
    engine: Arc<Engine>,
    host: Arc<dyn translate::Host + Send + Sync>,
    /// None: pods always use silo's own network.
    cni: Option<Arc<cni::CniConfig>>,
    /// The streaming server's URLs.
    streams: Arc<streaming::Streams>,
    /// The image of the pause container of pods that share a PID namespace.
    pause_image: String,
    /// Pod names whose RunPodSandbox is under way.
    creating: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The pause image unless configured (what the kubelet of 1.28–1.30 uses).
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.9";

/// The largest Localhost seccomp profile read (Docker's default is 20 KiB).
const MAX_PROFILE: u64 = 1 << 20;

/// This host, for the translation.
pub struct RealHost {
    lower_oom: bool,
}

impl RealHost {
    pub fn new() -> RealHost {
        RealHost {
            lower_oom: has_cap_sys_resource(),
        }
    }
}

impl Default for RealHost {
    fn default() -> RealHost {
        RealHost::new()
    }
}

/// The capability's number (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has CAP_SYS_RESOURCE (a bit of CapEff).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

impl translate::Host for RealHost {
    fn device(&self, host: &str, inside: &str) -> Result<silo_oci::Device, String> {
        silo_engine::host_device(host, inside)
    }

    fn read_profile(&self, path: &str) -> Result<Vec<u8>, String> {
        if !path.starts_with('/') {
            return Err(format!(
                "seccomp profile {path:?}: a Localhost profile is an absolute path"
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("seccomp profile {path}: {e}"))?;
        if !meta.is_file() || meta.len() > MAX_PROFILE {
            return Err(format!(
                "seccomp profile {path}: want a regular file of at most {MAX_PROFILE} bytes"
            ));
        }
        std::fs::read(path).map_err(|e| format!("seccomp profile {path}: {e}"))
    }

    fn may_lower_oom_score(&self) -> bool {
        self.lower_oom
    }
}

impl Cri {
    /// `stream_addr` is where the streaming server listens (its URLs point there).
    pub fn new(
        engine: Arc<Engine>,
        cni: Option<cni::CniConfig>,
        stream_addr: std::net::SocketAddr,
    ) -> Cri {
        Cri {
            engine,
            host: Arc::new(RealHost::new()),
            cni: cni.map(Arc::new),
            streams: Arc::new(streaming::Streams::new(stream_addr)),
            pause_image: DEFAULT_PAUSE_IMAGE.to_string(),
            creating: Default::default(),
        }
    }

    /// The image of the pause container a pod with a shared PID namespace gets.
    pub fn with_pause_image(mut self, image: impl Into<String>) -> Cri {
        self.pause_image = image.into();
        self
    }
}

/// An engine error as a gRPC status.
pub(crate) fn status(e: silo_engine::Error) -> Status {
    use silo_engine::Error as E;
    let msg = e.to_string();
    match e {
        E::NotFound { .. } => Status::not_found(msg),
        E::InvalidArgument { .. } => Status::invalid_argument(msg),
        E::Conflict(_) => Status::failed_precondition(msg),
        E::Unavailable(_) => Status::unavailable(msg),
        E::Registry { failure, .. } => match failure {
            silo_engine::RegistryFailure::NotFound => Status::not_found(msg),
            silo_engine::RegistryFailure::Unauthorized => Status::unauthenticated(msg),
            silo_engine::RegistryFailure::Denied => Status::permission_denied(msg),
            silo_engine::RegistryFailure::Failed => Status::unavailable(msg),
        },
        E::CommandFailed { .. } | E::Internal { .. } | E::Teardown(_) => Status::internal(msg),
    }
}

/// Runs engine work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("the CRI worker failed: {e}")))?
}

impl Cri {
    /// The streaming server on `listener` (bound at the address given to
    /// [`Cri::new`]) until `shutdown`.
    pub fn serve_streams(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> impl std::future::Future<Output = ()> {
        streaming::serve(
            listener,
            self.engine.clone(),
            self.streams.clone(),
            shutdown,
        )
    }
}

/// Serves both services on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::UnixListener,
    cri: Cri,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(proto::runtime_service_server::RuntimeServiceServer::new(
            cri.clone(),
        ))
        .add_service(proto::image_service_server::ImageServiceServer::new(cri))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

//! `silod`: sets up the socket, pidfile and logging, opens the engine, and
//! serves the Docker Engine API until SIGTERM/SIGINT (containers keep
//! running: their monitors own them).

mod config;

use clap::Parser;
use config::{ConfigError, FileConfig, Flags, Settings};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("log level {level:?}: {message}")]
    LogLevel { level: String, message: String },
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing the stale socket {path}: {source}")]
    StaleSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listening on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setting permissions of {path}: {source}")]
    Chmod {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing pidfile {path}: {source}")]
    Pidfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("becoming a child subreaper: {0}")]
    Subreaper(std::io::Error),
    #[error("opening the engine (data root {path}): {source}")]
    Engine {
        path: PathBuf,
        source: silo_engine::Error,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
}

/// glibc arenas silod's allocations may spread over. The engine's work runs
/// on a pool of up to a few hundred blocking threads, and glibc gives busy
/// threads arenas of their own (up to 8 per core), which a burst of
/// concurrent requests leaves fragmented: RSS then grew by megabytes per
/// burst. Two arenas keep it flat at no measurable cost here.
const MALLOC_ARENAS: i32 = 2;

/// How often memory the allocator holds but nothing uses goes back to the
/// kernel (after a burst of requests the pool's threads exit, their
/// allocations are freed, and glibc would otherwise keep the pages).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn main() {
    // SAFETY: mallopt changes allocator tuning; called first thing, before
    // any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    let _ = std::thread::Builder::new()
        .name("trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_EVERY);
            // SAFETY: malloc_trim only returns free heap pages to the kernel.
            unsafe { libc::malloc_trim(0) };
        });
    let started = Instant::now();
    if let Err(e) = run(started) {
        eprintln!("silod: {e}");
        std::process::exit(1);
    }
}

fn init_logging(level: &str) -> Result<(), StartError> {
    // The gRPC stack logs every HTTP/2 frame at debug: not silod's story.
    let quiet = if level.contains('=') {
        level.to_string()
    } else {
        format!("{level},h2=info,tower=info,hyper_util=info,tonic=info")
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&quiet).map_err(|e| StartError::LogLevel {
            level: level.to_string(),
            message: e.to_string(),
        })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    Ok(())
}

fn settings() -> Result<Settings, StartError> {
    let flags = Flags::parse();
    let file = match &flags.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let exe = std::env::current_exe().map_err(ConfigError::CurrentExe)?;
    let bin_dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    Ok(config::merge(flags, file, &bin_dir)?)
}

fn create_dir(path: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Binds the socket: parent dir created, stale socket removed, mode 0660.
fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, StartError> {
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StartError::StaleSocket {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|source| StartError::Listen {
            path: path.to_path_buf(),
            source,
        })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        StartError::Chmod {
            path: path.to_path_buf(),
            source,
        }
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Listen {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(listener)
}

fn run(started: Instant) -> Result<(), StartError> {
    let s = settings()?;
    init_logging(&s.log_level)?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| StartError::Subreaper(e.into()))?;
    create_dir(&s.exec_root)?;
    create_dir(&s.data_root)?;
    let pidfile = s.exec_root.join("silod.pid");
    std::fs::write(&pidfile, format!("{}\n", std::process::id())).map_err(|source| {
        StartError::Pidfile {
            path: pidfile.clone(),
            source,
        }
    })?;

    let engine_started = Instant::now();
    let network_dir = s.data_root.join("network");
    let hns = std::sync::Arc::new(silo_network::Service::open(&network_dir).map_err(|e| {
        StartError::CreateDir {
            path: network_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?);
    let engine = silo_engine::Engine::open(
        silo_engine::Config {
            data_root: s.data_root.clone(),
            exec_root: s.exec_root.clone(),
            monitor_binary: s.monitor.clone(),
            runtime_binary: s.runtime.clone(),
            init_binary: s.init_path.clone(),
            sandbox_disk: s.sandbox_disk,
            registry: silo_engine::RegistryConfig {
                insecure: s.insecure_registries.clone(),
                mirrors: s
                    .registry_mirrors
                    .iter()
                    .map(|m| m.trim_end_matches('/').to_string())
                    .collect(),
                host_mirrors: s
                    .registry_host_mirrors
                    .iter()
                    .map(|(h, list)| {
                        let urls = list.iter().map(|m| m.trim_end_matches('/').to_string());
                        (h.clone(), urls.collect())
                    })
                    .collect(),
            },
        },
        silo_engine::Services {
            network: std::sync::Arc::new(silo_engine::Hns(hns.clone())),
            hns: Some(hns),
            // Rows of silods before the engine had its own model.
            legacy: Some(&silo_docker::Legacy),
        },
    )
    .map_err(|source| StartError::Engine {
        path: s.data_root.clone(),
        source,
    })?;
    let engine_ms = engine_started.elapsed().as_secs_f64() * 1000.0;

    let std_listener = bind(&s.socket)?;
    let cri_listener = match &s.cri_socket {
        Some(path) => {
            let streams = std::net::TcpListener::bind(s.cri_stream_address)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| StartError::Listen {
                    path: PathBuf::from(s.cri_stream_address.to_string()),
                    source,
                })?;
            Some((bind(path)?, streams))
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(256)
        .build()
        .map_err(StartError::Runtime)?;
    let result = rt.block_on(async {
        let listener =
            tokio::net::UnixListener::from_std(std_listener).map_err(|source| StartError::Listen {
                path: s.socket.clone(),
                source,
            })?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(StartError::Signals)?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(StartError::Signals)?;
        tracing::info!(
            socket = %s.socket.display(),
            data_root = %s.data_root.display(),
            exec_root = %s.exec_root.display(),
            engine_open_ms = engine_ms,
            startup_ms = started.elapsed().as_secs_f64() * 1000.0,
            "silod is serving the API"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down, containers keep running"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down, containers keep running"),
            }
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        if let (Some((l, streams)), Some(path)) = (cri_listener, &s.cri_socket) {
            let l = tokio::net::UnixListener::from_std(l).map_err(|source| StartError::Listen {
                path: path.clone(),
                source,
            })?;
            let stream_addr = streams.local_addr().map_err(|source| StartError::Listen {
                path: PathBuf::from(s.cri_stream_address.to_string()),
                source,
            })?;
            let streams = tokio::net::TcpListener::from_std(streams).map_err(|source| {
                StartError::Listen {
                    path: PathBuf::from(stream_addr.to_string()),
                    source,
                }
            })?;
            let cri = silo_cri::Cri::new(
                engine.clone(),
                Some(silo_cri::cni::CniConfig {
                    conf_dir: s.cni_conf_dir.clone(),
                    bin_dirs: s.cni_bin_dirs.clone(),
                    state_dir: s.data_root.join("cri").join("cni"),
                }),
                stream_addr,
            )
            .with_pause_image(s.cri_pause_image.clone());
            tokio::spawn(cri.serve_streams(streams, stopped(stop_rx.clone())));
            tracing::info!(socket = %path.display(), streaming = %stream_addr, "serving the Kubernetes CRI");
            let done = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = silo_cri::serve(l, cri, done).await {
                    tracing::error!("the CRI server failed: {e}");
                }
            });
        }
        silo_api::serve(listener, silo_docker::Docker::new(engine), stopped(stop_rx))
            .await
            .map_err(StartError::Serve)
    });
    if let Some(p) = &s.cri_socket {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_file(&s.socket);
    let _ = std::fs::remove_file(&pidfile);
    // Blocking tasks (followers of logs, events) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

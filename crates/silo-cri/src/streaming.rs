//! The streaming server: Exec, Attach and PortForward answer with a
//! one-time URL on it (valid for a minute), and the client (the kubelet's
//! proxy, crictl) upgrades that URL to SPDY/3.1 (see `spdy_stream`) or to
//! a WebSocket speaking Kubernetes' channel protocols:
//! `v5.channel.k8s.io`/`v4.channel.k8s.io` for exec and attach (channel 0
//! stdin, 1 stdout, 2 stderr, 3 the final status, 4 resize; 255 closes
//! stdin in v5) and `v4.channel.k8s.io` for port forwarding (channels 2i
//! and 2i+1 carry the data and errors of the i-th port, each opened by the
//! port number). The process behind exec and attach is run here, the same
//! for both transports. Listens on 127.0.0.1 by default.

use crate::spdy_stream;
use crate::ws::{self, MessageReader};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use silo_engine::{AttachOptions, Engine, ExecSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long a URL stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// What a URL was issued for.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Exec {
        container: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    PortForward {
        pod: String,
        ports: Vec<i32>,
    },
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

/// The issued URLs.
pub struct Streams {
    base: String,
    pending: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl Streams {
    /// URLs will point at `addr` (where [`serve`] listens).
    pub fn new(addr: std::net::SocketAddr) -> Streams {
        Streams {
            base: format!("http://{addr}"),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Pending, Instant)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A one-time URL for `p`.
    pub(crate) fn issue(&self, p: Pending) -> String {
        let token: String = silo_sys::id::random_id().chars().take(32).collect();
        let url = format!("{}/{}/{token}", self.base, p.kind());
        let mut map = self.lock();
        map.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        map.insert(token, (p, Instant::now()));
        url
    }

    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut map = self.lock();
        let (p, at) = map.remove(token)?;
        (p.kind() == kind && at.elapsed() < TOKEN_TTL).then_some(p)
    }
}

fn reply(code: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.into())));
    *r.status_mut() = code;
    r
}

fn header<'a>(req: &'a Request<hyper::body::Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Serves the streaming URLs on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    streams: Arc<Streams>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (conn, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("streaming server: accept: {e}");
                    continue;
                }
            },
        };
        // Sessions are many small frames: Nagle's wait for an ACK the
        // peer delays would add 40 ms to an exec.
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!("streaming connection: TCP_NODELAY: {e}");
        }
        let (engine, streams) = (engine.clone(), streams.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (engine, streams) = (engine.clone(), streams.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, engine, streams)) }
            });
            let io = hyper_util::rt::TokioIo::new(conn);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
            {
                tracing::debug!("streaming connection: {e}");
            }
        });
    }
}

fn handle(
    req: Request<hyper::body::Incoming>,
    engine: Arc<Engine>,
    streams: Arc<Streams>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_matches('/').to_string();
    let Some((kind, token)) = path.split_once('/') else {
        return reply(
            StatusCode::NOT_FOUND,
            "want /exec/TOKEN, /attach/TOKEN or /portforward/TOKEN",
        );
    };
    let Some(pending) = streams.take(kind, token) else {
        return reply(
            StatusCode::NOT_FOUND,
            "unknown or expired stream URL (they are good for one use within a minute)",
        );
    };
    let upgrade = header(&req, "upgrade").to_ascii_lowercase();
    if upgrade.starts_with("spdy/") {
        return spdy_upgrade(req, engine, pending, &upgrade);
    }
    if upgrade != "websocket" || header(&req, "sec-websocket-key").is_empty() {
        return reply(StatusCode::BAD_REQUEST, "a WebSocket upgrade is required");
    }
    let offered: Vec<String> = header(&req, "sec-websocket-protocol")
        .split(',')
        .map(|p| p.trim().to_string())
        .collect();
    let wanted: &[&str] = match pending {
        Pending::PortForward { .. } => &["v4.channel.k8s.io"],
        _ => &["v5.channel.k8s.io", "v4.channel.k8s.io"],
    };
    let Some(protocol) = wanted.iter().find(|w| offered.iter().any(|o| o == *w)) else {
        return reply(
            StatusCode::BAD_REQUEST,
            format!(
                "no supported subprotocol offered (silo speaks {})",
                wanted.join(", ")
            ),
        );
    };
    let v5 = *protocol == "v5.channel.k8s.io";
    let query = req.uri().query().unwrap_or_default().to_string();
    let accept = ws::accept_key(header(&req, "sec-websocket-key"));
    let mut r = switch(req, move |io| async move {
        match pending {
            Pending::PortForward { pod, ports } => {
                port_forward(io, engine, pod, ports, &query).await
            }
            other => remote_command(io, engine, other, v5).await,
        }
    });
    let h = r.headers_mut();
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = accept.parse() {
        h.insert("sec-websocket-accept", v);
    }
    h.insert(
        "sec-websocket-protocol",
        hyper::header::HeaderValue::from_static(protocol),
    );
    r
}

/// The 101 answer to `req` (its caller adds the protocol's headers), with
/// `session` spawned on the connection once hyper hands it over.
fn switch<F, Fut>(mut req: Request<hyper::body::Incoming>, session: F) -> Response<Full<Bytes>>
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(u) => {
                if let Err(e) = session(hyper_util::rt::TokioIo::new(u)).await {
                    tracing::info!("stream ended: {e}");
                }
            }
            Err(e) => tracing::warn!("streaming upgrade failed: {e}"),
        }
    });
    let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    r.headers_mut().insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    r
}

/// Takes a SPDY/3.1 upgrade: the first protocol the client offers (in
/// `X-Stream-Protocol-Version`) that silo speaks for this kind of stream.
fn spdy_upgrade(
    req: Request<hyper::body::Incoming>,
    engine: Arc<Engine>,
    pending: Pending,
    upgrade: &str,
) -> Response<Full<Bytes>> {
    if upgrade != "spdy/3.1" {
        return reply(
            StatusCode::BAD_REQUEST,
            format!("SPDY version {upgrade:?}: silo speaks SPDY/3.1 (and WebSocket)"),
        );
    }
    let ours = match pending {
        Pending::PortForward { .. } => spdy_stream::PORT_FORWARD,
        _ => spdy_stream::REMOTE_COMMAND,
    };
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    let Some(protocol) = offered
        .iter()
        .find_map(|o| ours.iter().copied().find(|p| p == o))
    else {
        let mut r = reply(
            StatusCode::FORBIDDEN,
            format!(
                "no X-Stream-Protocol-Version that silo speaks was offered ({:?}; silo speaks {})",
                offered,
                ours.join(", ")
            ),
        );
        if let Ok(v) = ours.join(", ").parse() {
            r.headers_mut()
                .insert("x-accepted-stream-protocol-versions", v);
        }
        return r;
    };
    let mut r = switch(req, move |io| async move {
        match pending {
            Pending::PortForward { pod, ports } => {
                spdy_stream::port_forward(io, engine, pod, ports).await
            }
            other => spdy_stream::remote_command(io, engine, other, protocol).await,
        }
    });
    let h = r.headers_mut();
    h.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        "x-stream-protocol-version",
        hyper::header::HeaderValue::from_static(protocol),
    );
    r
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker: {e}"))?
}

/// The writer side: every frame goes through one task, and the frames
/// queued at once go out in one write.
pub(crate) fn writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let task = tokio::spawn(async move {
        while let Some(mut f) = rx.recv().await {
            while f.len() < 64 << 10 {
                match rx.try_recv() {
                    Ok(more) => f.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if let Err(e) = w.write_all(&f).await {
                tracing::trace!("the stream's writer: {e}");
                break;
            }
        }
        tracing::trace!("the stream's writer ends");
        let _ = w.shutdown().await;
    });
    (tx, task)
}

/// The final status of the channel protocol (channel 3), as the kubelet
/// writes it (a metav1.Status).
pub(crate) fn exit_status(code: Option<i64>) -> String {
    match code {
        None | Some(0) => r#"{"metadata":{},"status":"Success"}"#.to_string(),
        Some(c) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]},
        })
        .to_string(),
    }
}

pub(crate) fn failure(message: &str) -> String {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message}).to_string()
}

/// What a client sends a running command, whatever its transport.
#[derive(Debug)]
pub(crate) enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
}

/// What a running command sends its client.
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A terminal size as the channel protocols send it (`{"Width":80,
/// "Height":24}`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Size {
    pub width: u16,
    pub height: u16,
}

/// Runs what `pending` names (an exec, or an attach to the container's
/// own process) for one client: `input` feeds it, and closes when the
/// client goes (which ends the output too); `output` carries what it
/// prints. The exit code (None for an attach) or why it could not start.
pub(crate) async fn run_command(
    engine: Arc<Engine>,
    pending: Pending,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> Result<Option<i64>, String> {
    let e2 = engine.clone();
    let (stream, exec_id, container) = blocking(move || match pending {
        Pending::Exec {
            container,
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
        } => {
            let id = e2
                .exec_create(
                    &container,
                    ExecSpec {
                        args: cmd,
                        terminal: tty,
                        stdin,
                        stdout,
                        stderr: stderr && !tty,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
            let s = e2.exec_start(&id, false, tty).map_err(|e| e.to_string())?;
            let s = s.ok_or("the exec gave no stream")?;
            Ok((s, Some(id), container))
        }
        Pending::Attach {
            container,
            stdin,
            stdout,
            stderr,
            ..
        } => {
            let s = e2
                .attach(
                    &container,
                    AttachOptions {
                        stdin,
                        stdout,
                        stderr,
                        stream: true,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
            Ok((s, None, container))
        }
        Pending::PortForward { .. } => Err("not a command".into()),
    })
    .await?;
    tracing::debug!("stream's process started");
    let tty = stream.tty;
    stream
        .socket
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let sock = tokio::net::UnixStream::from_std(stream.socket).map_err(|e| e.to_string())?;
    let (mut s_r, mut s_w) = sock.into_split();
    let (e3, exec3) = (engine.clone(), exec_id.clone());
    // Dropped when the client's side ends: the output then stops too.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let feeder = tokio::spawn(async move {
        let _gone_tx = gone_tx;
        let mut open = true;
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(d) => {
                    // A process that closed its stdin may still print.
                    if open && s_w.write_all(&d).await.is_err() {
                        open = false;
                    }
                }
                Input::CloseStdin => {
                    let _ = s_w.shutdown().await;
                    open = false;
                }
                Input::Resize { width, height } => {
                    let (e, x, c) = (e3.clone(), exec3.clone(), container.clone());
                    let _ = tokio::task::spawn_blocking(move || match x {
                        Some(x) => e.exec_resize(&x, height, width),
                        None => e.resize(&c, height, width),
                    })
                    .await;
                }
            }
        }
    });
    // Output: the process's (raw with a terminal, else Docker's frames),
    // until it ends or the client goes.
    let pump = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let out = if tty {
                match s_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => Output::Stdout(buf[..n].to_vec()),
                }
            } else {
                let mut head = [0u8; silo_sys::frame::HEADER_LEN];
                if s_r.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                if len > ws::MAX_MESSAGE {
                    break;
                }
                let mut data = vec![0u8; len];
                if s_r.read_exact(&mut data).await.is_err() {
                    break;
                }
                match silo_sys::frame::Stream::from_byte(head[0]) {
                    silo_sys::frame::Stream::Stderr => Output::Stderr(data),
                    _ => Output::Stdout(data),
                }
            };
            if output.send(out).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = pump => {}
        _ = &mut gone => {}
    }
    feeder.abort();
    tracing::debug!("the stream's output ended");
    Ok(match exec_id {
        Some(id) => blocking(move || {
            engine
                .exec_exit(&id, Duration::from_secs(5))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or(None),
        None => None,
    })
}

/// Exec and attach over WebSocket: channel 0 stdin, 1 stdout, 2 stderr, 3
/// the final status, 4 resize, and (v5) 255 closing stdin.
async fn remote_command<IO: AsyncRead + AsyncWrite + Send + 'static>(
    io: IO,
    engine: Arc<Engine>,
    pending: Pending,
    v5: bool,
) -> Result<(), String> {
    let (mut ws_r, ws_w) = tokio::io::split(io);
    let (tx, write_task) = writer(ws_w);
    let (in_tx, in_rx) = mpsc::channel::<Input>(64);
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let pong = tx.clone();
    let input = tokio::spawn(async move {
        let mut m = MessageReader::default();
        while let Ok(Some((op, p))) = m.next(&mut ws_r).await {
            let i = match op {
                ws::OP_BINARY if !p.is_empty() => match p[0] {
                    0 => Input::Stdin(p[1..].to_vec()),
                    4 => match serde_json::from_slice::<Size>(&p[1..]) {
                        Ok(s) => Input::Resize {
                            width: s.width,
                            height: s.height,
                        },
                        Err(_) => continue,
                    },
                    255 if v5 && p.get(1) == Some(&0) => Input::CloseStdin,
                    _ => continue,
                },
                ws::OP_PING => {
                    let _ = pong.send(ws::encode(ws::OP_PONG, &p, None)).await;
                    continue;
                }
                ws::OP_CLOSE => break,
                _ => continue,
            };
            // Once the command has ended this fails; the client's close
            // is still read.
            let _ = in_tx.send(i).await;
        }
    });
    let out_ws = tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (ch, d) = match o {
                Output::Stdout(d) => (1, d),
                Output::Stderr(d) => (2, d),
            };
            if out_ws.send(ws::channel_frame(ch, &d, None)).await.is_err() {
                break;
            }
        }
    });
    let ended = run_command(engine, pending, in_rx, out_tx).await;
    let _ = forward.await;
    let status = match &ended {
        Ok(code) => exit_status(*code),
        Err(e) => failure(e),
    };
    let _ = tx.send(ws::channel_frame(3, status.as_bytes(), None)).await;
    close(tx, write_task, input).await;
    ended.map(|_| ())
}

/// Ends a session: the close frame, then the client's own close (or its
/// end, at most a few seconds) before the connection goes, so nothing
/// the client has not read yet is lost to a reset.
async fn close(
    tx: mpsc::Sender<Vec<u8>>,
    write_task: tokio::task::JoinHandle<()>,
    mut input: tokio::task::JoinHandle<()>,
) {
    let _ = tx
        .send(ws::encode(ws::OP_CLOSE, &1000u16.to_be_bytes(), None))
        .await;
    drop(tx);
    if tokio::time::timeout(Duration::from_secs(5), &mut input)
        .await
        .is_err()
    {
        input.abort();
    }
    let _ = write_task.await;
}

/// `port=80&port=443` of the query.
fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port")
        .map(|(_, v)| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {v:?} is not a port number"))
        })
        .collect()
}

async fn port_forward<IO: AsyncRead + AsyncWrite + Send + 'static>(
    io: IO,
    engine: Arc<Engine>,
    pod: String,
    allowed: Vec<i32>,
    query: &str,
) -> Result<(), String> {
    let (mut ws_r, ws_w) = tokio::io::split(io);
    let (tx, write_task) = writer(ws_w);
    let ports = query_ports(query)?;
    if ports.len() > 127 {
        // Two channels a port, numbered by one byte.
        return Err(format!("{} ports in one stream: at most 127", ports.len()));
    }
    let mut conns = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, err) = ((2 * i) as u8, (2 * i + 1) as u8);
        let le = port.to_le_bytes();
        let _ = tx.send(ws::channel_frame(data, &le, None)).await;
        let _ = tx.send(ws::channel_frame(err, &le, None)).await;
        if !allowed.is_empty() && !allowed.contains(&i32::from(*port)) {
            let msg = format!("port {port} was not asked for in PortForward");
            let _ = tx.send(ws::channel_frame(err, msg.as_bytes(), None)).await;
            conns.push(None);
            continue;
        }
        let (e, p, port) = (engine.clone(), pod.clone(), *port);
        match blocking(move || connect_in_pod(&e, &p, port)).await {
            Ok(s) => conns.push(Some(s)),
            Err(msg) => {
                let _ = tx.send(ws::channel_frame(err, msg.as_bytes(), None)).await;
                conns.push(None);
            }
        }
    }
    let mut writers = Vec::new();
    let mut readers = tokio::task::JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        let Some(c) = c else {
            writers.push(None);
            continue;
        };
        let (mut r, w) = c.into_split();
        writers.push(Some(w));
        let tx = tx.clone();
        readers.spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(ws::channel_frame((2 * i) as u8, &buf[..n], None))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    }
    let in_tx = tx.clone();
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let input = tokio::spawn(async move {
        let _gone_tx = gone_tx;
        let mut m = MessageReader::default();
        while let Ok(Some((op, p))) = m.next(&mut ws_r).await {
            match op {
                ws::OP_BINARY if !p.is_empty() && p[0] % 2 == 0 => {
                    if let Some(Some(w)) = writers.get_mut(usize::from(p[0] / 2)) {
                        if w.write_all(&p[1..]).await.is_err() {
                            return;
                        }
                    }
                }
                ws::OP_PING => {
                    let _ = in_tx.send(ws::encode(ws::OP_PONG, &p, None)).await;
                }
                ws::OP_CLOSE => return,
                _ => {}
            }
        }
    });
    // The stream lasts while the client keeps it and a connection is open.
    tokio::select! {
        () = async { while readers.join_next().await.is_some() {} } => {}
        _ = &mut gone => {}
    }
    readers.abort_all();
    close(tx, write_task, input).await;
    Ok(())
}

/// A TCP connection to 127.0.0.1:`port` inside the pod's network namespace
/// (made on a thread of its own; the socket stays in that namespace).
pub(crate) fn connect_in_pod(
    engine: &Engine,
    pod: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let p = engine.pod(pod).map_err(|e| e.to_string())?;
    let connect = || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("connecting to port {port} in pod {}: {e}", p.id))
    };
    let s = if p.config.network == silo_engine::NetworkMode::Host {
        connect()?
    } else {
        let path = engine.pod_netns(&p.id);
        let ns = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::fd::AsFd;
        silo_network::nat::in_ns(ns.as_fd(), connect).map_err(|e| e.to_string())??
    };
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_one_time_and_by_kind() {
        let s = Streams::new("127.0.0.1:1234".parse().unwrap());
        let url = s.issue(Pending::PortForward {
            pod: "p".into(),
            ports: vec![],
        });
        assert!(
            url.starts_with("http://127.0.0.1:1234/portforward/"),
            "{url}"
        );
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(s.take("exec", &token).is_none(), "wrong kind");
        let url = s.issue(Pending::PortForward {
            pod: "p".into(),
            ports: vec![],
        });
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(s.take("portforward", &token).is_some());
        assert!(s.take("portforward", &token).is_none(), "used once");
    }

    #[test]
    fn statuses_and_ports() {
        assert!(exit_status(Some(0)).contains("Success"));
        let f = exit_status(Some(3));
        assert!(
            f.contains("NonZeroExitCode") && f.contains(r#""message":"3""#),
            "{f}"
        );
        assert_eq!(query_ports("port=80&port=443&x=1").unwrap(), [80, 443]);
        assert!(query_ports("port=0").is_err() && query_ports("port=x").is_err());
    }
}

//! Connection hijacking for attach and exec start: answer `101 UPGRADED`
//! (`Upgrade: tcp`) and then relay bytes both ways between the client's
//! connection and the engine's attach socket, with half-close passed on.

use crate::stream::channel_body;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use silo_engine::AttachStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Content type of a TTY stream (raw bytes).
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// Content type of a non-TTY stream (8-byte frame headers).
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// Whether the client asked to upgrade the connection to a raw TCP stream.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "tcp")
}

/// Answers the request with the attach stream: upgraded when the client
/// asked for it, otherwise the output only as a streaming 200 body.
pub fn hijack(mut req: Request, stream: AttachStream) -> Response {
    let content_type = if stream.tty {
        RAW_STREAM
    } else {
        MULTIPLEXED_STREAM
    };
    if wants_upgrade(req.headers()) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    if let Err(e) = relay(after_head(upgraded).await, stream.socket).await {
                        tracing::debug!(error = %e, "attach relay ended with an error");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "connection upgrade failed"),
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        return resp;
    }
    // Without an upgrade there is no way back to the container: stream its output only.
    let (tx, body) = channel_body(16);
    tokio::spawn(async move {
        let socket = match into_tokio(stream.socket) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let (mut rd, _wr) = socket.into_split();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Answers an upgrade request with `101` first and only then runs `start`
/// (on the blocking pool) and relays its stream, as dockerd does for exec:
/// a process started before the 101 is flushed may print before the
/// client has read the response head, and a client that reads the head
/// through a buffer (the Python SDK) loses those bytes. An error from
/// `start` is written to the stream (framed on stdout unless `tty`),
/// where dockerd writes it too.
pub fn upgrade_then<F>(mut req: Request, tty: bool, start: F) -> Response
where
    F: FnOnce() -> silo_docker::Result<AttachStream> + Send + 'static,
{
    let content_type = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "connection upgrade failed");
                return;
            }
        };
        let mut client = after_head(upgraded).await;
        match crate::stream::blocking(start).await {
            Ok(stream) => {
                if let Err(e) = relay(client, stream.socket).await {
                    tracing::debug!(error = %e, "relay ended with an error");
                }
            }
            Err(e) => {
                let text = format!("{}\r\n", e.message());
                let bytes = if tty {
                    text.into_bytes()
                } else {
                    silo_sys::frame::frame(silo_sys::frame::Stream::Stdout, text.as_bytes())
                };
                let _ = client.write_all(&bytes).await;
                let _ = client.shutdown().await;
            }
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// Any bidirectional byte stream to a client.
pub trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// The upgraded connection, returned once the client has read the 101
/// head. A client that reads the head through a buffer and then switches
/// to the raw socket (the Python SDK does) would lose stream bytes that
/// arrived in the same read, so nothing is sent until the head has left
/// the socket's queue (bounded: a client that does not read in 500 ms gets
/// the stream anyway).
async fn after_head(upgraded: hyper::upgrade::Upgraded) -> Box<dyn Duplex> {
    let parts = match upgraded.downcast::<TokioIo<tokio::net::UnixStream>>() {
        Ok(p) => p,
        Err(other) => return Box::new(TokioIo::new(other)),
    };
    let io = parts.io.into_inner();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut tries = 0u32;
    while tokio::time::Instant::now() < deadline {
        match silo_sys::socket::unread_by_peer(&io) {
            Ok(0) | Err(_) => break,
            // A client reading promptly takes microseconds: yield first,
            // and only then wait in timer ticks.
            Ok(_) if tries < 100 => {
                tries += 1;
                tokio::task::yield_now().await;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
    if parts.read_buf.is_empty() {
        return Box::new(io);
    }
    // Bytes the client sent right after its request (stdin) come first.
    let (rd, wr) = io.into_split();
    let early = std::io::Cursor::new(parts.read_buf);
    Box::new(tokio::io::join(early.chain(rd), wr))
}

fn into_tokio(socket: std::os::unix::net::UnixStream) -> std::io::Result<tokio::net::UnixStream> {
    socket.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(socket)
}

/// Copies client → socket (then shuts the socket's write side, so the
/// container sees EOF on stdin) and socket → client (then closes the
/// client's write side) until the container's output ends.
pub async fn relay<C>(client: C, socket: std::os::unix::net::UnixStream) -> std::io::Result<()>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let socket = into_tokio(socket)?;
    let (mut sock_rd, mut sock_wr) = socket.into_split();
    let (mut cli_rd, mut cli_wr) = tokio::io::split(client);
    let input = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut cli_rd, &mut sock_wr).await;
        let _ = sock_wr.shutdown().await;
        copied
    });
    let output = tokio::io::copy(&mut sock_rd, &mut cli_wr).await;
    let _ = cli_wr.flush().await;
    let _ = cli_wr.shutdown().await;
    input.abort();
    output.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        assert!(wants_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&h));
    }

    #[tokio::test]
    async fn relay_passes_half_close_and_output() {
        // The "container" side: echoes stdin uppercased, then closes.
        let (engine_side, container) = std::os::unix::net::UnixStream::pair().unwrap();
        let container_thread = std::thread::spawn(move || {
            let mut c = container;
            let mut input = Vec::new();
            c.read_to_end(&mut input).unwrap(); // ends only when the relay shut its write side
            c.write_all(&input.to_ascii_uppercase()).unwrap();
        });
        let (client, mut peer) = tokio::io::duplex(1024);
        let relay_task = tokio::spawn(relay(client, engine_side));
        peer.write_all(b"hello").await.unwrap();
        peer.shutdown().await.unwrap();
        let mut out = Vec::new();
        peer.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"HELLO");
        relay_task.await.unwrap().unwrap();
        container_thread.join().unwrap();
    }
}

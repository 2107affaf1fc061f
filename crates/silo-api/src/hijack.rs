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
                    if let Err(e) = relay(TokioIo::new(upgraded), stream.socket).await {
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

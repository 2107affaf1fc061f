//! The upgrade path end to end over a real unix socket: a 101 answer with
//! `Upgrade: tcp`, bytes relayed both ways, half-close passed on, and a
//! streaming body whose headers go out before the body is ready.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use axum::extract::Request;
use axum::routing::post;
use axum::Router;
use silo_api::hijack::hijack;
use silo_api::stream::channel_body;
use silo_engine::AttachStream;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Runs `app` on a fresh socket in a background thread; returns the path.
fn serve(app: Router) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            silo_api::serve_app(listener, app, std::future::pending()).await
        })
        .unwrap();
    });
    (dir, path)
}

fn read_head(r: &mut BufReader<UnixStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    head
}

#[test]
fn attach_upgrade_relays_both_ways_with_half_close() {
    let app = Router::new().route(
        "/containers/{id}/attach",
        post(|req: Request| async move {
            let (ours, theirs) = UnixStream::pair().unwrap();
            // The "container": upper-cases stdin once it ends.
            std::thread::spawn(move || {
                let mut c = theirs;
                let mut input = Vec::new();
                c.read_to_end(&mut input).unwrap();
                c.write_all(&input.to_ascii_uppercase()).unwrap();
            });
            hijack(
                req,
                AttachStream {
                    tty: true,
                    socket: ours,
                },
            )
        }),
    );
    let (_dir, path) = serve(app);
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "POST /v1.45/containers/x/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let head = read_head(&mut r);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: tcp"), "{head}");
    assert!(
        lower.contains("application/vnd.docker.raw-stream"),
        "{head}"
    );
    assert!(lower.contains("api-version: 1.45"), "{head}");
    w.write_all(b"hello there").unwrap();
    w.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"HELLO THERE");
}

#[test]
fn without_upgrade_the_output_streams_in_a_200_body() {
    let app = Router::new().route(
        "/attach",
        post(|req: Request| async move {
            let (ours, theirs) = UnixStream::pair().unwrap();
            std::thread::spawn(move || {
                let mut c = theirs;
                c.write_all(b"\x01\x00\x00\x00\x00\x00\x00\x02hi").unwrap();
            });
            hijack(
                req,
                AttachStream {
                    tty: false,
                    socket: ours,
                },
            )
        }),
    );
    let (_dir, path) = serve(app);
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /attach HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("application/vnd.docker.multiplexed-stream"),
        "{text}"
    );
    assert!(raw
        .windows(10)
        .any(|w| w == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"));
}

#[test]
fn streaming_headers_arrive_before_the_body() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let app = Router::new().route(
        "/wait",
        post(move || {
            let rx = release_rx.lock().unwrap().take().unwrap();
            async move {
                let (tx, body) = channel_body(1);
                tokio::task::spawn_blocking(move || {
                    rx.recv().unwrap();
                    tx.blocking_send(Ok("{\"StatusCode\":0}\n".into())).unwrap();
                });
                axum::response::Response::new(body)
            }
        }),
    );
    let (_dir, path) = serve(app);
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "POST /wait HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    // The head is readable while the body is still held back.
    let head = read_head(&mut r);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    release_tx.send(()).unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("{\"StatusCode\":0}"), "{rest}");
}

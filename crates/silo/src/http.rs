//! A small blocking HTTP/1.1 client over a unix socket: enough of the
//! protocol for the Docker Engine API (Content-Length and chunked bodies in
//! both directions, and connection hijacking after `101 UPGRADED`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Errors of one HTTP exchange with the daemon.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket could not be reached at all.
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: io::Error,
    },
    #[error("{method} {path}: I/O error: {source}")]
    Io {
        method: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{method} {path}: malformed HTTP response: {detail}")]
    Malformed {
        method: String,
        path: String,
        detail: String,
    },
    /// The daemon answered with an error status; `message` is Docker's `{"message": ...}`.
    #[error("{message}")]
    Api { status: u16, message: String },
}

impl HttpError {
    /// True when the daemon is simply not there (missing socket or nobody listening).
    pub fn is_not_running(&self) -> bool {
        matches!(self, HttpError::Connect { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused))
    }
}

/// The request body to send.
pub enum Body<'a> {
    Empty,
    /// Sent with `Content-Type: application/json` and a Content-Length.
    Json(Vec<u8>),
    /// Raw bytes with a known length and a content type.
    Bytes(&'a [u8], &'a str),
    /// A stream of unknown length, sent chunked, with a content type.
    Stream(&'a mut dyn Read, &'a str),
}

/// A connection target: the unix socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// How the response body is delimited.
enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Eof,
}

/// A response whose headers have been read; the body is read through `Read`.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<UnixStream>,
    framing: Framing,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    fn connect(&self) -> Result<UnixStream, HttpError> {
        UnixStream::connect(&self.socket).map_err(|source| HttpError::Connect {
            socket: self.socket.display().to_string(),
            source,
        })
    }

    /// Sends a request and reads the response headers. Error statuses
    /// (>= 400) are turned into `HttpError::Api`.
    pub fn request(&self, method: &str, path: &str, body: Body<'_>) -> Result<Response, HttpError> {
        let stream = self.connect()?;
        let resp = send(stream, method, path, body, &[])?;
        check_status(resp)
    }

    /// Like [`Client::request`] with extra headers.
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        headers: &[(&str, &str)],
    ) -> Result<Response, HttpError> {
        let stream = self.connect()?;
        let resp = send(stream, method, path, body, headers)?;
        check_status(resp)
    }

    /// `request` plus reading the whole body.
    pub fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<Vec<u8>, HttpError> {
        let mut resp = self.request(method, path, body)?;
        let mut out = Vec::new();
        resp.read_to_end(&mut out).map_err(|source| HttpError::Io {
            method: method.to_string(),
            path: path.to_string(),
            source,
        })?;
        Ok(out)
    }

    /// Sends a request asking to upgrade the connection (`Upgrade: tcp`), as
    /// the docker CLI does for attach and exec start. On `101` (or a plain
    /// `200`, which some daemons send) the raw stream is returned; bytes the
    /// server sent right after the headers are kept in the `BufReader`.
    pub fn hijack(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
    ) -> Result<BufReader<UnixStream>, HttpError> {
        let stream = self.connect()?;
        let resp = send(
            stream,
            method,
            path,
            body,
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
        )?;
        let resp = check_status(resp)?;
        Ok(resp.reader)
    }
}

fn io_err(method: &str, path: &str) -> impl FnOnce(io::Error) -> HttpError {
    let method = method.to_string();
    let path = path.to_string();
    move |source| HttpError::Io {
        method,
        path,
        source,
    }
}

fn send(
    mut stream: UnixStream,
    method: &str,
    path: &str,
    body: Body<'_>,
    extra: &[(&str, &str)],
) -> Result<Response, HttpError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: silod\r\nUser-Agent: silo-cli\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &body {
        Body::Empty => {
            if method == "POST" || method == "PUT" {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        Body::Json(b) => {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        Body::Bytes(b, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        Body::Stream(_, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n"
            ));
        }
    }
    head.push_str("\r\n");
    let write = |stream: &mut UnixStream, body: Body<'_>| -> io::Result<()> {
        stream.write_all(head.as_bytes())?;
        match body {
            Body::Empty => {}
            Body::Json(b) => stream.write_all(&b)?,
            Body::Bytes(b, _) => stream.write_all(b)?,
            Body::Stream(r, _) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    stream.write_all(format!("{n:x}\r\n").as_bytes())?;
                    stream.write_all(&buf[..n])?;
                    stream.write_all(b"\r\n")?;
                }
                stream.write_all(b"0\r\n\r\n")?;
            }
        }
        stream.flush()
    };
    write(&mut stream, body).map_err(io_err(method, path))?;
    read_head(BufReader::new(stream), method, path)
}

fn read_head(
    mut reader: BufReader<UnixStream>,
    method: &str,
    path: &str,
) -> Result<Response, HttpError> {
    let malformed = |detail: String| HttpError::Malformed {
        method: method.to_string(),
        path: path.to_string(),
        detail,
    };
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io_err(method, path))?;
    if line.is_empty() {
        return Err(malformed("connection closed before the status line".into()));
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(format!("bad status line {:?}", line.trim_end())));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad status code in {:?}", line.trim_end())))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io_err(method, path))?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| malformed(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let framing = if status == 101 || status == 204 || status == 304 || method == "HEAD" {
        if status == 101 {
            Framing::Eof
        } else {
            Framing::Length(0)
        }
    } else if get("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(len) = get("Content-Length") {
        Framing::Length(
            len.parse()
                .map_err(|_| malformed(format!("bad Content-Length {len:?}")))?,
        )
    } else {
        Framing::Eof
    };
    Ok(Response {
        status,
        headers,
        reader,
        framing,
    })
}

fn check_status(mut resp: Response) -> Result<Response, HttpError> {
    if resp.status < 400 {
        return Ok(resp);
    }
    let mut body = Vec::new();
    // A broken error body still yields an error with the status.
    let _ = resp.read_to_end(&mut body);
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            if text.is_empty() {
                format!("HTTP status {}", resp.status)
            } else {
                text
            }
        });
    Err(HttpError::Api {
        status: resp.status,
        message,
    })
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the whole body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(mut self) -> io::Result<T> {
        let mut body = Vec::new();
        self.read_to_end(&mut body)?;
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Eof => self.reader.read(buf),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "response body shorter than its Content-Length",
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    self.reader.read_line(&mut line)?;
                    let size_text = line.trim().split(';').next().unwrap_or("").to_string();
                    if size_text.is_empty() && line.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "chunked body ended without its last chunk",
                        ));
                    }
                    let size = u64::from_str_radix(&size_text, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size {size_text:?}"),
                        )
                    })?;
                    if size == 0 {
                        // Trailers until the empty line.
                        loop {
                            line.clear();
                            let n = self.reader.read_line(&mut line)?;
                            if n == 0 || line.trim().is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk shorter than announced",
                    ));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.reader.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::thread;

    /// Serves one connection: reads the request head (and the body, if the
    /// test asks for it), then writes `reply`.
    fn serve_once(
        dir: &Path,
        reply: &'static [u8],
        then: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (PathBuf, thread::JoinHandle<String>) {
        let sock = dir.join("s.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let h = thread::spawn(move || {
            let (conn, _) = listener.accept().expect("accept");
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut req = String::new();
            let mut len = 0usize;
            let mut chunked = false;
            loop {
                let mut l = String::new();
                r.read_line(&mut l).expect("read");
                if let Some(v) = l.strip_prefix("Content-Length: ") {
                    len = v.trim().parse().expect("len");
                }
                if l.starts_with("Transfer-Encoding: chunked") {
                    chunked = true;
                }
                req.push_str(&l);
                if l == "\r\n" {
                    break;
                }
            }
            if chunked {
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).expect("chunk size");
                    let n = usize::from_str_radix(l.trim(), 16).expect("hex");
                    let mut data = vec![0u8; n + 2];
                    r.read_exact(&mut data).expect("chunk");
                    req.push_str(&String::from_utf8_lossy(&data[..n]));
                    if n == 0 {
                        break;
                    }
                }
            } else {
                let mut data = vec![0u8; len];
                r.read_exact(&mut data).expect("body");
                req.push_str(&String::from_utf8_lossy(&data));
            }
            let mut w = conn;
            w.write_all(reply).expect("reply");
            then(w);
            req
        });
        (sock, h)
    }

    #[test]
    fn content_length_json_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sock, h) = serve_once(
            dir.path(),
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"Id\":\"abc\"}\n",
            |_| {},
        );
        let c = Client::new(&sock);
        let body = c
            .call(
                "POST",
                "/containers/create?name=x",
                Body::Json(b"{\"Image\":\"b\"}".to_vec()),
            )
            .expect("call");
        assert_eq!(body, b"{\"Id\":\"abc\"}\n");
        let req = h.join().expect("server");
        assert!(
            req.starts_with("POST /containers/create?name=x HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("Content-Length: 13\r\n"));
        assert!(req.ends_with("{\"Image\":\"b\"}"));
    }

    #[test]
    fn chunked_response_is_reassembled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sock, _h) = serve_once(
            dir.path(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
            |_| {},
        );
        let body = Client::new(&sock)
            .call("GET", "/x", Body::Empty)
            .expect("call");
        assert_eq!(body, b"hello, world");
    }

    #[test]
    fn chunked_request_body_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sock, h) = serve_once(
            dir.path(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            |_| {},
        );
        let data = vec![b'z'; 100_000];
        let mut r: &[u8] = &data;
        Client::new(&sock)
            .call(
                "POST",
                "/images/create?fromSrc=-",
                Body::Stream(&mut r, "application/x-tar"),
            )
            .expect("call");
        let req = h.join().expect("server");
        assert!(req.contains("Transfer-Encoding: chunked"));
        assert!(req.ends_with(&"z".repeat(100_000)));
    }

    #[test]
    fn error_status_yields_docker_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sock, _h) = serve_once(
            dir.path(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n{\"message\":\"No such container: nothere\"}",
            |_| {},
        );
        let err = Client::new(&sock)
            .call("GET", "/containers/nothere/json", Body::Empty)
            .expect_err("404");
        match err {
            HttpError::Api { status, message } => {
                assert_eq!(status, 404);
                assert_eq!(message, "No such container: nothere");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hijack_after_101_keeps_early_bytes_and_is_bidirectional() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sock, h) = serve_once(
            dir.path(),
            b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly:",
            |mut w| {
                let mut r = BufReader::new(w.try_clone().expect("clone"));
                let mut l = String::new();
                r.read_line(&mut l).expect("line from client");
                w.write_all(format!("echo {l}").as_bytes()).expect("echo");
            },
        );
        let mut conn = Client::new(&sock)
            .hijack("POST", "/containers/x/attach?stream=1", Body::Empty)
            .expect("hijack");
        conn.get_mut().write_all(b"ping\n").expect("write");
        conn.get_ref()
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut out = String::new();
        conn.read_to_string(&mut out).expect("read");
        assert_eq!(out, "early:echo ping\n");
        let req = h.join().expect("server");
        assert!(req.contains("Upgrade: tcp\r\n"));
        assert!(req.contains("Connection: Upgrade\r\n"));
    }

    #[test]
    fn missing_socket_is_not_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Client::new(dir.path().join("none.sock"))
            .call("GET", "/_ping", Body::Empty)
            .expect_err("no socket");
        assert!(err.is_not_running(), "{err:?}");
        // A listener-less socket file gives ECONNREFUSED.
        let sock = dir.path().join("dead.sock");
        drop(UnixListener::bind(&sock).expect("bind"));
        let err = Client::new(&sock)
            .call("GET", "/_ping", Body::Empty)
            .expect_err("refused");
        assert!(err.is_not_running(), "{err:?}");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(enc("a b/c=d"), "a%20b%2Fc%3Dd");
        assert_eq!(enc("{\"x\":[1]}"), "%7B%22x%22%3A%5B1%5D%7D");
    }
}

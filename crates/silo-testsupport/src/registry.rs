//! A real registry for tests (Debian's `docker-registry` on 127.0.0.1, with
//! optional htpasswd auth) and a small proxy in front of it that injects
//! faults into blob downloads: a connection cut mid-blob, an error status,
//! a corrupted byte, a missing blob.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// `docker-registry serve` on a free port of 127.0.0.1, storing in a
/// temporary directory; stopped on drop.
pub struct Registry {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Registry {
    /// A registry without auth.
    pub fn start() -> Registry {
        Self::start_auth(None)
    }

    /// A registry; with `Some((user, password))`, basic auth from htpasswd.
    pub fn start_auth(user: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:
  htpasswd:
    realm: silo-test
    path: {}
",
                file.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");
        wait_for_port(port);
        Registry { dir, child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:<port>".
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to `GET …/blobs/…` responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything through.
    None,
    /// The first blob download is cut after this many body bytes.
    CutOnce(usize),
    /// Every blob download answers this status.
    Status(u16),
    /// Every blob download has one byte changed (at offset 100 of the body).
    Corrupt,
    /// Downloads of this blob digest answer 404 (a manifest listing a blob
    /// the registry lacks).
    Missing(String),
}

/// A proxy on a free port of 127.0.0.1 in front of a registry. Each request
/// gets its own upstream connection and `Connection: close`.
pub struct Proxy {
    port: u16,
    /// The request heads seen, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cut_done = Arc::new(AtomicBool::new(false));
        let (reqs, stopping) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, fault, cut_done) = (reqs.clone(), fault.clone(), cut_done.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &fault, &cut_done, &reqs);
                });
            }
        });
        Proxy {
            port,
            requests,
            stop,
        }
    }

    /// "127.0.0.1:<port>".
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads an HTTP head (through the blank line).
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(if head.is_empty() { None } else { Some(head) });
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Ok(Some(head));
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// `head` with its Connection header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut out = String::new();
    for l in head.split_inclusive("\r\n") {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") || l == "\r\n" {
            continue;
        }
        out.push_str(l);
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn serve(
    client: TcpStream,
    upstream: u16,
    fault: &Fault,
    cut_done: &AtomicBool,
    reqs: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut body = vec![0u8; content_length(&head)];
    reader.read_exact(&mut body)?;
    if let Ok(mut v) = reqs.lock() {
        v.push(head.clone());
    }
    let first = head.lines().next().unwrap_or("").to_string();
    let blob_get = first.starts_with("GET ") && first.contains("/blobs/sha256:");
    if blob_get {
        match fault {
            Fault::Status(code) => {
                write!(
                    client,
                    "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )?;
                return Ok(());
            }
            Fault::Missing(d) if first.contains(d.as_str()) => {
                let msg =
                    r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
                write!(
                    client,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                )?;
                return Ok(());
            }
            _ => {}
        }
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(closing(&head).as_bytes())?;
    up.write_all(&body)?;
    let mut up_reader = BufReader::new(up);
    let Some(resp_head) = read_head(&mut up_reader)? else {
        return Ok(());
    };
    client.write_all(closing(&resp_head).as_bytes())?;
    let ok = resp_head.starts_with("HTTP/1.1 200") || resp_head.starts_with("HTTP/1.1 206");
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = up_reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        if blob_get && ok {
            if let Fault::CutOnce(limit) = fault {
                if !cut_done.load(Ordering::SeqCst) && sent + n > *limit {
                    client.write_all(&chunk[..limit - sent])?;
                    cut_done.store(true, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            if *fault == Fault::Corrupt && sent <= 100 && 100 < sent + n {
                chunk[100 - sent] ^= 0xff;
            }
        }
        client.write_all(chunk)?;
        sent += n;
    }
    Ok(())
}

//! What stands between a real kubectl and silod's CRI in these tests, in
//! place of the API server and the kubelet: it answers the lookups kubectl
//! makes (discovery, the pod), and for exec, attach and port-forward asks
//! the CRI for a streaming URL and relays kubectl's upgrade to it byte for
//! byte, as the kubelet's proxy does. So the SPDY (or WebSocket) session
//! is kubectl's own against silo's streaming server.

use silo_cri::client::connect;
use silo_cri::proto as cri;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pod kubectl is pointed at.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub pod_id: String,
    /// Container name, CRI id.
    pub containers: Vec<(String, String)>,
}

pub struct Shim {
    stop: Arc<AtomicBool>,
    netns: PathBuf,
    dir: tempfile::TempDir,
    /// Every request's line, for the failure messages.
    pub seen: Arc<Mutex<Vec<String>>>,
}

/// Moves this thread (and the threads it starts) into the network
/// namespace at `netns`.
pub fn in_netns(netns: &Path) {
    let ns = std::fs::File::open(netns).unwrap();
    // SAFETY: setns on a namespace file held open for the call; it moves
    // only this thread (and the threads it starts).
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into silod's namespace");
}

impl Shim {
    /// Listens on 127.0.0.1 in the network namespace at `netns`.
    pub fn start(netns: &Path, cri_sock: &Path, target: Target) -> Shim {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ptx, prx) = std::sync::mpsc::channel();
        let (ns, sock, st, sn) = (
            netns.to_path_buf(),
            cri_sock.to_path_buf(),
            stop.clone(),
            seen.clone(),
        );
        std::thread::spawn(move || {
            in_netns(&ns);
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            ptx.send(l.local_addr().unwrap().port()).unwrap();
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (sock, target, seen) = (sock.clone(), target.clone(), sn.clone());
                        std::thread::spawn(move || {
                            c.set_nonblocking(false).unwrap();
                            if let Err(e) = serve(c, &sock, &target, &seen) {
                                seen.lock().unwrap().push(format!("shim error: {e}"));
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let port = prx.recv().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: shim\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: shim\n  context:\n    cluster: shim\n    namespace: default\n    user: shim\nusers:\n- name: shim\n  user: {{}}\ncurrent-context: shim\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), config).unwrap();
        Shim {
            stop,
            netns: netns.to_path_buf(),
            dir,
            seen,
        }
    }

    /// kubectl `args` in silod's namespace, against this shim; `env`
    /// adds to its environment. (nsenter execs it: killing the child
    /// kills kubectl.)
    pub fn kubectl(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        self.command(None, env, args)
    }

    /// The same, first under `timeout -s KILL limit` when a limit is given.
    fn command(&self, limit: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = match limit {
            Some(secs) => {
                let mut c = Command::new("timeout");
                c.args(["-s", "KILL", secs, "nsenter"]);
                c
            }
            None => Command::new("nsenter"),
        };
        c.arg(format!("--net={}", self.netns.display()))
            .arg(kubectl())
            .arg(format!(
                "--kubeconfig={}",
                self.dir.path().join("kubeconfig").display()
            ))
            .args(args)
            .env("HOME", self.dir.path())
            .envs(env.iter().copied());
        c
    }

    /// Runs kubectl with `input` on its stdin (for a minute at most).
    pub fn run(&self, env: &[(&str, &str)], args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(Some("60"), env, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    }

    /// A shell line running kubectl `args` the way [`Shim::kubectl`] does
    /// (for `script`, which gives it a terminal).
    pub fn kubectl_line(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let mut line = format!("HOME={} ", self.dir.path().display());
        for (k, v) in env {
            line.push_str(&format!("{k}={v} "));
        }
        line.push_str(&format!(
            "{} --kubeconfig={}",
            kubectl(),
            self.dir.path().join("kubeconfig").display()
        ));
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        line
    }

    pub fn requests(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The kubectl the tests run: $SILO_TEST_KUBECTL, else the one on PATH.
pub fn kubectl() -> String {
    std::env::var("SILO_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// kubectl's minor version (1.N), to know whether it speaks WebSocket.
pub fn kubectl_minor() -> u32 {
    let out = Command::new(kubectl())
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("kubectl (Debian's kubernetes-client) must be installed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let minor = v["clientVersion"]["minor"].as_str().unwrap_or_default();
    minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or_else(|_| panic!("kubectl's version: {v}"))
}

fn respond(c: &mut TcpStream, code: u16, body: &serde_json::Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        c,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn flag(query: &str, key: &str) -> bool {
    query_values(query, key)
        .iter()
        .any(|v| v == "true" || v == "1")
}

fn serve(
    mut c: TcpStream,
    sock: &Path,
    target: &Target,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let first = head.first().cloned().unwrap_or_default();
    let upgrade = head
        .iter()
        .find(|h| h.to_ascii_lowercase().starts_with("upgrade:"))
        .map(|h| format!(" [{h}]"))
        .unwrap_or_default();
    seen.lock().unwrap().push(format!("{first}{upgrade}"));
    let mut parts = first.split(' ');
    let (method, target_path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target_path.split_once('?').unwrap_or((target_path, ""));
    let pod_path = format!("/api/v1/namespaces/default/pods/{}", target.name);
    let pod = serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": target.name, "namespace": "default", "uid": target.pod_id},
        "spec": {"containers": target.containers.iter()
            .map(|(n, _)| serde_json::json!({"name": n, "image": "busybox", "stdin": true}))
            .collect::<Vec<_>>()},
        "status": {"phase": "Running", "containerStatuses": target.containers.iter()
            .map(|(n, id)| serde_json::json!({
                "name": n, "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
                "containerID": format!("silo://{id}"),
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            })).collect::<Vec<_>>()},
    });
    match (method, path) {
        ("GET", "/api") => respond(
            &mut c,
            200,
            &serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ("GET", "/apis") => respond(
            &mut c,
            200,
            &serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        ("GET", "/api/v1") => respond(
            &mut c,
            200,
            &serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]},
            ]}),
        ),
        ("GET", p) if p == pod_path => respond(&mut c, 200, &pod),
        (_, p) if p.starts_with(&pod_path) => {
            let verb = &p[pod_path.len()..];
            let container = query_values(query, "container").pop().unwrap_or_else(|| {
                target
                    .containers
                    .first()
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default()
            });
            let id = target
                .containers
                .iter()
                .find(|(n, _)| *n == container)
                .map(|(_, id)| id.clone())
                .unwrap_or_default();
            let url = issue(sock, verb, &id, &target.pod_id, query)?;
            relay(c, r, &head, &url)
        }
        _ => respond(
            &mut c,
            404,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("the shim does not serve {path}"), "reason": "NotFound", "code": 404}),
        ),
    }
}

/// The CRI's streaming URL for kubectl's request, as the kubelet asks for
/// it.
fn issue(sock: &Path, verb: &str, id: &str, pod: &str, query: &str) -> std::io::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = connect(sock).await.map_err(std::io::Error::other)?;
        let url = match verb {
            "/exec" => c
                .runtime
                .exec(cri::ExecRequest {
                    container_id: id.into(),
                    cmd: query_values(query, "command"),
                    tty: flag(query, "tty"),
                    stdin: flag(query, "stdin"),
                    stdout: flag(query, "stdout"),
                    stderr: flag(query, "stderr"),
                })
                .await
                .map(|r| r.into_inner().url),
            "/attach" => c
                .runtime
                .attach(cri::AttachRequest {
                    container_id: id.into(),
                    tty: flag(query, "tty"),
                    stdin: flag(query, "stdin"),
                    stdout: flag(query, "stdout"),
                    stderr: flag(query, "stderr"),
                })
                .await
                .map(|r| r.into_inner().url),
            "/portforward" => c
                .runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod.into(),
                    port: query_values(query, "ports")
                        .iter()
                        .filter_map(|p| p.parse().ok())
                        .collect(),
                })
                .await
                .map(|r| r.into_inner().url),
            v => return Err(std::io::Error::other(format!("verb {v}"))),
        };
        url.map_err(std::io::Error::other)
    })
}

/// Sends kubectl's request on to `url` and copies both ways until each
/// side is done.
fn relay(
    client: TcpStream,
    buffered: BufReader<TcpStream>,
    head: &[String],
    url: &str,
) -> std::io::Result<()> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut up = TcpStream::connect(host)?;
    let method = head[0].split(' ').next().unwrap_or("POST");
    let mut req = format!("{method} /{path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in &head[1..] {
        if !h.to_ascii_lowercase().starts_with("host:") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("\r\n");
    up.write_all(req.as_bytes())?;
    // What kubectl sent after its head is already in the buffer.
    let early = buffered.buffer().to_vec();
    up.write_all(&early)?;
    let (mut up_r, mut down_w) = (up.try_clone()?, client.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down_w);
        let _ = down_w.shutdown(Shutdown::Write);
    });
    let mut client_r = client;
    let mut buf = [0u8; 32 << 10];
    loop {
        match client_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if up.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = up.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}

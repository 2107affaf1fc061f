//! End-to-end tests of silod with the real docker CLI: a daemon per test on
//! a temporary socket, data root and exec root; a busybox image imported
//! from a rootfs built by scripts/mkrootfs.sh.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DOCKER: &str = "/usr/local/bin/docker";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// silo-monitor and silo-runtime live next to silod in the target dir.
fn helper(name: &str) -> PathBuf {
    let silod = Path::new(env!("CARGO_BIN_EXE_silod"));
    let path = silod.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p silo-monitor -p silo-runtime)",
        path.display()
    );
    path
}

/// A tar of the busybox rootfs, built once per test binary.
fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, tar) = TAR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/mkrootfs.sh"))
            .arg(&rootfs)
            .status()
            .expect("run mkrootfs.sh");
        assert!(st.success(), "mkrootfs.sh failed");
        let tar = dir.path().join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success(), "tar failed");
        (dir, tar)
    });
    tar
}

struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("silod.sock")
    }

    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = Daemon { dir, child: None };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("silod.log"))
            .expect("open silod.log");
        let child = Command::new(env!("CARGO_BIN_EXE_silod"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.path().join("data"))
            .arg("--exec-root")
            .arg(self.dir.path().join("exec"))
            .arg("--monitor")
            .arg(helper("silo-monitor"))
            .arg("--runtime")
            .arg(helper("silo-runtime"))
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn silod");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("silod did not listen within 10 s; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("silod.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this daemon (60 s limit).
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg(DOCKER)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs docker and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({:?}): stdout {:?} stderr {:?}\nsilod log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn import_busybox(&self) {
        let tar = rootfs_tar().to_str().expect("utf-8 path").to_string();
        let id = self.ok(&["import", &tar, "busybox:latest"]);
        assert!(id.trim().starts_with("sha256:"), "import printed {id:?}");
    }

    /// A raw HTTP/1.1 request on the socket; returns (status line + headers, body).
    fn http(&self, method: &str, path: &str) -> (String, String) {
        self.http_body(method, path, "")
    }

    /// Like [`Daemon::http`] with a JSON body.
    fn http_body(&self, method: &str, path: &str, body: &str) -> (String, String) {
        let mut s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: silod\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write request");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read response");
        match raw.split_once("\r\n\r\n") {
            Some((head, body)) => (head.to_string(), body.to_string()),
            None => (raw, String::new()),
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
            self.terminate();
        }
        // Unmount anything left under the temp dir (deepest first).
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ping_version_prefix_and_unknown_paths() {
    let d = Daemon::start();
    let (head, body) = d.http("GET", "/_ping");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "OK");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("api-version: 1.45"), "{head}");
    assert!(lower.contains("ostype: linux"), "{head}");
    assert!(lower.contains("docker-experimental: false"), "{head}");

    let (head, body) = d.http("GET", "/v1.45/version");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("version JSON");
    assert_eq!(v["ApiVersion"], "1.45");
    assert_eq!(v["Os"], "linux");

    let (head, body) = d.http("GET", "/v1.45/no/such/path");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let e: serde_json::Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(e["message"], "page not found");
    assert!(head.to_ascii_lowercase().contains("api-version: 1.45"));

    let (head, body) = d.http("GET", "/containers/json?all=maybe");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        body.contains("\\\"all\\\"") || body.contains("all"),
        "{body}"
    );

    let out = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(out.trim(), "1.45");
}

#[test]
fn pull_is_refused_clearly() {
    let d = Daemon::start();
    let out = d.docker(&["pull", "busybox"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pulling from a registry is not supported yet"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_removes_socket_and_pidfile() {
    let mut d = Daemon::start();
    let pidfile = d.dir.path().join("exec/silod.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
    assert_eq!(
        pid.trim().parse::<u32>().ok(),
        d.child.as_ref().map(|c| c.id())
    );
    d.terminate();
    assert!(!d.socket().exists(), "socket left behind");
    assert!(!pidfile.exists(), "pidfile left behind");
}

#[test]
fn docker_info_works() {
    let d = Daemon::start();
    d.ok(&["info"]);
}

#[test]
fn run_echo_and_exit_codes() {
    let d = Daemon::start();
    d.import_busybox();
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "hello",
    ]);
    assert_eq!(out, "hello\n");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "--rm left containers");
}

#[test]
fn detached_lifecycle() {
    let d = Daemon::start();
    d.import_busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo started; while true; do sleep 1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if d.ok(&["logs", "web"]).contains("started") {
            break;
        }
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.ok(&["exec", "web", "echo", "hi"]), "hi\n");
    let pid: i32 = d
        .ok(&["inspect", "--format", "{{.State.Pid}}", "web"])
        .trim()
        .parse()
        .expect("pid");
    assert!(pid > 0 && Path::new(&format!("/proc/{pid}")).exists());
    d.ok(&["stop", "-t", "1", "web"]);
    let status = d.ok(&["inspect", "--format", "{{.State.Status}}", "web"]);
    assert_eq!(status.trim(), "exited");
    d.ok(&["rm", "web"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn clear_errors_and_nothing_created() {
    let d = Daemon::start();
    d.import_busybox();
    let out = d.docker(&["run", "--rm", "nosuchimage:1", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nosuchimage"), "{}", stderr(&out));

    let out = d.docker(&["inspect", "--type", "container", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["rm", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );

    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = d.docker(&["create", "--name", "dup", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is already in use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn run_interactive_tty() {
    let d = Daemon::start();
    d.import_busybox();
    let out = Command::new("timeout")
        .arg("60")
        .arg("script")
        .arg("-qec")
        .arg(format!(
            "{DOCKER} run -it --rm --network none busybox sh -c 'tty; echo ok'"
        ))
        .arg("/dev/null")
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[test]
fn containers_survive_a_killed_daemon() {
    let mut d = Daemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let before = d.ok(&["logs", "ticker"]).lines().count();
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    d.spawn();
    let status = d.ok(&["inspect", "--format", "{{.State.Status}}", "ticker"]);
    assert_eq!(status.trim(), "running");
    let ps = d.ok(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.lines().any(|l| l == "ticker"), "{ps}");
    let after = d.ok(&["logs", "ticker"]).lines().count();
    assert!(
        after >= before + 5,
        "lines written while silod was down are missing: {before} -> {after}"
    );
}

/// Runs docker with `input` on stdin.
fn docker_with_input(d: &Daemon, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(DOCKER)
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn docker");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait docker")
}

#[test]
fn exec_attach_and_io_verbs() {
    let d = Daemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    // exec: stdin piped through the hijacked connection, EOF passed on.
    let out = docker_with_input(&d, &["exec", "-i", "box", "cat"], b"piped line\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped line\n");
    // exec: separate streams and the exit code.
    let out = d.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));

    // attach to a running container; closing stdin ends `cat`.
    d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "cat",
        "--network",
        "none",
        "busybox",
        "cat",
    ]);
    let out = docker_with_input(&d, &["attach", "cat"], b"via attach\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via attach\n");
    let logs = d.ok(&["logs", "cat"]);
    assert_eq!(logs, "via attach\n");

    // cp both ways.
    let f = d.dir.path().join("in.txt");
    std::fs::write(&f, "copied in\n").expect("write in.txt");
    d.ok(&["cp", f.to_str().expect("utf-8"), "box:/tmp/in.txt"]);
    assert_eq!(d.ok(&["exec", "box", "cat", "/tmp/in.txt"]), "copied in\n");
    let back = d.dir.path().join("back.txt");
    d.ok(&["cp", "box:/tmp/in.txt", back.to_str().expect("utf-8")]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("read back.txt"),
        "copied in\n"
    );
    let out = d.docker(&["cp", "box:/no/such/file", back.to_str().expect("utf-8")]);
    assert!(!out.status.success());

    // top and one-shot stats.
    let top = d.ok(&["top", "box"]);
    assert!(top.contains("sleep 1000"), "{top}");
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "box",
    ]);
    assert_eq!(stats.trim(), "box 1");

    // logs: tail and timestamps.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "lines",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done",
    ]);
    d.ok(&["wait", "lines"]);
    assert_eq!(d.ok(&["logs", "--tail", "2", "lines"]), "line4\nline5\n");
    let stamped = d.ok(&["logs", "-t", "--tail", "1", "lines"]);
    assert!(
        stamped.starts_with("20") && stamped.trim_end().ends_with(" line5"),
        "{stamped}"
    );

    // export streams a tar of the rootfs.
    let out = d.docker(&["export", "box"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.len() > 1024 * 1024,
        "export too small: {}",
        out.stdout.len()
    );
}

#[test]
fn volumes_images_and_disk_usage() {
    let d = Daemon::start();
    d.import_busybox();
    d.ok(&["volume", "create", "data"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]).trim(), "data");
    let run = |name: &str, cmd: &[&str]| {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "-v",
            "data:/data",
            "busybox",
        ];
        args.extend_from_slice(cmd);
        d.ok(&args);
        assert_eq!(d.ok(&["wait", name]).trim(), "0");
    };
    run("writer", &["sh", "-c", "echo kept > /data/f"]);
    run("reader", &["cat", "/data/f"]);
    assert_eq!(d.ok(&["logs", "reader"]), "kept\n");
    let out = d.docker(&["volume", "rm", "data"]);
    assert!(!out.status.success(), "a volume in use was removed");
    d.ok(&["rm", "writer", "reader"]);
    d.ok(&["volume", "rm", "data"]);
    let out = d.docker(&["volume", "inspect", "data"]);
    assert!(!out.status.success());

    d.ok(&["tag", "busybox", "other:v1"]);
    let tags = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == "other:v1"), "{tags}");
    d.ok(&["rmi", "other:v1"]);
    let id = d.ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert!(id.starts_with("sha256:"), "{id}");

    let df = d.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.lines().any(|l| l == "Images 1"), "{df}");
}

#[test]
fn config_file_and_bad_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("from-config.sock");
    let cfg = dir.path().join("silod.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "hosts": [format!("unix://{}", sock.display())],
            "data-root": dir.path().join("data"),
            "exec-root": dir.path().join("exec"),
            "monitor": helper("silo-monitor"),
            "runtime": helper("silo-runtime"),
        })
        .to_string(),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_silod"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn silod");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "silod did not listen on the configured socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.path().join("exec/silod.pid").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sock).expect("stat socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    let _ = child.kill();
    let _ = child.wait();

    let d = Daemon::start();
    let (head, body) = d.http_body("POST", "/containers/create", r#"{"Image":5}"#);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("Image"), "{body}");
    let (head, _) = d.http_body("POST", "/containers/create", "{not json");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (head, body) = d.http("POST", "/containers/nosuch/start");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(body.contains("No such container"), "{body}");
}

#[test]
#[ignore = "engine: Engine::open takes ~400 ms with 1000 containers on record (debug build); slow to set up (~35 s)"]
fn starts_fast_with_a_thousand_containers() {
    let mut d = Daemon::start();
    d.import_busybox();
    for i in 0..1000 {
        let (head, body) = d.http_body(
            "POST",
            &format!("/containers/create?name=c{i}"),
            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#,
        );
        assert!(head.starts_with("HTTP/1.1 201"), "{head} {body}");
    }
    d.terminate();
    let started = Instant::now();
    d.spawn();
    let elapsed = started.elapsed();
    let (head, _) = d.http("GET", "/_ping");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        elapsed < Duration::from_millis(100),
        "silod took {elapsed:?} to listen with 1000 containers"
    );
    for i in 0..1000 {
        let _ = d.http("DELETE", &format!("/containers/c{i}?force=1"));
    }
}

#[test]
fn run_with_piped_stdin() {
    let d = Daemon::start();
    d.import_busybox();
    for i in 0..5 {
        let line = format!("piped {i}\n");
        let out = docker_with_input(
            &d,
            &["run", "-i", "--rm", "--network", "none", "busybox", "cat"],
            line.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), line);
    }
}

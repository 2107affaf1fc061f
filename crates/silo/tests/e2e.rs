//! End-to-end tests of the `silo` CLI: the not-running message and
//! completions need no daemon; the rest start silod on a temporary socket,
//! data root and exec root, import busybox with `silo import`, and drive it
//! with `silo`. silod, silo-monitor and silo-runtime are looked up next to
//! the silo binary in the target dir (build them first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SILO: &str = env!("CARGO_BIN_EXE_silo");

fn silo_at(host: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(SILO)
        .arg("-H")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run silo")
}

#[test]
fn not_running_message_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("absent.sock");
    let host = format!("unix://{}", sock.display());
    let out = silo_at(&host, &["ps", "-a"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "Cannot connect to the silo daemon at {host}. Is silod running? Start it with: silod &  (or: systemctl start silod)"
        )
    );
    assert!(out.stdout.is_empty());
    // SILO_HOST is honoured the same way.
    let out = Command::new(SILO)
        .args(["images"])
        .env("SILO_HOST", &host)
        .output()
        .expect("run silo");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is silod running?"));
}

#[test]
fn bad_memory_string_fails_before_contacting_the_daemon() {
    // The socket does not exist: a flag error must win over the connection error.
    let out = silo_at(
        "unix:///nonexistent/silod.sock",
        &["run", "-m", "12x", "busybox", "true"],
    );
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"12x\"") && err.contains("--memory"), "{err}");
}

#[test]
fn completions_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef silo"),
        ("fish", "complete -c silo"),
    ] {
        let out = Command::new(SILO)
            .args(["completion", shell])
            .output()
            .expect("run silo");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            text.contains("hcs"),
            "{shell} completion lacks the hcs verb"
        );
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(SILO).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p silod -p silo-monitor -p silo-runtime)",
        p.display()
    );
    p
}

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
    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("silod.sock").display())
    }

    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("silod.log")).expect("log file");
        let mut d = Daemon { dir, child: None };
        let child = Command::new(sibling("silod"))
            .arg("-H")
            .arg(d.host())
            .arg("--data-root")
            .arg(d.dir.path().join("data"))
            .arg("--exec-root")
            .arg(d.dir.path().join("exec"))
            .arg("--monitor")
            .arg(sibling("silo-monitor"))
            .arg("--runtime")
            .arg(sibling("silo-runtime"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn silod");
        d.child = Some(child);
        let sock = d.dir.path().join("silod.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "silod did not listen; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("silod.log")).unwrap_or_default()
    }

    fn silo(&self, args: &[&str]) -> Output {
        silo_at(&self.host(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.silo(args);
        assert!(
            out.status.success(),
            "silo {args:?} failed ({:?}): stdout {:?} stderr {:?}\nsilod log:\n{}",
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let ids = self.silo(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.silo(&["rm", "-f", id]);
            }
            // SAFETY: kill(2) of our own unreaped child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
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

#[test]
fn run_rm_echo_hello_then_ps_is_empty() {
    let d = Daemon::start();
    d.import_busybox();
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let out = d.silo(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = d.silo(&["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error response from daemon: "));
}

#[test]
fn ps_logs_inspect() {
    let d = Daemon::start();
    d.import_busybox();
    d.ok(&[
        "run",
        "--name",
        "one",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let ps = d.ok(&["ps", "-a"]);
    let mut lines = ps.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("CONTAINER ID   IMAGE"), "{header}");
    assert!(header.ends_with("NAMES"), "{header}");
    let row = lines.next().expect("row");
    assert!(
        row.contains("busybox") && row.contains("Exited (0)") && row.ends_with("one"),
        "{row}"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Image}}"]),
        "one busybox\n"
    );
    let out = d.silo(&["logs", "one"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Like docker: --tail counts lines of both streams; the last one is "err".
    let out = d.silo(&["logs", "--tail", "1", "one"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}} {{.Name}}",
            "one"
        ]),
        "0 /one\n"
    );
    let out = d.silo(&["inspect", "nothere"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn exec_into_running_container() {
    let d = Daemon::start();
    d.import_busybox();
    let id = d.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "60"]);
    assert_eq!(id.trim().len(), 64, "{id:?}");
    assert_eq!(d.ok(&["exec", "sleeper", "echo", "inside"]), "inside\n");
    assert_eq!(
        d.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "sleeper",
            "sh",
            "-c",
            "echo $X $PWD"
        ]),
        "1 /tmp\n"
    );
    let out = d.silo(&["exec", "sleeper", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    d.ok(&["rm", "-f", "sleeper"]);
}

#[test]
fn hcs_list_shows_running_container() {
    let d = Daemon::start();
    d.import_busybox();
    let id = d.ok(&["run", "-d", "-m", "64m", "busybox", "sleep", "60"]);
    let list = d.ok(&["hcs", "list"]);
    let mut lines = list.lines();
    assert!(lines.next().expect("header").starts_with("ID "), "{list}");
    let row = lines
        .find(|l| l.starts_with(&id.trim()[..12]))
        .expect("row for the container");
    assert!(
        row.contains("running") && row.contains("silod") && row.contains("64MiB"),
        "{row}"
    );
    let doc = d.ok(&["hcs", "inspect", id.trim()]);
    let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(v["Id"].as_str(), Some(id.trim()));
}

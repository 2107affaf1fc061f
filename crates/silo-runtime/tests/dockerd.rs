//! Real callers: Debian's dockerd (with its own managed containerd) configured with
//! the runtime under test as `--runtime silo`, driven by the real `docker` client.
//! One test function runs the whole sequence, so only one private dockerd exists.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private dockerd on its own socket and directories; stopped and cleaned on drop.
struct Dockerd {
    child: Child,
    run_dir: PathBuf,
    data_root: PathBuf,
    host: String,
}

impl Dockerd {
    fn start(runtime: &Path) -> Dockerd {
        let tag = std::process::id();
        let run_dir = PathBuf::from(format!("/run/silo-test-docker-{tag}"));
        let data_root = PathBuf::from(format!("/var/lib/silo-test-docker-{tag}"));
        fs::create_dir_all(&run_dir).expect("create dockerd run dir");
        fs::create_dir_all(&data_root).expect("create dockerd data root");
        let sock = run_dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = fs::File::create(run_dir.join("dockerd.log")).expect("dockerd log");
        let log2 = log.try_clone().expect("clone log fd");
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(&host)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(run_dir.join("exec"))
            .arg("--pidfile")
            .arg(run_dir.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .arg("--ip-forward=false")
            .arg("--ip-masq=false")
            .arg("--userland-proxy=false")
            .arg("--add-runtime")
            .arg(format!("silo={}", runtime.display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn dockerd");
        let d = Dockerd {
            child,
            run_dir,
            data_root,
            host,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let o = self.docker(&["version", "--format", "{{.Server.Version}}"]);
            if o.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = fs::read_to_string(self.run_dir.join("dockerd.log")).unwrap_or_default();
        panic!(
            "dockerd did not answer on {} within 60s; log:\n{log}",
            self.host
        );
    }

    fn docker_cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.run_dir.join("client"))
            .stdin(Stdio::null());
        c
    }

    fn docker(&self, args: &[&str]) -> Output {
        let mut c = self.docker_cmd();
        c.args(args);
        output_timeout(c, Duration::from_secs(120))
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        let o = self.docker(&["inspect", "--format", format, id]);
        assert_ok(&o);
        stdout(&o).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of the dockerd child we spawned and not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_timeout(&mut self.child, Duration::from_secs(30)).is_none() {
            eprintln!("dockerd did not exit on SIGTERM; killed");
        }
        // Unmount whatever dockerd/containerd left under their directories.
        for dir in [&self.data_root, &self.run_dir] {
            let mut mps = mounts_under(dir);
            mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for mp in mps {
                let _ = Command::new("umount").arg("-l").arg(&mp).status();
            }
        }
        let _ = fs::remove_dir_all(&self.run_dir);
        let _ = fs::remove_dir_all(&self.data_root);
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn docker_cli_through_dockerd_with_runtime_silo() {
    for cmd in ["dockerd", "docker", "containerd", "script"] {
        if !have(cmd) {
            eprintln!("dockerd test skipped: {cmd} is not installed (apt-get install docker.io containerd bsdutils)");
            return;
        }
    }
    let runtime = runtime_path();
    let d = Dockerd::start(&runtime);

    // Import the busybox rootfs as the image busybox:latest.
    let template = rootfs_template();
    let mut import = d.docker_cmd();
    import.args(["import", "-", "busybox:latest"]);
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(template)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tar");
    import.stdin(tar.stdout.take().expect("tar stdout"));
    let o = output_timeout(import, Duration::from_secs(120));
    assert!(
        tar.wait().expect("wait tar").success(),
        "tar of the rootfs failed"
    );
    assert_ok(&o);

    let base = ["run", "--rm", "--runtime", "silo", "--network", "none"];

    // Output and exit codes.
    let mut args = base.to_vec();
    args.extend(["busybox", "echo", "hello"]);
    let o = d.docker(&args);
    assert_ok(&o);
    assert_eq!(stdout(&o), "hello\n");

    let mut args = base.to_vec();
    args.extend(["busybox", "sh", "-c", "exit 7"]);
    let o = d.docker(&args);
    assert_eq!(o.status.code(), Some(7), "stderr: {}", stderr(&o));

    // Detached container: exec, pause/unpause, stop, rm.
    let o = d.docker(&[
        "run",
        "-d",
        "--runtime",
        "silo",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    assert_ok(&o);
    let id = stdout(&o).trim().to_string();
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");
    assert_eq!(d.inspect(&id, "{{.HostConfig.Runtime}}"), "silo");

    let o = d.docker(&["exec", &id, "sh", "-c", "echo in-exec; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "in-exec\n");

    assert_ok(&d.docker(&["pause", &id]));
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "paused");
    assert_ok(&d.docker(&["unpause", &id]));
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "running");

    let t0 = Instant::now();
    assert_ok(&d.docker(&["stop", "-t", "10", &id]));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(8), "docker stop took {took:?}");
    assert_eq!(d.inspect(&id, "{{.State.Status}}"), "exited");
    assert_eq!(d.inspect(&id, "{{.State.ExitCode}}"), "0");
    assert_ok(&d.docker(&["rm", &id]));
    let o = d.docker(&["ps", "-aq"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "", "containers left: {}", stdout(&o));

    // Interactive run through a pty (script(1) provides the terminal).
    let mut c = Command::new("script");
    c.env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", d.run_dir.join("client"))
        .args([
            "-qec",
            "docker run -it --rm --runtime silo --network none busybox sh -c 'tty; echo ok'",
            "/dev/null",
        ])
        .stdin(Stdio::null());
    let o = output_timeout(c, Duration::from_secs(120));
    let text = stdout(&o);
    assert_ok(&o);
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
    assert!(text.contains("ok"), "tty output: {text:?}");
}

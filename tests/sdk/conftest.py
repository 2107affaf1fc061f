"""A private silod per test module, driven with the Docker SDK for Python.

silod, silo-monitor and silo-runtime come from target/debug (SILO_BIN_DIR
overrides); the busybox image is imported from a rootfs built by
scripts/mkrootfs.sh, as the Rust tests do.
"""
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time

import docker
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SILO_BIN_DIR", os.path.join(REPO, "target", "debug"))


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory):
    """A tarball of the busybox rootfs, built once per session."""
    d = tmp_path_factory.mktemp("rootfs")
    root = d / "rootfs"
    subprocess.run([os.path.join(REPO, "scripts", "mkrootfs.sh"), str(root)],
                   check=True, stdout=subprocess.DEVNULL)
    tar = d / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        for name in sorted(os.listdir(root)):
            t.add(root / name, arcname=name)
    return str(tar)


class Silod:
    """silod on a socket, data root and exec root in one temporary directory."""

    def __init__(self, netns=False, extra=()):
        """With netns, silod runs in a network namespace of its own (loopback
        up), so networks it makes never touch the host's; `extra` are more
        silod flags."""
        # Short: the exec root must stay under 28 bytes (unix socket paths).
        self.dir = tempfile.mkdtemp(prefix="sdk.", dir="/tmp")
        self.sock = os.path.join(self.dir, "s.sock")
        self.log = open(os.path.join(self.dir, "silod.log"), "ab")
        wrap = (["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
                if netns else [])
        self.proc = subprocess.Popen(
            wrap + [os.path.join(BIN, "silod"), "-H", "unix://" + self.sock,
             "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "x"),
             "--monitor", os.path.join(BIN, "silo-monitor"),
             "--runtime", os.path.join(BIN, "silo-runtime"),
             "--log-level", "debug", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError("silod did not listen: " + self.read_log())
        self.client = docker.DockerClient(base_url="unix://" + self.sock, timeout=60)

    def read_log(self):
        with open(os.path.join(self.dir, "silod.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def children(self):
        """The pids of silod's children (any thread's)."""
        out = []
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    out += f.read().split()
            except OSError:
                pass
        return out

    def zombies(self, settle=1.5):
        # A child that just exited is a zombie until the engine's own wait
        # (a monitor's pidfd watch) collects it, which takes a moment: only
        # one that stays a zombie past `settle` seconds counts. silod's
        # reaper would collect a true orphan after 3 s, so it is still seen.
        deadline = time.monotonic() + settle
        while True:
            found = self._zombies_now()
            if not found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def _zombies_now(self):
        found = []
        for pid in self.children():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                found.append(stat)
        return found

    def stop(self):
        for c in self.client.containers.list(all=True):
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir], check=False)


@pytest.fixture(scope="module")
def silod(rootfs_tar):
    """silod in a network namespace of its own (its default network never
    touches the host's), with busybox."""
    d = Silod(netns=True)
    d.client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
    yield d
    d.stop()


@pytest.fixture
def client(silod):
    return silod.client


@pytest.fixture(scope="module")
def silod_netns(rootfs_tar):
    """A silod in a network namespace of its own, with busybox."""
    d = Silod(netns=True)
    d.client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def dockerd(rootfs_tar):
    """Debian's dockerd on a private socket and data root, with busybox."""
    tag = os.getpid()
    run = f"/run/silo-sdk-dockerd-{tag}"
    data = f"/var/lib/silo-sdk-dockerd-{tag}"
    os.makedirs(run, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    sock = run + "/docker.sock"
    log = open(run + "/dockerd.log", "w")
    proc = subprocess.Popen(
        ["dockerd", "-H", "unix://" + sock, "--data-root", data, "--exec-root", run + "/exec",
         "--pidfile", run + "/docker.pid", "--bridge", "none", "--iptables=false",
         "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
         "--userland-proxy=false"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    client = None
    deadline = time.time() + 60
    while time.time() < deadline and client is None:
        if os.path.exists(sock):
            try:
                c = docker.DockerClient(base_url="unix://" + sock, timeout=60)
                c.ping()
                client = c
            except Exception:
                pass
        time.sleep(0.25)
    try:
        assert client is not None, "dockerd did not answer: " + open(run + "/dockerd.log").read()
        client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
        yield client
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["sh", "-c", f"grep -o '[^ ]*{data}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"],
                       check=False)
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)



def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry on a free port of 127.0.0.1; yields "127.0.0.1:PORT"."""
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    cfg = d / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d}/data\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(d / "registry.log", "w")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise RuntimeError("docker-registry did not listen")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
    log.close()

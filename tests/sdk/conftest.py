"""A private silod per test module, driven with the Docker SDK for Python.

silod, silo-monitor and silo-runtime come from target/debug (SILO_BIN_DIR
overrides); the busybox image is imported from a rootfs built by
scripts/mkrootfs.sh, as the Rust tests do.
"""
import os
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

    def __init__(self):
        # Short: the exec root must stay under 28 bytes (unix socket paths).
        self.dir = tempfile.mkdtemp(prefix="sdk.", dir="/tmp")
        self.sock = os.path.join(self.dir, "s.sock")
        self.log = open(os.path.join(self.dir, "silod.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "silod"), "-H", "unix://" + self.sock,
             "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "x"),
             "--monitor", os.path.join(BIN, "silo-monitor"),
             "--runtime", os.path.join(BIN, "silo-runtime"),
             "--log-level", "debug"],
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

    def zombies(self):
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
    d = Silod()
    d.client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
    yield d
    d.stop()


@pytest.fixture
def client(silod):
    return silod.client

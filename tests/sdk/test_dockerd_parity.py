"""The same SDK calls against Debian's dockerd and silod: every key dockerd's
container inspect document has, silod's has too (values may differ)."""
import os
import shutil
import subprocess
import time

import docker
import pytest

# What silod leaves out on purpose: it has no networks until the network
# service lands, so no endpoint under NetworkSettings.Networks.
ALLOWED_MISSING = ("NetworkSettings.Networks.",)


@pytest.fixture(scope="module")
def dockerd(rootfs_tar):
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


def key_paths(value, prefix=""):
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(prefix + k)
            out |= key_paths(v, prefix + k + ".")
    return out


@pytest.mark.parametrize("kwargs", [
    {},
    {"detach": True, "tty": True, "stdin_open": True, "labels": {"a": "b"},
     "environment": {"X": "1"}, "working_dir": "/tmp", "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 2}},
])
def test_inspect_has_every_key_dockerd_has(client, dockerd, kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k != "detach"}
    docs = []
    for c in (dockerd, client):
        ct = c.containers.create("busybox", ["sleep", "1"], **kwargs)
        try:
            docs.append(c.api.inspect_container(ct.id))
        finally:
            ct.remove(force=True)
    theirs, ours = docs
    missing = sorted(p for p in key_paths(theirs) - key_paths(ours)
                     if not p.startswith(ALLOWED_MISSING))
    assert missing == [], missing
    # The values clients branch on agree.
    assert ours["HostConfig"]["LogConfig"]["Type"] == theirs["HostConfig"]["LogConfig"]["Type"]
    assert ours["HostConfig"]["RestartPolicy"] == theirs["HostConfig"]["RestartPolicy"]
    assert ours["State"]["Status"] == theirs["State"]["Status"] == "created"
    assert ours["Config"]["Labels"] == theirs["Config"]["Labels"]

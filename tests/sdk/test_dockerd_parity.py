"""The same SDK calls against Debian's dockerd and silod: every key dockerd's
container inspect document has, silod's has too (values may differ)."""
import pytest

# What silod leaves out on purpose: it has no networks until the network
# service lands, so no endpoint under NetworkSettings.Networks.
ALLOWED_MISSING = ("NetworkSettings.Networks.",)


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


# Removed from the Engine API in 1.44/1.45 (silod speaks 1.45; Debian's dockerd
# is 20.10, API 1.41): VirtualSize, Container, ContainerConfig.
IMAGE_ALLOWED_MISSING = ("VirtualSize", "Container", "ContainerConfig")


def test_image_inspect_has_every_key_dockerd_has(client, dockerd):
    docs = [c.api.inspect_image("busybox:latest") for c in (dockerd, client)]
    missing = sorted(k for k in key_paths(docs[0]) - key_paths(docs[1])
                     if k.split(".")[0] not in IMAGE_ALLOWED_MISSING)
    assert not missing, f"silod's image inspect lacks {missing}"

"""Images through the Docker SDK: pull and push with a real registry,
save and load, and round trips with Debian's dockerd in both directions."""
import io
import tarfile

import docker
import pytest

from conftest import Silod


@pytest.fixture(scope="module")
def silod(rootfs_tar):
    """Here silod stays in the host's network namespace: the registry
    listens on the host's loopback. Containers use network_mode="none"."""
    d = Silod(netns=False)
    d.client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
    yield d
    d.stop()


def run_echo(client, image, word):
    out = client.containers.run(image, ["echo", word], remove=True, network_mode="none")
    return out.decode().strip()


def test_push_and_pull_with_the_sdk(client, registry):
    name = f"{registry}/sdk/bb"
    client.images.get("busybox:latest").tag(name, "v1")
    lines = list(client.api.push(name, tag="v1", stream=True, decode=True))
    assert not [l for l in lines if "error" in l], lines
    aux = [l["aux"] for l in lines if "aux" in l]
    assert aux and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:"), lines
    client.images.remove(f"{name}:v1")
    img = client.images.pull(name, tag="v1")
    assert f"{name}:v1" in img.tags
    assert img.attrs["RepoDigests"] == [f"{name}@{aux[0]['Digest']}"]
    assert run_echo(client, f"{name}:v1", "pulled") == "pulled"
    # Streamed pull progress has Docker's shape.
    events = list(client.api.pull(name, tag="v1", stream=True, decode=True))
    assert any(e.get("status", "").startswith("Status: Image is up to date") for e in events), events
    # An unknown tag is an error the SDK raises.
    with pytest.raises(docker.errors.NotFound):
        client.images.pull(name, tag="nope")
    # The registry's view, as `docker manifest`-less clients read it.
    dist = client.api.inspect_distribution(f"{name}:v1")
    assert dist["Descriptor"]["digest"] == aux[0]["Digest"]
    assert dist["Platforms"][0]["os"] == "linux"


def test_save_and_load_several_images(client):
    client.images.get("busybox:latest").tag("second", "x")
    # The SDK saves one name per call; docker save A B uses /images/get.
    res = client.api._get(client.api._url("/images/get"),
                          params={"names": ["busybox:latest", "second:x"]})
    assert res.status_code == 200, res.text
    data = res.content
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "index.json" in names and "manifest.json" in names and "oci-layout" in names
    client.images.remove("second:x")
    loaded = client.images.load(data)
    # The SDK returns each loaded image with all of its tags.
    tags = {t for i in loaded for t in i.tags}
    assert {"busybox:latest", "second:x"} <= tags, tags
    assert run_echo(client, "second:x", "loaded") == "loaded"


def test_a_truncated_archive_is_refused_and_stores_nothing(client):
    data = b"".join(client.api.get_image("busybox:latest"))
    before = sorted(i.id for i in client.images.list(all=True))
    for cut in (len(data) // 2, 700):
        with pytest.raises(docker.errors.APIError) as e:
            client.images.load(data[:cut])
        assert e.value.status_code == 400, e.value
    with pytest.raises(docker.errors.APIError):
        client.images.load(b"not a tar at all" * 100)
    assert sorted(i.id for i in client.images.list(all=True)) == before


def test_silod_images_load_into_dockerd_and_back(client, dockerd):
    client.images.get("busybox:latest").tag("fromsilo", "1")
    data = b"".join(client.api.get_image("fromsilo:1"))
    loaded = dockerd.images.load(data)
    assert "fromsilo:1" in loaded[0].tags
    assert run_echo(dockerd, "fromsilo:1", "in-dockerd") == "in-dockerd"
    # dockerd's own (older) archive format, loaded by silod.
    dockerd.images.get("busybox:latest").tag("fromdockerd", "1")
    back = b"".join(dockerd.api.get_image("fromdockerd:1"))
    loaded = client.images.load(back)
    assert "fromdockerd:1" in loaded[0].tags
    assert loaded[0].id == dockerd.images.get("fromdockerd:1").id
    assert run_echo(client, "fromdockerd:1", "in-silod") == "in-silod"


def test_registry_round_trip_with_dockerd(client, dockerd, registry):
    # dockerd pushes, silod pulls.
    name = f"{registry}/dockerd/bb"
    dockerd.images.get("busybox:latest").tag(name, "1")
    for line in dockerd.api.push(name, tag="1", stream=True, decode=True):
        assert "error" not in line, line
    img = client.images.pull(name, tag="1")
    assert img.id == dockerd.images.get(f"{name}:1").id
    assert run_echo(client, f"{name}:1", "from-dockerd") == "from-dockerd"
    # silod pushes, dockerd pulls.
    name2 = f"{registry}/silod/bb"
    client.images.get("busybox:latest").tag(name2, "1")
    for line in client.api.push(name2, tag="1", stream=True, decode=True):
        assert "error" not in line, line
    pulled = dockerd.images.pull(name2, tag="1")
    assert pulled.id == client.images.get(f"{name2}:1").id
    assert run_echo(dockerd, f"{name2}:1", "from-silod") == "from-silod"


def test_commit_and_history_with_the_sdk(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo sdk > /committed"],
                              network_mode="none", detach=True)
    c.wait()
    img = c.commit(repository="sdkcommit", tag="1", message="from the sdk", author="sdk",
                   changes=["ENV FROM_SDK=1"])
    assert "sdkcommit:1" in img.tags
    assert "FROM_SDK=1" in img.attrs["Config"]["Env"]
    assert img.attrs["Author"] == "sdk"
    hist = img.history()
    assert hist[0]["Comment"] == "from the sdk" and len(hist) == 2, hist
    assert run_echo(client, "sdkcommit:1", "x") == "x"
    out = client.containers.run("sdkcommit:1", ["cat", "/committed"], remove=True,
                                network_mode="none")
    assert out.decode().strip() == "sdk"
    c.remove()
    with pytest.raises(docker.errors.APIError) as e:
        client.api.commit("nosuch", repository="x")
    assert e.value.status_code == 404


def test_a_registry_host_mirror_serves_docker_pulls(client, registry):
    # --registry-host-mirror: a pull of registry.k8s.io/... is served by the
    # mirror on 127.0.0.1 (no traffic to registry.k8s.io), through the SDK.
    name = f"{registry}/pause"
    client.images.get("busybox:latest").tag(name, "3.9")
    client.images.push(name, tag="3.9")
    d = Silod(netns=False, extra=["--no-cri", "--registry-host-mirror",
                                  f"registry.k8s.io=http://{registry}"])
    try:
        img = d.client.images.pull("registry.k8s.io/pause", tag="3.9")
        assert "registry.k8s.io/pause:3.9" in img.tags
        assert img.id == client.images.get(f"{name}:3.9").id
    finally:
        d.stop()

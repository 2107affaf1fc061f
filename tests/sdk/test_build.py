"""Image builds through the Docker SDK (images.build): the result, the
cache, a failing step as BuildError, and the image config compared with
what Debian's dockerd (its classic builder) makes of the same Dockerfile."""
import io
import os
import tarfile

import docker
import pytest

DOCKERFILE = """\
ARG BASE=busybox
FROM ${BASE} AS build
ARG WHO=world
ENV GREETING="hello ${WHO}" PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /srv/app
COPY app.txt ./
RUN echo "$GREETING" > greeting
FROM busybox
ARG WHO
ENV WHO=${WHO:-nobody}
COPY --from=build /srv/app /opt/app
WORKDIR /opt/app
USER 1000
EXPOSE 80 53/udp
VOLUME ["/data"]
LABEL org.example.app=demo version=1
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["true"]
ENTRYPOINT ["cat"]
CMD ["greeting"]
"""


def context(dockerfile=DOCKERFILE):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("Dockerfile", dockerfile), ("app.txt", "app\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data.encode()))
    buf.seek(0)
    return buf


def test_build_with_the_sdk(silod_netns):
    client = silod_netns.client
    image, logs = client.images.build(fileobj=context(), custom_context=True, tag="sdkbuild:1",
                                      buildargs={"WHO": "silo"}, rm=True)
    lines = [l.get("stream", "") for l in logs]
    assert any("Successfully built" in l for l in lines), lines
    assert "sdkbuild:1" in image.tags
    assert client.containers.run("sdkbuild:1", remove=True).decode() == "hello silo\n"
    _, again = client.images.build(fileobj=context(), custom_context=True, tag="sdkbuild:2",
                                   buildargs={"WHO": "silo"})
    assert sum("Using cache" in l.get("stream", "") for l in again) >= 10
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(fileobj=context("FROM busybox\nRUN exit 7\n"), custom_context=True)
    assert "non-zero code: 7" in str(e.value)
    assert client.containers.list(all=True) == []


def test_build_config_matches_dockerds(silod_netns, dockerd):
    got = {}
    for name, client in (("silod", silod_netns.client), ("dockerd", dockerd)):
        image, _ = client.images.build(fileobj=context(), custom_context=True, tag="parity:1",
                                       buildargs={"WHO": "x"})
        cfg = image.attrs["Config"]
        got[name] = {k: cfg.get(k) for k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User",
                                            "ExposedPorts", "Volumes", "Labels", "StopSignal",
                                            "Healthcheck")}
        got[name]["history"] = len(image.history())
    assert got["silod"] == got["dockerd"], got


def test_build_options_are_honoured_or_refused(silod_netns):
    client = silod_netns.client
    df = "FROM busybox\nRUN echo kept > /k\n"
    before = {c.id for c in client.containers.list(all=True)}
    # rm=False (the SDK's default) keeps the intermediate containers, as dockerd does.
    client.images.build(fileobj=context(df), custom_context=True, rm=False, nocache=True)
    kept = [c for c in client.containers.list(all=True) if c.id not in before]
    assert len(kept) == 1, kept
    for c in kept:
        c.remove(force=True)
    client.images.build(fileobj=context(df), custom_context=True, rm=True, nocache=True)
    assert {c.id for c in client.containers.list(all=True)} == before
    # What silo's builder does not do is refused, never ignored.
    for kwargs in ({"container_limits": {"memory": 64 << 20}},):
        with pytest.raises((docker.errors.APIError, docker.errors.BuildError)) as e:
            client.images.build(fileobj=context(df), custom_context=True, **kwargs)
        assert "not supported" in str(e.value), (kwargs, e.value)


def test_build_query_options_reach_the_steps(silod_netns):
    client = silod_netns.client
    df = ("FROM busybox\nCOPY --chown=nobody:nogroup app.txt /owned\n"
          "RUN stat -c '%u:%g' /owned > /owner; grep -c myhost /etc/hosts > /hosts; "
          "ls /sys/class/net > /links\n")
    image, _ = client.images.build(fileobj=context(df), custom_context=True, rm=True,
                                   labels={"built.by": "sdk"}, extra_hosts={"myhost": "10.1.2.3"},
                                   network_mode="none", tag="opts:1")
    assert image.labels["built.by"] == "sdk"
    out = client.containers.run("opts:1", ["cat", "/owner", "/hosts", "/links"], remove=True,
                                network_mode="none").decode()
    assert out == "65534:65534\n1\nlo\n", out
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(fileobj=context("FROM busybox\nCOPY --chown=nosuchuser app.txt /x\n"),
                            custom_context=True)
    assert "nosuchuser" in str(e.value)


def test_cache_from_reuses_the_layers_of_a_given_image(silod_netns):
    client = silod_netns.client
    df = "FROM busybox\nCOPY app.txt /app.txt\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nCMD [\"cat\", \"/stamp\"]\n"
    client.images.build(fileobj=context(df), custom_context=True, rm=True, tag="cf:1")
    first = client.containers.run("cf:1", remove=True)
    client.api.prune_builds()
    # With --cache-from the given image is the cache: the RUN does not run again.
    _, logs = client.images.build(fileobj=context(df), custom_context=True, rm=True, tag="cf:2",
                                  cache_from=["cf:1"])
    assert sum("Using cache" in l.get("stream", "") for l in logs) >= 2, list(logs)
    assert client.containers.run("cf:2", remove=True) == first
    # Without it (the local cache pruned) the RUN runs again.
    client.images.build(fileobj=context(df), custom_context=True, rm=True, tag="cf:3")
    assert client.containers.run("cf:3", remove=True) != first

"""Engine API conformance through the Docker SDK for Python (strict about
key case and stream bytes, unlike the docker CLI)."""
import docker
import pytest


def test_exec_run_answers_id_and_output(client):
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        # exec_create must answer {"Id": ...}: the SDK reads that key.
        created = client.api.exec_create(c.id, ["true"])
        assert set(created) == {"Id"}, created
        # The 101 goes out before the process starts: no lost first bytes.
        for _ in range(20):
            code, out = c.exec_run(["echo", "hello"])
            assert (code, out) == (0, b"hello\n")
        code, out = c.exec_run("whoami")
        assert (code, out) == (0, b"root\n")
        code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2; exit 3"], demux=True)
        assert (code, out, err) == (3, b"o\n", b"e\n")
    finally:
        c.remove(force=True)


def test_exec_of_a_missing_binary_reports_its_exit_code(client):
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        code, out = c.exec_run(["nosuchbinary"])
        assert code == 127, (code, out)
        assert b"nosuchbinary" in out, out
        code, out = c.exec_run(["/etc/passwd"])
        assert code == 126, (code, out)
        # The container is unharmed.
        assert c.exec_run(["true"]).exit_code == 0
    finally:
        c.remove(force=True)


def test_run_with_and_without_detach_and_remove(client, silod):
    # containers.run reads HostConfig.LogConfig.Type from inspect.
    out = client.containers.run("busybox", ["echo", "hi"], remove=True)
    assert out == b"hi\n"
    c = client.containers.run("busybox", ["sh", "-c", "echo bye"], detach=True)
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs() == b"bye\n"
    c.reload()
    assert c.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
    c.remove()
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert e.value.exit_status == 4
    assert client.containers.list(all=True) == []


def test_failed_start_of_remove_container_removes_it(client, silod):
    # auto_remove is the daemon's --rm: a failed start removes the container.
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.run("busybox", ["nosuchcommand"], auto_remove=True,
                              name="gone")
    assert "nosuchcommand" in str(e.value)
    assert e.value.status_code == 400
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("gone")
    # Without it the container stays, with dockerd's exit code.
    c = client.containers.create("busybox", ["nosuchcommand"])
    with pytest.raises(docker.errors.APIError):
        c.start()
    c.reload()
    assert c.attrs["State"]["ExitCode"] == 127, c.attrs["State"]
    assert "nosuchcommand" in c.attrs["State"]["Error"]
    c.remove()
    assert silod.zombies() == []


def test_attach_without_stream_returns_the_logs(client):
    c = client.containers.run("busybox", ["sh", "-c", "echo one; echo two >&2"], detach=True)
    try:
        assert c.wait(timeout=30)["StatusCode"] == 0
        out = c.attach(stdout=True, stderr=True, logs=True, stream=False)
        assert out == b"one\ntwo\n", out
        out = c.attach(stdout=True, stderr=False, logs=True, stream=False)
        assert out == b"one\n", out
        # Nothing asked for: an empty answer, at once.
        assert c.attach(stdout=True, stderr=True, logs=False, stream=False) == b""
    finally:
        c.remove(force=True)


def test_info_and_swarm(client):
    info = client.info()
    for key in ["ExperimentalBuild", "Debug", "NFd", "NGoroutines", "SystemTime",
                "LiveRestoreEnabled", "Swarm", "Plugins", "IndexServerAddress",
                "MemoryLimit", "OSVersion"]:
        assert key in info, key
    assert info["ExperimentalBuild"] is False
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    # The SDK treats 503 as "not in a swarm".
    with pytest.raises(docker.errors.APIError) as e:
        client.swarm.reload()
    assert e.value.status_code == 503
    assert "not a swarm manager" in str(e.value)


def test_group_add_is_honoured(client):
    # By number and by name (the test rootfs has group silo, 1000).
    out = client.containers.run("busybox", ["id", "-G"], group_add=["4242", "silo"],
                                remove=True)
    gids = out.decode().split()
    assert "4242" in gids and "1000" in gids, gids
    c = client.containers.run("busybox", ["sleep", "1000"], group_add=["4243"], detach=True)
    try:
        # Execs get the container's groups too, as with dockerd.
        code, out = c.exec_run(["id", "-G"])
        assert code == 0 and "4243" in out.decode().split(), out
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.run("busybox", ["true"], group_add=["nosuchgroup"],
                              auto_remove=True)
    assert "Unable to find group nosuchgroup" in str(e.value)


def test_mount_options_not_honoured_are_refused(client):
    from docker.types import Mount
    m = Mount("/data", "vol1", type="volume")
    m["VolumeOptions"] = {"Subpath": "sub"}
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", ["true"], mounts=[m])
    assert e.value.status_code == 400
    assert "Subpath" in str(e.value)


def test_diff(client):
    c = client.containers.run(
        "busybox", ["sh", "-c", "touch /tmp/new && echo x >> /etc/group && rm /bin/vi"],
        detach=True)
    try:
        assert c.wait(timeout=30)["StatusCode"] == 0
        changes = {ch["Path"]: ch["Kind"] for ch in c.diff()}
        assert changes.get("/tmp/new") == 1, changes
        assert changes.get("/tmp") == 0, changes
        assert changes.get("/bin/vi") == 2, changes
        assert changes.get("/etc/group") == 0, changes
        assert "/bin" in changes and "/etc/passwd" not in changes, changes
    finally:
        c.remove(force=True)


def test_inspect_network_settings_and_stats_networks(client):
    c = client.containers.run("busybox", ["sleep", "1000"], detach=True)
    try:
        c.reload()  # run() returns the attributes from before the start
        ns = c.attrs["NetworkSettings"]
        for key in ["MacAddress", "IPAddress", "Gateway", "Ports", "Networks", "SandboxKey"]:
            assert key in ns, key
        # On the default network: an address, and eth0 in the stats
        # (loopback is left out, as dockerd does).
        assert ns["IPAddress"].startswith("172.17."), ns
        assert ns["Networks"]["nat"]["IPAddress"] == ns["IPAddress"]
        s = c.stats(stream=False)
        assert set(s["networks"]) == {"eth0"}, s.get("networks")
        assert s["networks"]["eth0"]["rx_packets"] >= 0
        assert s["pids_stats"]["current"] >= 1
    finally:
        c.remove(force=True)


def _tar(name, data):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_on_a_created_container_sees_volumes_and_binds(client, tmp_path):
    import io
    import tarfile
    bind = tmp_path / "bind"
    bind.mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    c = client.containers.create(
        "busybox", ["sh", "-c", "cat /data/a.txt /bind/b.txt"],
        volumes={"sdkvol": {"bind": "/data", "mode": "rw"},
                 str(bind): {"bind": "/bind", "mode": "rw"},
                 str(ro): {"bind": "/ro", "mode": "ro"}})
    try:
        assert c.put_archive("/data", _tar("a.txt", b"in the volume\n"))
        assert c.put_archive("/bind/", _tar("b.txt", b"in the bind\n"))
        assert (bind / "b.txt").read_bytes() == b"in the bind\n"
        stream, stat = c.get_archive("/data/a.txt")
        assert stat["name"] == "a.txt"
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            assert t.extractfile("a.txt").read() == b"in the volume\n"
        stream, stat = c.get_archive("/data")
        assert stat["name"] == "data"
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            assert "data/a.txt" in t.getnames(), t.getnames()
        with pytest.raises(docker.errors.APIError) as e:
            c.put_archive("/ro", _tar("x", b"x"))
        assert "read-only" in str(e.value)
        c.start()
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert c.logs() == b"in the volume\nin the bind\n"
    finally:
        c.remove(force=True, v=True)
        try:
            client.volumes.get("sdkvol").remove()
        except docker.errors.NotFound:
            pass


def test_volumes_from_devices_and_device_cgroup_rules(client):
    donor = client.containers.create("busybox", ["true"],
                                     volumes={"sdkshared": {"bind": "/shared", "mode": "rw"}})
    try:
        out = client.containers.run("busybox", ["sh", "-c", "echo hi > /shared/f; cat /shared/f"],
                                    volumes_from=[donor.id], remove=True)
        assert out == b"hi\n"
        # :ro makes them read-only.
        with pytest.raises(docker.errors.ContainerError):
            client.containers.run("busybox", ["sh", "-c", "echo x > /shared/g"],
                                  volumes_from=[donor.id + ":ro"], remove=True)
        # A host device at another path, usable inside.
        out = client.containers.run(
            "busybox", ["sh", "-c", "test -c /dev/mynull && echo ok > /dev/mynull && echo fine"],
            devices=["/dev/null:/dev/mynull:rwm"], device_cgroup_rules=["c 1:3 rwm"],
            remove=True)
        assert out == b"fine\n"
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", ["true"], device_cgroup_rules=["x 1:3 rwm"])
        assert "invalid device cgroup rule" in str(e.value)
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", ["true"], devices=["/etc/passwd"])
        assert "not a device" in str(e.value)
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.create("busybox", ["true"], volumes_from=["nosuchcontainer"])
        assert e.value.status_code == 404
    finally:
        donor.remove(force=True, v=True)
        try:
            client.volumes.get("sdkshared").remove()
        except docker.errors.NotFound:
            pass


def _read_until(sock, want, limit=10):
    """Reads until `want` has come (the stream stays open)."""
    import time
    raw = sock._sock
    raw.settimeout(limit)
    data = b""
    deadline = time.time() + limit
    while want not in data and time.time() < deadline:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    assert want in data, data
    return data


def _read_until_eof(sock, limit=10):
    import socket as pysocket
    import time
    raw = sock._sock
    raw.settimeout(limit)
    data = b""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            chunk = raw.recv(4096)
        except pysocket.timeout:
            raise AssertionError("the attach did not end: %r" % data)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the attach did not end: %r" % data)


def test_detach_keys_let_the_client_go_and_keep_the_container(client):
    c = client.containers.run("busybox", ["cat"], stdin_open=True, detach=True)
    try:
        s = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1,
                                                   "detachKeys": "ctrl-x,x"})
        s._sock.sendall(b"one\n")
        _read_until(s, b"one\n")
        s._sock.sendall(b"\x18x")
        _read_until_eof(s)
        c.reload()
        assert c.status == "running", "detaching stopped the container"
        # Its stdin is still open: another client can write to it.
        s = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        s._sock.sendall(b"two\n")
        _read_until(s, b"two\n")
        s._sock.sendall(b"\x10\x11")  # the default keys
        _read_until_eof(s)
        c.reload()
        assert c.status == "running"
        # Exec with detach keys.
        exec_id = client.api.exec_create(c.id, ["cat"], stdin=True, detach_keys="ctrl-a")["Id"]
        s = client.api.exec_start(exec_id, socket=True)
        s._sock.sendall(b"three\n")
        _read_until(s, b"three\n")
        s._sock.sendall(b"\x01")
        _read_until_eof(s)
        assert client.api.exec_inspect(exec_id)["Running"] is True
        with pytest.raises(docker.errors.APIError) as e:
            client.api.attach_socket(c.id, params={"stdin": 1, "stream": 1,
                                                   "detachKeys": "ctrl-1"})
        assert "Invalid detach keys" in str(e.value)
    finally:
        c.remove(force=True)


def test_log_config_is_honoured_or_refused(client):
    from docker.types import LogConfig
    c = client.containers.run("busybox", ["echo", "hi"], detach=True,
                              log_config=LogConfig(type="none"))
    try:
        c.wait(timeout=30)
        with pytest.raises(docker.errors.APIError) as e:
            c.logs()
        assert "does not support reading" in str(e.value)
    finally:
        c.remove(force=True)
    c = client.containers.run("busybox", ["echo", "hi"], detach=True,
                              log_config=LogConfig(type="json-file",
                                                   config={"max-size": "1m", "max-file": "2"}))
    try:
        c.wait(timeout=30)
        assert c.logs() == b"hi\n"
        assert c.attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": "1m", "max-file": "2"}
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create("busybox", ["true"], log_config=LogConfig(type="syslog"))
    assert "no log driver named 'syslog'" in str(e.value)

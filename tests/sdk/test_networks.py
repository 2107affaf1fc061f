"""Networks through the Docker SDK, with silod in a network namespace of
its own: create with IPAM, list, get, containers on the network with the
addresses inspect reports, aliases, remove and prune."""
import subprocess

import docker
import pytest
from docker.types import IPAMConfig, IPAMPool


def test_networks_with_the_sdk(silod_netns):
    client = silod_netns.client
    net = client.networks.create(
        "sdknet", driver="bridge",
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.80.0.0/24", gateway="10.80.0.1")]),
        labels={"app": "sdk"})
    assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.80.0.0/24"
    assert [n.name for n in client.networks.list(names=["sdknet"])] == ["sdknet"]
    assert {n.name for n in client.networks.list()} >= {"sdknet", "nat", "host", "none"}
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.create("sdknet")
    assert e.value.status_code == 409
    # Fields silo does not honour yet are refused, not ignored.
    for kwargs in ({"options": {"com.docker.network.bridge.nosuch": "x"}},
                   {"options": {"com.docker.network.driver.mtu": "nine"}}):
        with pytest.raises(docker.errors.APIError) as e:
            client.networks.create("refused", **kwargs)
        assert e.value.status_code == 400, (kwargs, e.value)
    assert "refused" not in {n.name for n in client.networks.list()}
    server = client.containers.run("busybox", ["sleep", "300"], detach=True,
                                   network="sdknet", name="sdkserver")
    server.reload()
    ip = server.attrs["NetworkSettings"]["Networks"]["sdknet"]["IPAddress"]
    assert ip == "10.80.0.2"
    out = client.containers.run(
        "busybox", ["sh", "-c", f"ping -c 1 -W 3 {ip} >/dev/null && echo reached"],
        network="sdknet", remove=True)
    assert out.decode().strip() == "reached"
    net.reload()
    assert server.id in net.attrs["Containers"]
    with pytest.raises(docker.errors.APIError) as e:
        net.remove()
    assert e.value.status_code == 409
    server.remove(force=True)
    client.networks.create("unused", driver="bridge")
    pruned = client.networks.prune()
    assert set(pruned["NetworksDeleted"]) == {"sdknet", "unused"}, pruned
    assert {n.name for n in client.networks.list()} == {"nat", "host", "none"}


def in_silod_netns(silod, *cmd):
    """Runs a command in silod's network namespace."""
    return subprocess.run(["nsenter", f"--net=/proc/{silod.proc.pid}/ns/net", *cmd],
                          capture_output=True, text=True, timeout=30)


def test_published_ports_and_names_with_the_sdk(silod_netns):
    client = silod_netns.client
    net = client.networks.create("portnet", driver="bridge")
    web = client.containers.run(
        "busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], detach=True, name="sdkweb",
        network="portnet", ports={"80/tcp": 18080, "81/udp": ("127.0.0.1", 18181), "82/tcp": None})
    try:
        web.reload()
        ports = web.attrs["NetworkSettings"]["Ports"]
        assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "18080"}], ports
        assert ports["81/udp"] == [{"HostIp": "127.0.0.1", "HostPort": "18181"}], ports
        assert int(ports["82/tcp"][0]["HostPort"]) > 0, ports
        assert client.api.port(web.id, 80) == [{"HostIp": "0.0.0.0", "HostPort": "18080"}]
        listed = client.api.containers(filters={"name": "sdkweb"})[0]["Ports"]
        assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 18080, "Type": "tcp"} in listed
        got = in_silod_netns(silod_netns, "curl", "-sS", "-m", "5", "http://127.0.0.1:18080/hostname")
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == web.id[:12]
        # The same host port again is a 500 naming the port, and leaves no container running.
        with pytest.raises(docker.errors.APIError) as e:
            client.containers.run("busybox", ["true"], ports={"80/tcp": 18080}, name="clash")
        assert "18080" in str(e.value) and "already allocated" in str(e.value)
        client.containers.get("clash").remove()
        # Names through the embedded DNS server, from a neighbour.
        out = client.containers.run("busybox", ["nslookup", "sdkweb"], network="portnet",
                                    remove=True).decode()
        web.reload()
        assert web.attrs["NetworkSettings"]["Networks"]["portnet"]["IPAddress"] in out, out
    finally:
        web.remove(force=True)
        net.remove()


def test_connect_and_disconnect_with_the_sdk(silod_netns):
    client = silod_netns.client
    net = client.networks.create("livenet", driver="bridge")
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="sdkmover")
    try:
        net.connect(c, aliases=["movy"])
        c.reload()
        eps = c.attrs["NetworkSettings"]["Networks"]
        assert set(eps) == {"nat", "livenet"}, eps
        assert eps["livenet"]["Aliases"] == ["movy"]
        rc, out = c.exec_run(["ip", "-o", "-4", "addr", "show", "eth1"])
        assert rc == 0 and eps["livenet"]["IPAddress"] in out.decode(), out
        with pytest.raises(docker.errors.APIError) as e:
            net.connect(c)
        assert e.value.status_code == 409
        net.disconnect(c)
        c.reload()
        assert set(c.attrs["NetworkSettings"]["Networks"]) == {"nat"}
        rc, out = c.exec_run(["ip", "-o", "link"])
        assert "eth1" not in out.decode()
    finally:
        c.remove(force=True)
        net.remove()


def test_a_dual_stack_network_with_the_sdk(silod_netns):
    client = silod_netns.client
    net = client.networks.create(
        "dualnet", driver="bridge", enable_ipv6=True,
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.82.0.0/24"),
                                      IPAMPool(subnet="fd00:82::/64", gateway="fd00:82::1")]))
    try:
        assert net.attrs["EnableIPv6"] is True
        assert [c["Subnet"] for c in net.attrs["IPAM"]["Config"]] == ["10.82.0.0/24", "fd00:82::/64"]
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, network="dualnet",
                                  name="dual")
        try:
            c.reload()
            ep = c.attrs["NetworkSettings"]["Networks"]["dualnet"]
            assert ep["GlobalIPv6Address"].startswith("fd00:82::"), ep
            assert ep["GlobalIPv6PrefixLen"] == 64 and ep["IPv6Gateway"] == "fd00:82::1", ep
            out = client.containers.run("busybox", ["ping", "-6", "-c", "1", "-W", "3", "dual"],
                                        network="dualnet", remove=True).decode()
            assert ep["GlobalIPv6Address"] in out, out
        finally:
            c.remove(force=True)
    finally:
        net.remove()
    # An IPv6 pool without EnableIPv6 is refused, not half made.
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.create("halfv6", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="fd00:83::/64")]))
    assert e.value.status_code == 400
    assert "halfv6" not in {n.name for n in client.networks.list()}


def test_a_transparent_network_and_a_mac_address_with_the_sdk(silod_netns):
    client = silod_netns.client
    made = in_silod_netns(silod_netns, "ip", "link", "add", "sdkpar", "type", "veth",
                          "peer", "name", "sdkpeer")
    assert made.returncode == 0, made.stderr
    net = client.networks.create("sdkseg", driver="macvlan", options={"parent": "sdkpar"},
                                 ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.96.0.0/24",
                                                                        gateway="10.96.0.1")]))
    try:
        assert net.attrs["Driver"] == "macvlan"
        out = client.containers.run("busybox", ["cat", "/sys/class/net/eth0/address"],
                                    network="sdkseg", mac_address="02:42:0a:60:00:33",
                                    remove=True).decode()
        assert out.strip() == "02:42:0a:60:00:33"
        with pytest.raises(docker.errors.APIError) as e:
            client.networks.create("noparent", driver="macvlan")
        assert e.value.status_code == 400 and "parent" in str(e.value)
    finally:
        net.remove()
        in_silod_netns(silod_netns, "ip", "link", "del", "sdkpar")


def test_l2tunnel_and_overlay_networks_with_the_sdk(silod_netns):
    """The HNS drivers through the SDK: an l2tunnel network whose
    containers reach each other through the host, an overlay network with
    its VNI, and the refusals (an unknown driver, a VNI in use)."""
    client = silod_netns.client
    tun = client.networks.create("sdktun", driver="l2tunnel",
                                 ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.105.0.0/24")]))
    ov = client.networks.create("sdkov", driver="overlay", options={"vni": "6001"},
                                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.106.0.0/24")]))
    peer = None
    try:
        assert tun.attrs["Driver"] == "l2tunnel"
        assert ov.attrs["Driver"] == "overlay" and ov.attrs["Options"]["vni"] == "6001"
        peer = client.containers.run("busybox", ["sleep", "300"], network="sdktun", detach=True)
        peer.reload()
        ip = peer.attrs["NetworkSettings"]["Networks"]["sdktun"]["IPAddress"]
        out = client.containers.run("busybox", ["ping", "-c", "1", "-W", "3", ip],
                                    network="sdktun", remove=True).decode()
        assert "1 packets received" in out
        with pytest.raises(docker.errors.APIError) as e:
            client.networks.create("sdkdup", driver="overlay", options={"vni": "6001"})
        assert e.value.status_code == 400 and "6001" in str(e.value)
        with pytest.raises(docker.errors.APIError) as e:
            client.networks.create("sdkbad", driver="hyperv")
        assert e.value.status_code == 400 and "hyperv" in str(e.value)
        names = [n.name for n in client.networks.list()]
        assert "sdkdup" not in names and "sdkbad" not in names
    finally:
        if peer is not None:
            peer.remove(force=True)
        tun.remove()
        ov.remove()

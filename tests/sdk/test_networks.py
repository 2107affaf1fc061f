"""Networks through the Docker SDK, with silod in a network namespace of
its own: create with IPAM, list, get, containers on the network with the
addresses inspect reports, aliases, remove and prune."""
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
    for kwargs in ({"enable_ipv6": True}, {"options": {"com.docker.network.bridge.name": "x"}},
                   {"attachable": True}):
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

"""The CRI through a second, independent gRPC stack: Python's grpcio (the
C core, as the kubelet's grpc-go is not tonic) with stubs generated from
the vendored api.proto at test time. One pod's life, strictly checked."""
import os
import sys
import tempfile
import time

import grpc
import pytest
from grpc_tools import protoc

from conftest import REPO, Silod

PROTO_DIR = os.path.join(REPO, "crates", "silo-cri", "proto")


@pytest.fixture(scope="module")
def pb():
    out = tempfile.mkdtemp(prefix="cri-stubs.")
    rc = protoc.main(["protoc", "-I", PROTO_DIR, "--python_out", out,
                      "--grpc_python_out", out, "api.proto"])
    assert rc == 0, "protoc failed on the vendored api.proto"
    sys.path.insert(0, out)
    import api_pb2
    import api_pb2_grpc
    return api_pb2, api_pb2_grpc


@pytest.fixture(scope="module")
def cri(rootfs_tar, pb):
    empty = tempfile.mkdtemp(prefix="no-cni.")
    d = Silod(netns=True, extra=["--cni-conf-dir", empty])
    d.client.api.import_image(src=rootfs_tar, repository="busybox", tag="latest")
    # grpcio's C core puts the socket path, %-encoded, in :authority, which
    # the h2 crate under tonic refuses as malformed; grpc-go (the kubelet,
    # crictl) sends "localhost", as this does.
    chan = grpc.insecure_channel("unix://" + os.path.join(d.dir, "x", "cri.sock"),
                                 options=[("grpc.default_authority", "localhost")])
    api_pb2, api_pb2_grpc = pb
    yield d, api_pb2, api_pb2_grpc.RuntimeServiceStub(chan), api_pb2_grpc.ImageServiceStub(chan)
    chan.close()
    d.stop()
    os.rmdir(empty)


def test_a_pod_life_through_grpcio(cri, tmp_path):
    d, api, rt, img = cri
    v = rt.Version(api.VersionRequest())
    assert (v.runtime_name, v.runtime_api_version) == ("silo", "v1")
    st = img.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image="busybox")))
    assert st.image.id.startswith("sha256:") and "busybox:latest" in st.image.repo_tags[0]

    logs = str(tmp_path / "pods")
    sandbox = api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name="py", uid="uid-py", namespace="default"),
        hostname="py", log_directory=logs, labels={"app": "py"},
        linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(
            namespace_options=api.NamespaceOption(pid=api.CONTAINER))))
    pod = rt.RunPodSandbox(api.RunPodSandboxRequest(config=sandbox)).pod_sandbox_id
    assert len(pod) == 64
    cfg = api.ContainerConfig(
        metadata=api.ContainerMetadata(name="c"), image=api.ImageSpec(image="busybox"),
        command=["sh", "-c", "echo hi; echo oops >&2; sleep 100"], log_path="c/0.log")
    ctr = rt.CreateContainer(api.CreateContainerRequest(
        pod_sandbox_id=pod, config=cfg, sandbox_config=sandbox)).container_id
    rt.StartContainer(api.StartContainerRequest(container_id=ctr))
    status = rt.ContainerStatus(api.ContainerStatusRequest(container_id=ctr)).status
    assert status.state == api.CONTAINER_RUNNING
    assert status.started_at > status.created_at > 0
    assert status.log_path == os.path.join(logs, "c", "0.log")

    r = rt.ExecSync(api.ExecSyncRequest(container_id=ctr, cmd=["sh", "-c", "echo x; exit 4"],
                                        timeout=5))
    assert (r.stdout, r.exit_code) == (b"x\n", 4)
    with pytest.raises(grpc.RpcError) as e:
        rt.ExecSync(api.ExecSyncRequest(container_id=ctr, cmd=["sleep", "30"], timeout=1))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    lines = []
    for _ in range(100):
        lines = open(status.log_path).read().splitlines()
        if len(lines) >= 2:
            break
        time.sleep(0.05)
    streams = sorted(line.split(" ", 3)[1:] for line in lines)
    assert streams == [["stderr", "F", "oops"], ["stdout", "F", "hi"]], lines

    listed = rt.ListContainers(api.ListContainersRequest(filter=api.ContainerFilter(
        pod_sandbox_id=pod))).containers
    assert [c.id for c in listed] == [ctr]
    pods = rt.ListPodSandbox(api.ListPodSandboxRequest(filter=api.PodSandboxFilter(
        label_selector={"app": "py"}))).items
    assert [p.id for p in pods] == [pod]

    with pytest.raises(grpc.RpcError) as e:
        rt.ContainerStatus(api.ContainerStatusRequest(container_id="nosuch"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    for _ in range(2):
        rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod))
    state = rt.PodSandboxStatus(api.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.state
    assert state == api.SANDBOX_NOTREADY
    for _ in range(2):
        rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert rt.ListContainers(api.ListContainersRequest()).containers == []
    assert d.client.containers.list(all=True) == []

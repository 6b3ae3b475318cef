"""The workstation's port-forward to a ClusterIP Service, through the real kubernetes client's WebSocket
port-forward against the fake (tests/k8s/fake_portforward.py), to a real TCP server standing where the pod listens."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.cluster.kube import KubeClient
from platform_core.cluster.port_forward import PortForward, ready_pod
from tests.k8s import fake_objects
from tests.k8s.fake_apiserver import FakeApiServer

NS, APP, PORT = "mlops", "echo", 7000


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data.upper())


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def behind_service(fake_api: FakeApiServer, kubeconfig: Path) -> KubeClient:
    """A Deployment of one ready pod labelled as the platform labels its apps, and a ClusterIP Service for it."""
    kube = KubeClient.from_kubeconfig(kubeconfig)
    dep = fake_objects.deployment(APP, ns=NS)
    dep["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": APP}
    dep["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": APP}
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {"selector": {"app.kubernetes.io/name": APP}, "ports": [{"port": PORT, "targetPort": 7001}]},
    }
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, dep, svc])
    kube.wait_available(NS, [APP], timeout=10)
    return kube


def _ask(port: int, payload: bytes) -> bytes:
    """The answer, as many bytes as were sent (or fewer if the stream ends): a port-forward stream has no
    half-close (v4.channel.k8s.io closes the whole stream), so a client must not shut down its sending side."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        out = b""
        while len(out) < len(payload) and (chunk := conn.recv(65536)):
            out += chunk
        return out


def test_each_connection_reaches_the_pod_behind_the_service(
    fake_api: FakeApiServer, kubeconfig: Path, behind_service: KubeClient, echo: tuple[str, int]
) -> None:
    pod, target = ready_pod(behind_service, NS, APP, PORT)
    assert pod.startswith(f"{APP}-") and target == 7001  # the Service's targetPort, not its port
    fake_api.port_forwards[(NS, APP, 7001)] = echo
    forward = PortForward(kubeconfig, NS, APP, PORT)
    try:
        big = bytes(range(256)) * 2000  # several WebSocket frames each way
        assert _ask(forward.local_port, b"hello") == b"HELLO"
        assert _ask(forward.local_port, big) == big.upper()
    finally:
        forward.close()


def test_a_refused_dial_closes_the_connection_and_says_why(
    fake_api: FakeApiServer, kubeconfig: Path, behind_service: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    forward = PortForward(kubeconfig, NS, APP, PORT)  # nothing listens behind the pod
    try:
        with caplog.at_level(logging.WARNING, logger="platform_core.cluster.port_forward"):
            assert _ask(forward.local_port, b"hello") == b""
            deadline = time.monotonic() + 10  # logged by the forward's thread once the stream ends
            while "error forwarding port 7001" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        forward.close()
    assert f"port-forward to {NS}/{APP}" in caplog.text and "error forwarding port 7001" in caplog.text


def test_what_cannot_be_forwarded_is_named(behind_service: KubeClient) -> None:
    with pytest.raises(LookupError, match=f"Service {NS}/missing does not exist"):
        ready_pod(behind_service, NS, "missing", PORT)
    with pytest.raises(LookupError, match="has no port 1 with a pod selector"):
        ready_pod(behind_service, NS, APP, 1)
    behind_service.delete({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "namespace": NS}})
    deadline = time.monotonic() + 10
    while behind_service.list("v1", "Pod", NS) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LookupError, match=f"no ready pod behind Service {NS}/{APP}"):
        ready_pod(behind_service, NS, APP, PORT)

"""How the workstation reaches a service kept off the LAN (k3s.exposure: cluster): a listener on 127.0.0.1 whose
every connection is one Kubernetes port-forward stream to a ready pod behind the Service, the API `kubectl
port-forward svc/<name>` uses (pods/portforward over WebSocket, through the kubernetes client). It opens on first
use in a process and closes when the process ends; nothing listens on the LAN for it."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from platform_core.cluster.kube import KubeClient

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_lock = threading.Lock()
_open: dict[tuple[str, int, str, str, int], PortForward] = {}


def kubectl_command(namespace: str, service: str, port: int, local_port: int | None = None) -> str:
    """What a person runs to reach the same service from their machine."""
    return f"kubectl -n {namespace} port-forward svc/{service} {local_port or port}:{port}"


def forwarded_port(kubeconfig: Path, namespace: str, service: str, port: int) -> int:
    """The local port (on 127.0.0.1) forwarding to ``service``'s ``port``, opened on first use in this process (and
    again once the kubeconfig changed: a reinstalled cluster has new certificates)."""
    key = (str(kubeconfig), Path(kubeconfig).stat().st_mtime_ns, namespace, service, port)
    with _lock:
        forward = _open.get(key)
        if forward is None:
            forward = _open[key] = PortForward(kubeconfig, namespace, service, port)
        return forward.local_port


@atexit.register
def close_all() -> None:
    with _lock:
        for forward in _open.values():
            forward.close()
        _open.clear()


def _forget_in_child() -> None:
    """A forked child has none of the parent's accept threads: its forwards are opened afresh, under a new lock."""
    global _lock
    _lock = threading.Lock()
    _open.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def ready_pod(kube: KubeClient, namespace: str, service: str, port: int) -> tuple[str, int]:
    """A Running, Ready pod the Service selects, and the container port its ``port`` targets."""
    svc = kube.get({"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace}})
    if svc is None:
        raise LookupError(f"Service {namespace}/{service} does not exist")
    spec = svc.get("spec") or {}
    entry = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if entry is None or not spec.get("selector"):
        raise LookupError(f"Service {namespace}/{service} has no port {port} with a pod selector")
    selector = spec["selector"].items()
    pods = [
        p
        for p in kube.list("v1", "Pod", namespace)
        if selector <= ((p.get("metadata") or {}).get("labels") or {}).items() and _ready(p)
    ]
    if not pods:
        raise LookupError(f"no ready pod behind Service {namespace}/{service}")
    return pods[0]["metadata"]["name"], _container_port(pods[0], entry.get("targetPort", port))


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready and not (pod.get("metadata") or {}).get("deletionTimestamp")


def _container_port(pod: Obj, target: int | str) -> int:
    """A named targetPort is looked up among the pod's container ports, as the endpoints controller does."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    raise LookupError(f"pod {pod['metadata']['name']} has no container port named {target}")


class PortForward:
    def __init__(self, kubeconfig: Path, namespace: str, service: str, port: int) -> None:
        # A client of its own: the kubernetes client's portforward() swaps its ApiClient's request method while
        # it connects, which must not catch another thread's request; the lock keeps connects one at a time.
        self._kube = KubeClient.from_kubeconfig(kubeconfig)
        self._connect = threading.Lock()
        self.where = (namespace, service, port)
        self.closed = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.local_port: int = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name=f"port-forward {service}:{port}", daemon=True).start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):  # wakes the accept(): close() alone leaves it listening on Linux
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes.client import CoreV1Api
        from kubernetes.stream import portforward

        namespace, service, port = self.where
        if self.closed:
            conn.close()
            return
        try:
            with self._connect:
                pod, target = ready_pod(self._kube, namespace, service, port)
                api = CoreV1Api(self._kube.api).connect_get_namespaced_pod_portforward
                stream = portforward(api, pod, namespace, ports=str(target))
        except Exception as err:  # the caller sees a closed connection; the log says why
            log.warning("port-forward to %s/%s:%s failed: %s", namespace, service, port, err)
            conn.close()
            return
        _pump(conn, stream.socket(target))
        if error := stream.error(target):
            log.warning("port-forward to %s/%s (pod %s:%s): %s", namespace, service, pod, target, error)


def _pump(a: Any, b: Any) -> None:
    """Copy both ways until either side ends; a port-forward stream has no half-close, so both then close."""

    def copy(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    back = threading.Thread(target=copy, args=(b, a), daemon=True)
    back.start()
    copy(a, b)
    back.join()
    a.close()
    b.close()

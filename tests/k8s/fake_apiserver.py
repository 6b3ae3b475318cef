"""A Kubernetes API fake over HTTP on 127.0.0.1, for tests driven by the real ``kubernetes`` client.

No control plane can run on the test machine; this answers the REST paths, discovery, errors and field
ownership as the real API server does for what the platform uses, with synchronous simulated controllers.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.k8s import fake_metrics, fake_portforward
from tests.k8s.fake_controllers import Controllers
from tests.k8s.fake_store import ApiError, Obj, Store, decode
from tests.k8s.fake_types import Registry, ResourceType
from tests.k8s.schemas import SchemaError, validate_served


class FakeApiServer:
    """The fake, with hooks for tests.

    ``unpullable_images``: images whose pods back off (ImagePullBackOff). ``pod_runner(pod) -> (phase, log)``:
    called once per new Pod (under the server's lock, so it must not call the API itself). ``repo_root``: the
    checkout of the git repository at ``repo_url`` that Applications sync from (tests/k8s/fake_git.py);
    ``sync_applications()`` re-syncs after files changed.
    """

    def __init__(
        self,
        service_cidr: str = "10.45.0.0/16",
        cluster_dns: str = "10.45.0.10",
        k8s_version: str = "v1.31.4+k3s1",
        repo_root: Path = Path("/work/main"),
        repo_url: str = "https://git.example/p.git",
        egress: bool = True,
        node_images: Callable[[], set[str]] | None = None,
    ) -> None:
        self.k8s_version = k8s_version
        self.repo_root = Path(repo_root)
        self.token = secrets.token_hex(16)
        self.registry = Registry()
        self.store = Store(self.registry, service_cidr, cluster_dns)
        self.store.check = _schema_check
        self.unpullable_images: set[str] = set()
        # The node's network and containerd (tests/k8s/fake_kubelet.py): without egress nothing is pulled from a
        # registry nor cloned from outside; node_images() is what containerd holds (None: nothing, all is pulled).
        self.egress = egress
        self.node_images = node_images
        self.pulled: set[str] = set()
        self.pulls: list[str] = []  # images pulled from a registry, in order
        # The git repositories outside the cluster Argo CD can clone (with egress), by URL: their checkout.
        self.git_repos: dict[str, Path] = {repo_url: Path(repo_root)}
        self.clones: list[str] = []  # repository URLs Argo CD cloned
        self.git_cache: Path | None = None  # checkouts of in-cluster repositories (removed by stop())
        self.pod_runner: Callable[[Obj], tuple[str, str]] | None = None
        self.pod_logs: dict[tuple[str, str], str] = {}
        # what answers behind a pod's port-forward, by (namespace, app label, port): tests/k8s/fake_portforward.py
        self.port_forwards: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.forwarded: list[tuple[str, str, int]] = []  # (namespace, pod, port) of each stream that connected
        # metrics-server is not ready when K3s starts: its aggregated group answers 503 this many times first
        self.metrics_unavailable_requests = 2
        # MetalLB's webhook serves only once its certificate is in place: this many metallb.io writes fail first
        self.metallb_webhook_refusals = 3
        self.registry.discovery_lag = 0.5  # a new CRD's types reach discovery this long after Established
        self.rollout_seconds = 0.0  # K3s's own Deployments have rolled out by the time the fake answers
        self.cascade_seconds = 1.0  # how long Argo CD takes to delete a cascade-finalized Application's resources
        self.controllers = Controllers(self)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bootstrap(service_cidr, cluster_dns)
        self.rollout_seconds = 0.3  # how long a Deployment's new generation takes to roll out

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self.git_cache is not None:
            shutil.rmtree(self.git_cache, ignore_errors=True)
            self.git_cache = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the fake API server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def write_kubeconfig(self, path: Path) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
        }
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    # --- helpers for tests -------------------------------------------------------------------------------
    def sync_applications(self) -> None:
        """Re-sync every Argo CD Application from repo_root (after a test edited the files)."""
        with self.store.lock:
            self.controllers.resync_all()
            self.controllers.reconcile()

    def rtype(self, api_version: str, kind: str) -> ResourceType:
        rt = self.registry.by_kind(api_version, kind)
        assert rt is not None, f"{api_version} {kind} is not served"
        return rt

    def _bootstrap(self, service_cidr: str, cluster_dns: str) -> None:
        """What a fresh K3s server has: its namespaces, one Ready node, kubernetes and kube-dns, coredns."""
        s, k3s = self.store, "k3s"
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            s.create(self.rtype("v1", "Namespace"), None, {"metadata": {"name": ns}}, k3s)
        first_host = str(next(ipaddress.ip_network(service_cidr).hosts()))
        node = {
            "metadata": {
                "name": "k3s-server",
                "labels": {"kubernetes.io/hostname": "k3s-server", "node-role.kubernetes.io/control-plane": "true"},
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {
                    "kubeletVersion": self.k8s_version,
                    "kubeProxyVersion": self.k8s_version,
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "osImage": "Rocky Linux 9.5 (Blue Onyx)",
                    "kernelVersion": "5.14.0-503.14.1.el9_5.x86_64",
                    "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                    "machineID": "0" * 32,
                    "systemUUID": "00000000-0000-0000-0000-000000000000",
                    "bootID": "0" * 32,
                },
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": "k3s-server"},
                ],
            },
        }
        node_rt = self.rtype("v1", "Node")
        s.create(node_rt, None, node, k3s)
        s.put_internal(node_rt, {**s.get(node_rt, None, "k3s-server"), "status": node["status"]})
        svc = self.rtype("v1", "Service")
        s.create(
            svc,
            "default",
            {
                "metadata": {"name": "kubernetes"},
                "spec": {
                    "clusterIP": first_host,
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                },
            },
            k3s,
        )
        labels = {"k8s-app": "kube-dns"}
        s.create(
            svc,
            "kube-system",
            {
                "metadata": {"name": "kube-dns", "labels": labels},
                "spec": {
                    "clusterIP": cluster_dns,
                    "selector": labels,
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}],
                },
            },
            k3s,
        )
        s.create(
            self.rtype("apps/v1", "Deployment"),
            "kube-system",
            {
                "metadata": {"name": "coredns"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [{"name": "coredns", "image": "rancher/mirrored-coredns-coredns:1.12.0"}]
                        },
                    },
                },
            },
            k3s,
        )
        self.controllers.reconcile()

    def version_info(self) -> Obj:
        major, minor = self.k8s_version.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.k8s_version,
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2024-12-12T00:00:00Z",
            "goVersion": "go1.22.9",
            "compiler": "gc",
            "platform": "linux/amd64",
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeApiServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not traffic
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            parts = [p for p in urlsplit(self.path).path.split("/") if p]
            if fake_portforward.is_request(self, parts):
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                return fake_portforward.serve(self, self.fake, parts, query)
            code, body = self._route(method, raw)
        except ApiError as err:
            code, body = err.code, err.status()
        except Exception as err:  # a bug in the fake: answer like the server would, do not drop the connection
            code, body = 500, ApiError(500, "InternalError", f"Internal error occurred: {err!r}").status()
        if isinstance(body, str):
            self._send(code, body.encode(), "text/plain")
        else:
            self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, data: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, raw: bytes) -> tuple[int, Any]:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        fake = self.fake
        with fake.store.lock:
            if parts == ["version"]:
                return 200, fake.version_info()
            if parts == ["api"]:
                return 200, {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
                }
            if parts == ["apis"]:  # the aggregated discovery Accept header gets this plain format too
                return 200, fake.registry.api_group_list()
            if len(parts) == 2 and parts[0] == "apis" and parts[1] in fake.registry.groups():
                group = next(g for g in fake.registry.api_group_list()["groups"] if g["name"] == parts[1])
                return 200, {"kind": "APIGroup", "apiVersion": "v1", **group}
            if parts[:3] == ["apis", fake_metrics.GROUP, fake_metrics.VERSION]:
                return fake_metrics.route(fake, method, parts[3:], query)
            if parts[:2] == ["api", "v1"]:
                group, version, rest = "", "v1", parts[2:]
            elif parts[:1] == ["apis"] and len(parts) >= 3:
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise _page_not_found()
            if not rest:
                doc = fake.registry.resource_list(group, version)
                if doc is None:
                    raise _page_not_found()
                return 200, doc
            return self._resource(method, group, version, rest, query, raw)

    def _resource(
        self, method: str, group: str, version: str, rest: list[str], query: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        fake, store = self.fake, self.fake.store
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        rt = fake.registry.lookup(group, version, rest[0])
        if rt is None or len(rest) > 3 or (ns is not None and not rt.namespaced):
            raise _page_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in ({"status"} if rt.status else set()) | set(rt.subresources):
            raise _page_not_found()
        if rt.namespaced and ns is None and not (method == "GET" and name is None):
            raise _page_not_found()
        dry = query.get("dryRun") == "All"
        if fake.controllers.pending:  # time passed for what a controller waits on (a cascade deletion)
            fake.controllers.reconcile()
        manager = query.get("fieldManager") or self.headers.get("User-Agent", "unknown").split("/")[0]
        if method == "GET" and query.get("watch", "").lower() in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "the fake API server does not serve watch requests")
        if method == "GET" and name is None:
            items = store.list(rt, ns, query.get("labelSelector", ""), query.get("fieldSelector", ""))
            for item in items:  # list items carry no kind/apiVersion, as from the real server
                item.pop("kind", None)
                item.pop("apiVersion", None)
            return 200, {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(store.rv)},
                "items": items,
            }
        if method == "GET" and sub == "log":
            store.get(rt, ns, name)
            return 200, fake.pod_logs.get((ns or "", name or ""), "")
        if method == "GET":
            return 200, store.get(rt, ns, name)
        if method in ("POST", "PUT", "PATCH"):
            fake_metrics.admit_metallb(fake, rt)
        if method == "POST" and name is None:
            code, out = 201, store.create(rt, ns, _body(raw), manager, dry)
        elif method == "PUT" and name:
            code, out = 200, store.update(rt, ns, name, _body(raw), manager, dry, sub)
        elif method == "PATCH" and name:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            existed = store.find(rt, ns, name) is not None
            manager = query.get("fieldManager") or ("" if ctype.startswith("application/apply") else manager)
            force = query.get("force") in ("true", "1", "True")
            out = store.patch(rt, ns, name, ctype, raw, manager, dry, force, sub)
            code = 200 if existed else 201
        elif method == "DELETE" and name:
            options = _body(raw) if raw else {}
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            code, out = 200, store.delete(rt, ns, name, dry, propagation)
        else:
            raise ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
            )
        if not dry:
            fake.controllers.reconcile()
        return code, out


def _schema_check(obj: Obj) -> None:
    """A write's object, less the status its controller owns (written, and validated, through /status)."""
    try:
        validate_served({k: v for k, v in obj.items() if k != "status"})
    except SchemaError as err:
        raise ApiError(422, "Invalid", str(err)) from None


def _body(raw: bytes) -> Obj:
    body = decode(raw) if raw else {}
    return body if isinstance(body, dict) else {}


def _page_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})

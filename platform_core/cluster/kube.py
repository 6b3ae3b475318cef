"""The platform's Kubernetes client layer: discovery, server-side apply, drift diff, orphans, workload health.

A thin layer over the official ``kubernetes`` client's ApiClient: REST paths and scopes come from the
cluster's own discovery, so CRD-defined kinds (Argo CD, MetalLB) work like built-ins once their CRDs land.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import HTTPError

from platform_core.cluster.kube_diff import FieldChange, changes
from platform_core.cluster.kube_error import KubeError
from platform_core.cluster.kube_health import ImagePullFailure, WorkloadHealth
from platform_core.cluster.kube_objects import CRD, crd_kinds, describe, server_message, settled, well_formed
from platform_core.settings import in_cluster

if TYPE_CHECKING:  # the client itself loads on first use: a fifth of a second each code location's load
    from kubernetes import client

__all__ = ["ApplyResult", "FieldChange", "ImagePullFailure", "KubeClient", "KubeError"]

Obj = dict[str, Any]
TRANSIENT = (429, 502, 503, 504)  # retried: the server (or an aggregated API behind it) asks us to come back
ATTEMPTS, BACKOFF_SECONDS = 3, 0.5
REQUEST_TIMEOUT = (5, 60)  # connect, read: a hung connection must not block a sensor tick forever
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    api_version: str
    kind: str
    namespace: str | None
    name: str
    action: str  # "created" | "configured" | "unchanged"


@dataclass(frozen=True)
class _Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    preferred: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else "/api/v1"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        return f"{base}/{self.plural}" + (f"/{name}" if name else "")


class KubeClient(WorkloadHealth):
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._resources: dict[tuple[str, str], _Resource] | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        if not Path(path).is_file():
            raise KubeError(f"kubeconfig {path}: no such file")
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            return cls(config.new_client_from_config(config_file=str(path)))
        except (ConfigException, ValueError, OSError) as err:
            raise KubeError(f"kubeconfig {path}: {err}") from err

    @classmethod
    def in_cluster(cls) -> KubeClient:
        """From a pod: its service account's token and the cluster's CA, as mounted by the kubelet."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as err:
            raise KubeError(f"in-cluster Kubernetes config: {err}") from err
        return cls(client.ApiClient(configuration))

    @classmethod
    def for_platform(cls, kubeconfig: Path) -> KubeClient:
        """The platform's client: the pod's service account in the cluster, else the kubeconfig k3s_cluster fetched."""
        return cls.in_cluster() if in_cluster() else cls.from_kubeconfig(kubeconfig)

    def close(self) -> None:
        self.api.close()

    # --- raw requests ------------------------------------------------------------------------------------
    def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        from kubernetes.client import ApiException

        headers = {"Accept": "application/json"} | ({"Content-Type": content_type} if content_type else {})
        for attempt in range(ATTEMPTS):
            try:
                resp = self.api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=REQUEST_TIMEOUT,
                )
                return json.loads(resp.data) if resp.data else None
            except ApiException as err:
                error = KubeError(f"{what}: {server_message(err)}", err.status)
                if err.status not in TRANSIENT:
                    raise error from err
            except HTTPError as err:
                host = self.api.configuration.host
                error = KubeError(f"{what}: cannot reach the API server {host}: {err}")
            if attempt + 1 < ATTEMPTS:
                time.sleep(BACKOFF_SECONDS * 2**attempt)
        raise error

    # --- discovery ---------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Forget discovery, e.g. after CRDs were applied by someone else."""
        self._resources = None

    def _discover(self) -> dict[tuple[str, str], _Resource]:
        if self._resources is None:
            docs = [("", "v1", True, self._request("discovery", "GET", "/api/v1"))]
            for group in self._request("discovery", "GET", "/apis")["groups"]:
                for ver in group["versions"]:
                    try:
                        doc = self._request("discovery", "GET", f"/apis/{ver['groupVersion']}")
                    except KubeError as err:
                        if err.status is None:
                            raise  # the API server itself is unreachable
                        # An aggregated API whose backend is down (metrics-server while K3s starts) answers 503;
                        # like kubectl ("couldn't get resource list for ..."), warn and use the other groups.
                        log.warning("discovery skips %s: %s", ver["groupVersion"], err)
                        continue
                    docs.append((group["name"], ver["version"], ver == group.get("preferredVersion"), doc))
            found = {}
            for group, version, preferred, doc in docs:
                for r in doc.get("resources") or []:
                    if "/" not in r["name"]:  # subresources (deployments/status) are not kinds
                        res = _Resource(
                            group, version, r["name"], r["kind"], r["namespaced"], tuple(r["verbs"]), preferred
                        )
                        found[(res.api_version, res.kind)] = res
            self._resources = found
        return self._resources

    def served_kinds(self, refresh: bool = False) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every type the cluster serves; ``refresh`` re-reads discovery (after CRDs land)."""
        if refresh:
            self.refresh()
        return set(self._discover())

    def _resource(self, obj: Obj) -> _Resource:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        res = self._discover().get(key)
        if res is None:  # discovery may predate a CRD someone else applied: look once more
            self.refresh()
            res = self._discover().get(key)
        if res is None:
            raise KubeError(f"{describe(obj)}: the cluster does not serve {key[0]} {key[1]}")
        return res

    def split_unserved(self, objs: list[Obj]) -> tuple[list[Obj], list[Obj]]:
        """(served, unserved): objects of kinds the cluster serves (or CRDs among ``objs`` define), and the rest."""
        served = self.served_kinds() | crd_kinds(objs)
        keep = [o for o in objs if (o.get("apiVersion"), o.get("kind")) in served]
        return keep, [o for o in objs if (o.get("apiVersion"), o.get("kind")) not in served]

    # --- reads -------------------------------------------------------------------------------------------
    def get(self, obj: Obj) -> Obj | None:
        """The live object, or None when it does not exist."""
        meta = obj.get("metadata") or {}
        try:
            found: Obj = self._request(
                describe(obj), "GET", self._resource(obj).path(meta.get("namespace"), meta["name"])
            )
            return found
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def load_balancer_ip(self, namespace: str, name: str) -> str | None:
        """The address MetalLB gave a LoadBalancer Service, or None while pending (or without the Service)."""
        svc = self.get({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}})
        ip = (((svc or {}).get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0]).get("ip")
        return str(ip) if ip else None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every object of one kind (in one namespace, or all), e.g. the live Argo CD Applications."""
        res = self._resource({"apiVersion": api_version, "kind": kind})
        doc = self._request(f"list {kind}", "GET", res.path(namespace))
        return [{"apiVersion": api_version, "kind": kind, **item} for item in doc.get("items") or []]

    def list_managed(self, label_selector: str, kinds: set[tuple[str, str]]) -> builtins.list[Obj]:
        """Objects of the given kinds (apiVersion, kind) that match the selector, for orphan detection. Only kinds
        the platform itself creates: other kinds carry its labels too without being its objects (Endpoints and
        EndpointSlices copy a Service's labels, metrics-server's PodMetrics a pod's)."""
        out: dict[tuple[str, str | None, str], Obj] = {}
        for key in sorted(kinds):
            res = self._discover().get(key)
            if res is None or "list" not in res.verbs:
                continue  # not served (yet, or any more): nothing of that kind can be live
            try:
                doc = self._request(f"list {res.kind}", "GET", res.path(), query=[("labelSelector", label_selector)])
            except KubeError as err:
                if err.status in (404, 405):  # a CRD went away since discovery
                    continue
                raise
            for item in doc.get("items") or []:
                meta = item.get("metadata") or {}
                out[(res.kind, meta.get("namespace"), meta.get("name", ""))] = {
                    "apiVersion": res.api_version,
                    "kind": res.kind,
                    **item,
                }
        return list(out.values())

    # --- writes ------------------------------------------------------------------------------------------
    def apply(
        self,
        objs: builtins.list[Obj],
        *,
        field_manager: str = "mlops-platform",
        dry_run: bool = False,
        force: bool = True,
        namespace: str | None = None,
    ) -> builtins.list[ApplyResult]:
        """Server-side apply each object: CRDs first (waiting until Established), then Namespaces, then the rest.

        ``namespace`` is the default for namespaced objects that name none (like ``kubectl -n``; else "default").
        """
        batch_crds = crd_kinds(objs)
        checked: builtins.list[Obj] = [well_formed(o, i) for i, o in enumerate(objs)]
        for obj in checked:  # bad input fails before anything is written
            if (obj["apiVersion"], obj["kind"]) not in batch_crds:
                self._resource(obj)
        ordered = sorted(checked, key=lambda o: {CRD[1]: 0, "Namespace": 1}.get(o["kind"], 2))
        results: list[ApplyResult] = []
        for obj in ordered:
            if obj["kind"] != CRD[1] and results and results[-1].kind == CRD[1] and not dry_run:
                self._wait_established([o for o in ordered if o["kind"] == CRD[1]])
            # A dry run creates no Namespace, so the server would refuse what goes into one this batch creates.
            new_ns = {r.name for r in results if r.kind == "Namespace" and r.action == "created"} if dry_run else set()
            results.append(self._apply_one(obj, field_manager, dry_run, force, namespace, new_ns))
        if not dry_run and ordered and ordered[-1]["kind"] == CRD[1]:
            self._wait_established(ordered)
        return results

    def _apply_one(
        self,
        obj: Obj,
        manager: str,
        dry_run: bool,
        force: bool,
        namespace: str | None,
        new_ns: set[str] = set(),  # noqa: B006
    ) -> ApplyResult:
        key = (obj["apiVersion"], obj["kind"])
        res = self._discover().get(key)
        if res is None and not dry_run:  # discovery can lag a CRD that just became Established
            res = self._resource(obj)  # refreshes once, else a one-line KubeError: never "created" unapplied
        meta = obj["metadata"]
        ns = (meta.get("namespace") or namespace or "default") if res is None or res.namespaced else None
        if res is not None and res.namespaced:
            obj = {**obj, "metadata": {**meta, "namespace": ns}}
        if dry_run and (res is None or ns in new_ns):  # its CRD or Namespace is only to be created in this batch
            return ApplyResult(key[0], key[1], ns, meta["name"], "created")
        assert res is not None  # a dry run without it returned above; a real apply resolved it or raised
        live = self.get(obj)
        query = [("fieldManager", manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        out = self._request(
            describe(obj),
            "PATCH",
            res.path(ns, meta["name"]),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        # Compared as settled, not by resourceVersion: a controller's status write between GET and PATCH moves it.
        action = "created" if live is None else "unchanged" if settled(live) == settled(out) else "configured"
        return ApplyResult(key[0], key[1], ns, meta["name"], action)

    def _wait_established(self, crds: builtins.list[Obj], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for crd in crds:
            while True:
                live = self.get(crd) or {}
                conds = (live.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                    break
                if time.monotonic() > deadline:
                    raise KubeError(f"{describe(crd)}: not Established after {timeout:.0f}s")
                time.sleep(0.2)
        # Discovery lists a CRD's types only after the apiextensions DiscoveryController resyncs, a moment after
        # Established (kubernetes/kubectl#1117 "no matches for kind"): wait for them there too.
        while True:
            self.refresh()
            missing = crd_kinds(crds) - set(self._discover())
            if not missing:
                return
            if time.monotonic() > deadline:
                kinds = ", ".join(sorted(f"{v} {k}" for v, k in missing))
                raise KubeError(f"discovery does not list {kinds} {timeout:.0f}s after its CRD was Established")
            time.sleep(0.2)

    def diff(
        self, obj: Obj, *, field_manager: str = "mlops-platform", namespace: str | None = None
    ) -> builtins.list[FieldChange]:
        """What applying ``obj`` would change in the live object (a server dry run compared with live).

        Server-populated fields and status are ignored, and so are defaulted fields the desired object does not
        set (the dry run keeps them). An absent object is one change at path "" (live None, desired obj).
        """
        obj = well_formed(obj, 0)
        res = self._resource(obj)
        if res.namespaced:
            obj = {
                **obj,
                "metadata": {
                    **obj["metadata"],
                    "namespace": obj["metadata"].get("namespace") or namespace or "default",
                },
            }
        live = self.get(obj)
        if live is None:
            return [FieldChange("", None, obj)]
        query = [("fieldManager", field_manager), ("force", "true"), ("dryRun", "All")]
        result = self._request(
            describe(obj),
            "PATCH",
            res.path(obj["metadata"].get("namespace"), obj["metadata"]["name"]),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        return changes(live, result)

    def delete(self, obj: Obj) -> bool:
        """Delete an object; False when it was already gone."""
        meta = obj.get("metadata") or {}
        try:
            self._request(describe(obj), "DELETE", self._resource(obj).path(meta.get("namespace"), meta["name"]))
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        return True

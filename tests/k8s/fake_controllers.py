"""Simulated controllers for the fake API server, run synchronously after each write.

Workloads get Pods and become available (or not, for an unpullable image); MetalLB hands LoadBalancer
Services addresses from its live configuration; Argo CD syncs Applications from files under repo_root.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import time
from typing import TYPE_CHECKING

import yaml

from tests.k8s.fake_argocd import available, health, sync
from tests.k8s.fake_jobs import reconcile_jobs
from tests.k8s.fake_pods import compact, mid_rollout, owned_by, pod_for, pod_ready, pod_status
from tests.k8s.fake_store import Obj, clone
from tests.k8s.fake_types import ResourceType

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer

_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
CASCADE = "resources-finalizer.argocd.argoproj.io"
REFRESH = "argocd.argoproj.io/refresh"
_MAX_POOL = 4096


def _expand(addresses: list[str]) -> list[str]:
    out: list[str] = []
    for a in addresses:
        if "-" in a:
            lo, hi = (ipaddress.ip_address(x.strip()) for x in a.split("-", 1))
            out += [str(ipaddress.ip_address(i)) for i in range(int(lo), min(int(hi), int(lo) + _MAX_POOL) + 1)]
        else:
            net = ipaddress.ip_network(a.strip(), strict=False)
            out += [str(ip) for _, ip in zip(range(_MAX_POOL), net, strict=False)]
    return out


class Controllers:
    def __init__(self, fake: FakeApiServer) -> None:
        self.fake = fake
        self.store = fake.store
        self._synced: dict[str, int] = {}  # Application uid -> generation last synced
        self._ran: set[str] = set()  # Pod uids handed to pod_runner
        self._seen: set[str] = set()  # Pod uids scheduled already
        self._deleting: dict[str, float] = {}  # Application uid -> when its deletion was first seen
        self._rollouts: dict[tuple[str, int], float] = {}  # (Deployment uid, generation) -> when first seen
        self.pending = False  # something waits for time to pass: reconcile on the next request, reads too

    def rt(self, api_version: str, kind: str) -> ResourceType | None:
        return self.fake.registry.by_kind(api_version, kind)

    def _put(self, rt: ResourceType, obj: Obj) -> bool:
        before = obj["metadata"].get("resourceVersion")
        return self.store.put_internal(rt, obj)["metadata"]["resourceVersion"] != before

    def reconcile(self) -> None:
        self.pending = False  # set again by whatever waits for time to pass
        for _ in range(10):  # until nothing changes: a sync makes Deployments, which make Pods
            changed = self._workloads()
            changed = self._pods() or changed
            changed = reconcile_jobs(self) or changed
            changed = self._load_balancers() or changed
            changed = self._endpoints() or changed
            changed = self._applications() or changed
            if not changed:
                return

    def resync_all(self) -> None:
        self._synced.clear()

    # --- workloads and pods ------------------------------------------------------------------------------
    def _workloads(self) -> bool:
        changed = False
        for kind in _WORKLOADS:
            wrt = self.rt("apps/v1", kind)
            for w in self.store.items(wrt):
                changed = self._workload(wrt, w) or changed
        return changed

    def _workload(self, wrt: ResourceType, w: Obj) -> bool:
        """Pods for a workload (replaced when its template changes), then the workload's status from them."""
        prt = self.rt("v1", "Pod")
        meta, spec = w["metadata"], w.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        template = spec.get("template") or {}
        h = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        count = 1 if wrt.kind == "DaemonSet" else spec.get("replicas", 1)
        names = {
            "Deployment": [f"{name}-{h}-{i}" for i in range(count)],
            "StatefulSet": [f"{name}-{i}" for i in range(count)],
        }.get(wrt.kind, [f"{name}-{h[:5]}"])
        changed = False
        for pod in [p for p in self.store.items(prt, ns) if owned_by(p, meta["uid"])]:
            stale = pod["metadata"].get("annotations", {}).get("fake/template-hash") != h
            if pod["metadata"]["name"] not in names or stale:
                self.store.delete(prt, ns, pod["metadata"]["name"])
                changed = True
        for pod_name in names:
            if self.store.find(prt, ns, pod_name) is None:
                self.store.create(prt, ns, pod_for(wrt.kind, w, pod_name, h), f"{wrt.kind.lower()}-controller")
                changed = True
        pods = [self.store.find(prt, ns, n) for n in names]
        for pod in pods:
            changed = self._pod(prt, pod) or changed
        ready = sum(1 for n in names if pod_ready(self.store.find(prt, ns, n)))
        gen = meta.get("generation", 1)
        status = self._workload_status(wrt.kind, gen, count, ready, h)
        if wrt.kind == "Deployment" and self._rolling(meta["uid"], gen):
            status = mid_rollout(status, count, first=gen == 1)
        if w.get("status") != status:
            changed = self._put(wrt, {**w, "status": status}) or changed
        return changed

    def _rolling(self, uid: str, generation: int) -> bool:
        """A Deployment's new generation takes ``fake.rollout_seconds`` to roll out (pods start, probes pass)."""
        started = self._rollouts.setdefault((uid, generation), time.monotonic())
        rolling = time.monotonic() - started < self.fake.rollout_seconds
        self.pending = self.pending or rolling
        return rolling

    @staticmethod
    def _workload_status(kind: str, gen: int, count: int, ready: int, h: str) -> Obj:
        if kind == "Deployment":
            ok = ready >= count
            cond = {
                "type": "Available",
                "status": "True" if ok else "False",
                "reason": "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if ok
                else "Deployment does not have minimum availability.",
            }
            prog = {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if ok else "ReplicaSetUpdated",
                "message": "ReplicaSet has successfully progressed.",
            }
            return {
                **compact(
                    {
                        "observedGeneration": gen,
                        "replicas": count,
                        "updatedReplicas": count,
                        "readyReplicas": ready,
                        "availableReplicas": ready,
                        "unavailableReplicas": count - ready,
                    }
                ),
                "conditions": [cond, prog],
            }
        if kind == "StatefulSet":
            return {
                **compact(
                    {
                        "observedGeneration": gen,
                        "replicas": count,
                        "readyReplicas": ready,
                        "currentReplicas": count,
                        "updatedReplicas": count,
                        "availableReplicas": ready,
                    }
                ),
                "currentRevision": h,
                "updateRevision": h,
                "collisionCount": 0,
            }
        return compact(
            {
                "observedGeneration": gen,
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "updatedNumberScheduled": 1,
                "numberReady": ready,
                "numberAvailable": ready,
                "numberUnavailable": 1 - ready,
            }
        )

    def _pods(self) -> bool:
        prt = self.rt("v1", "Pod")
        changed = False
        for pod in self.store.items(prt):
            changed = self._pod(prt, pod) or changed
        return changed

    def _pod(self, prt: ResourceType, pod: Obj) -> bool:
        """Schedule a Pod on the node and run it: through pod_runner when set, else by its images."""
        meta = pod["metadata"]
        if meta["uid"] in self._ran:
            return False
        runner = self.fake.pod_runner
        first_seen = meta["uid"] not in self._seen
        self._seen.add(meta["uid"])
        if callable(runner) and first_seen:  # pods that existed before the runner was set keep running
            self._ran.add(meta["uid"])
            phase, log = runner(clone(pod))
            self.fake.pod_logs[(meta["namespace"], meta["name"])] = log
            status = {"phase": phase, "hostIP": "127.0.0.1", "startTime": meta["creationTimestamp"]}
        else:
            status = pod_status(pod, self.fake)
        node = (pod.get("spec") or {}).get("nodeName")
        if pod.get("status") == status and node:
            return False
        return self._put(
            prt, {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node or "k3s-server"}, "status": status}
        )

    # --- MetalLB -----------------------------------------------------------------------------------------
    def _load_balancers(self) -> bool:
        ctrl = self.store.find(self.rt("apps/v1", "Deployment"), "metallb-system", "controller")
        if ctrl is None or not available("Deployment", ctrl):
            return False
        pool = self._metallb_pool()
        srt = self.rt("v1", "Service")
        changed = False
        for svc in self.store.items(srt):
            # no longer a LoadBalancer: MetalLB takes its address back (metallb controller/service.go,
            # convergeBalancer clears the state of a Service whose type is not LoadBalancer)
            if svc["spec"].get("type") != "LoadBalancer" and (svc.get("status") or {}).get("loadBalancer"):
                changed = self._put(srt, {**svc, "status": {"loadBalancer": {}}}) or changed
        services = [s for s in self.store.items(srt) if s["spec"].get("type") == "LoadBalancer"]
        used = {
            i.get("ip") for s in services for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress", [])
        }
        for svc in services:
            if (svc.get("status") or {}).get("loadBalancer", {}).get("ingress"):
                continue
            annotations = svc["metadata"].get("annotations") or {}
            asked = (
                svc["spec"].get("loadBalancerIP")
                or annotations.get("metallb.universe.tf/loadBalancerIPs")
                or annotations.get("metallb.io/loadBalancerIPs")
            )
            free = [ip for ip in pool if ip not in used and (not asked or ip == asked)]
            if free:
                used.add(free[0])
                lb = {"loadBalancer": {"ingress": [{"ip": free[0], "ipMode": "VIP"}]}}
                changed = self._put(srt, {**svc, "status": lb}) or changed
        return changed

    # --- endpoints -----------------------------------------------------------------------------------------
    def _endpoints(self) -> bool:
        """An Endpoints and an EndpointSlice per Service with a selector, labelled as the Service is.

        kubernetes pkg/controller/endpoint/endpoints_controller.go copies the Service's labels onto its Endpoints
        and sets no ownerReferences; pkg/controller/endpointslice (utils.go, newEndpointSlice) copies them too,
        adds kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by, and owns the slice by the
        Service."""
        srt, ert, esrt = (
            self.rt("v1", "Service"),
            self.rt("v1", "Endpoints"),
            self.rt("discovery.k8s.io/v1", "EndpointSlice"),
        )
        changed = False
        for svc in self.store.items(srt):
            if not svc["spec"].get("selector"):
                continue
            meta = svc["metadata"]
            labels = dict(meta.get("labels") or {})
            endpoints = {"metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels}}
            changed = self._put(ert, endpoints) or changed
            slice_labels = {
                **labels,
                "kubernetes.io/service-name": meta["name"],
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            }
            owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"],
                     "controller": True, "blockOwnerDeletion": True}  # fmt: skip
            endpoint_slice = {
                "metadata": {
                    "name": f"{meta['name']}-fake",
                    "namespace": meta["namespace"],
                    "labels": slice_labels,
                    "ownerReferences": [owner],
                },
                "addressType": "IPv4",
                "endpoints": [],
            }
            changed = self._put(esrt, endpoint_slice) or changed
        return changed

    def _metallb_pool(self) -> list[str]:
        try:
            return _expand(self._metallb_addresses())
        except (ValueError, AttributeError, TypeError, yaml.YAMLError):
            return []  # MetalLB logs a bad configuration and hands out nothing

    def _metallb_addresses(self) -> list[str]:
        addresses: list[str] = []
        cm = self.store.find(self.rt("v1", "ConfigMap"), "metallb-system", "config")
        if cm is not None:  # MetalLB <= 0.12 reads its pools from this ConfigMap
            cfg = yaml.safe_load((cm.get("data") or {}).get("config") or "") or {}
            for p in cfg.get("address-pools") or []:
                if p.get("protocol", "layer2") == "layer2":
                    addresses += p.get("addresses") or []
        pools, l2 = self.rt("metallb.io/v1beta1", "IPAddressPool"), self.rt("metallb.io/v1beta1", "L2Advertisement")
        if pools and l2 and self.store.list(l2, None):  # >= 0.13: pools are announced once advertised
            for p in self.store.list(pools, None):
                addresses += (p.get("spec") or {}).get("addresses") or []
        return addresses

    # --- Argo CD -----------------------------------------------------------------------------------------
    def _applications(self) -> bool:
        art = self.rt("argoproj.io/v1alpha1", "Application")
        sts = self.store.find(self.rt("apps/v1", "StatefulSet"), "argocd", "argocd-application-controller")
        if art is None or sts is None:
            return False
        changed = False
        for listed in self.store.list(art, None):
            # fresh: syncing the root re-applies its children, whose listed copy would write the old spec back
            app = self.store.find(art, listed["metadata"]["namespace"], listed["metadata"]["name"])
            if app is None:
                continue
            meta = app["metadata"]
            if meta.get("deletionTimestamp"):
                changed = self._finalize(art, app) or changed
                continue
            annotations = meta.get("annotations") or {}
            refresh = REFRESH in annotations  # compare with git now; removed once done (argo-cd app refresh)
            if self._synced.get(meta["uid"]) != meta.get("generation") or app.get("operation") or refresh:
                self._synced[meta["uid"]] = meta.get("generation", 1)
                app["status"] = sync(self.fake, app)
                app.pop("operation", None)  # Argo CD clears a requested operation once it has run it
                if refresh:
                    meta["annotations"] = {k: v for k, v in annotations.items() if k != REFRESH}
            app.setdefault("status", {})["health"] = health(self.fake, app)
            changed = self._put(art, app) or changed
        return changed

    def _finalize(self, art: ResourceType, app: Obj) -> bool:
        """A deleted Application with Argo CD's cascade finalizer: after ``cascade_seconds`` (the controller
        deletes what it tracks and waits for it, seconds on a real cluster), its resources go, then the finalizer
        (argo-cd docs, user-guide/app_deletion; without the finalizer nothing of the app is deleted)."""
        meta = app["metadata"]
        started = self._deleting.setdefault(meta["uid"], time.monotonic())
        if time.monotonic() - started < self.fake.cascade_seconds:
            self.pending = True
            return False
        if CASCADE in (meta.get("finalizers") or []):
            for res in (app.get("status") or {}).get("resources") or []:
                rt = self.fake.registry.by_kind(f"{res['group']}/{res['version']}".lstrip("/"), res["kind"])
                if rt is not None and self.store.find(rt, res["namespace"] or None, res["name"]) is not None:
                    self.store.delete(rt, res["namespace"] or None, res["name"])
        finalizers = [f for f in meta.get("finalizers") or [] if f != CASCADE]
        return self._put(art, {**app, "metadata": {**meta, "finalizers": finalizers}})

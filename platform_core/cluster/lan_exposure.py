"""What the cluster puts on the host's LAN, against what k3s.exposure declares there.

Reachable from the LAN: a LoadBalancer Service (its pool address, even while MetalLB has yet to assign one), any
node port (every node address answers on it), externalIPs, and pods on the host's network or with host ports.
ClusterIPs and pod IPs route only inside the cluster. K3s's own listeners (the API server on 6443, the kubelet)
belong to the cluster, not to a Service, and are not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from platform_core.cluster.kube import KubeClient
from platform_core.cluster.render import SERVICES
from platform_core.cluster.render_base import ARGOCD_NAMESPACE
from platform_core.cluster.render_metallb import PROBE_SERVICE
from platform_core.config import PlatformConfig

Obj = dict[str, Any]
# On the LAN by design: MetalLB's L2 mode announces the pool addresses with ARP from the node itself (upstream's
# manifest puts its speaker on the host network, memberlist and metrics ports with it); the metallb check's probe
# Service holds a pool address for a minute, and nothing answers on it.
BY_DESIGN = {("metallb-system", "speaker")}


@dataclass(frozen=True)
class LanEntry:
    what: str  # "Service mlops/inference", "pods of DaemonSet metallb-system/speaker"
    where: str  # "127.0.0.200:8000", "node ports 30080", "host network"
    declared: bool

    def __str__(self) -> str:
        return f"{self.what} at {self.where}" + ("" if self.declared else " (not declared)")


def declared_on_lan(cfg: PlatformConfig) -> set[tuple[str, str]]:
    """(namespace, name) of each Service k3s.exposure puts on the LAN, and what is there by design."""
    exposure = cfg.k3s.exposure
    out = {(cfg.k3s.namespace, app) for app in SERVICES if exposure.of(app) == "lan"}  # each app's Service
    if exposure.of("argocd") == "lan":
        out.add((ARGOCD_NAMESPACE, "argocd-server"))
    return out | BY_DESIGN | {(cfg.k3s.namespace, PROBE_SERVICE)}


def lan_entries(kube: KubeClient, cfg: PlatformConfig) -> list[LanEntry]:
    declared = declared_on_lan(cfg)
    found = [e for svc in kube.list("v1", "Service") if (e := service_entry(svc, declared))]
    owners: dict[tuple[str, str], LanEntry] = {}
    for pod in kube.list("v1", "Pod"):
        if entry := pod_entry(pod, declared):
            owners.setdefault((entry.what, entry.where), entry)  # a DaemonSet's pods: one entry
    return sorted([*found, *owners.values()], key=lambda e: (e.declared, e.what))


def service_entry(svc: Obj, declared: set[tuple[str, str]]) -> LanEntry | None:
    meta, spec = svc["metadata"], svc.get("spec") or {}
    ports = spec.get("ports") or []
    places = []
    if spec.get("type") == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [i.get("ip") or i.get("hostname") for i in ingress] or ["a pool address (pending)"]
        places += [f"{ip}:{','.join(str(p['port']) for p in ports)}" for ip in ips]
    places += [f"{ip} (externalIP)" for ip in spec.get("externalIPs") or []]
    node_ports = [str(p["nodePort"]) for p in ports if p.get("nodePort")]
    if node_ports:
        places.append(f"node ports {','.join(node_ports)}")
    if not places:
        return None
    where = (meta.get("namespace", ""), meta["name"])
    # a declared Service is on the LAN at its pool address only: node ports and external IPs were not asked for
    ok = where in declared and not node_ports and not spec.get("externalIPs")
    return LanEntry(f"Service {where[0]}/{where[1]}", "; ".join(places), ok)


def pod_entry(pod: Obj, declared: set[tuple[str, str]]) -> LanEntry | None:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    host_ports = [
        str(p["hostPort"]) for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")
    ]
    if not (spec.get("hostNetwork") or host_ports):
        return None
    kind, name = _workload(pod)
    where = "host network" if spec.get("hostNetwork") else f"host ports {','.join(host_ports)}"
    what = f"pods of {kind} {meta.get('namespace')}/{name}" if kind != "Pod" else f"pod {meta.get('namespace')}/{name}"
    return LanEntry(what, where, (meta.get("namespace", ""), name) in declared)


def _workload(pod: Obj) -> tuple[str, str]:
    """What made the pod, by a name that outlives a rollout: a ReplicaSet's Deployment (the ReplicaSet is named
    `<deployment>-<pod-template-hash>`), else its owner, else the pod itself."""
    meta = pod["metadata"]
    owner = next(iter(meta.get("ownerReferences") or []), None)
    if owner is None:
        return "Pod", meta["name"]
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if owner["kind"] == "ReplicaSet" and template_hash and owner["name"].endswith(f"-{template_hash}"):
        return "Deployment", owner["name"].removesuffix(f"-{template_hash}")
    return str(owner["kind"]), str(owner["name"])

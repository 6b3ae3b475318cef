"""Shared pieces of the rendered Kubernetes objects: labels, metadata, container hardening, YAML output."""

from __future__ import annotations

from typing import Any

import yaml

MANAGED_BY = "mlops-platform"
ASSET_LABEL = "mlops-platform/asset"
IN_CLUSTER = "https://kubernetes.default.svc"
ARGOCD_NAMESPACE = "argocd"
APPLICATION = ("argoproj.io/v1alpha1", "Application")  # Argo CD's kind: apiVersion, kind

Obj = dict[str, Any]
# A LoadBalancer also opens a node port on every node address unless told not to (KEP-1864); MetalLB's L2 mode
# needs none (kube-proxy answers on the pool IP itself), so a lan Service is reachable at its pool IP only.
LOAD_BALANCER_ONLY = {"allocateLoadBalancerNodePorts": False}


def labels(asset: str, name: str | None = None) -> dict[str, str]:
    """Every object says who manages it and which asset owns it, so orphans can be found by label."""
    out = {"app.kubernetes.io/managed-by": MANAGED_BY, ASSET_LABEL: asset}
    if name:
        out["app.kubernetes.io/name"] = name
    return out


def meta(name: str, asset: str, namespace: str | None = None, app: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "labels": labels(asset, app)}
    if namespace:
        out["namespace"] = namespace
    return out


def application_ref(name: str) -> Obj:
    """An Argo CD Application by name, for get/apply/delete."""
    return obj(*APPLICATION, {"name": name, "namespace": ARGOCD_NAMESPACE})


def obj(api_version: str, kind: str, metadata: dict[str, Any], **fields: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def namespace(name: str, asset: str) -> Obj:
    return obj("v1", "Namespace", meta(name, asset))


def hardened(user: int | None) -> dict[str, Any]:
    """Container securityContext: no privilege escalation, no capabilities; non-root when ``user`` is given."""
    ctx: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if user is not None:
        ctx.update(runAsNonRoot=True, runAsUser=user, runAsGroup=user)
    return ctx


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def http_probe(path: str, port: int | str, period: int = 10, delay: int = 5, failures: int = 6) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def service(name: str, asset: str, ns: str, ports: dict[str, int], exposure: str) -> Obj:
    """A Service selecting the pods labelled ``app.kubernetes.io/name: <name>``: a LoadBalancer (a pool IP on the
    LAN) when its exposure (k3s.exposure) is ``lan``, else a ClusterIP reached only inside the cluster."""
    spec: dict[str, Any] = {
        "selector": {"app.kubernetes.io/name": name},
        "ports": [{"name": p, "port": n, "targetPort": n, "protocol": "TCP"} for p, n in ports.items()],
        "type": "LoadBalancer" if exposure == "lan" else "ClusterIP",
    }
    if exposure == "lan":
        spec.update(LOAD_BALANCER_ONLY)
    return obj("v1", "Service", meta(name, asset, ns, name), spec=spec)


def pvc(name: str, asset: str, ns: str, app: str, size: str) -> Obj:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    return obj("v1", "PersistentVolumeClaim", meta(name, asset, ns, app), spec=spec)


def deployment(name: str, asset: str, ns: str, pod_spec: dict[str, Any], recreate: bool = False) -> Obj:
    """One replica; ``recreate`` for pods owning a ReadWriteOnce volume, which two pods cannot share."""
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {"metadata": {"labels": labels(asset, name)}, "spec": pod_spec},
    }
    if recreate:
        spec["strategy"] = {"type": "Recreate"}
    return obj("apps/v1", "Deployment", meta(name, asset, ns, name), spec=spec)


def to_yaml(objs: list[Obj], header: str = "") -> str:
    """Deterministic multi-document YAML: sorted keys, objects in the given order."""
    body = yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False, explicit_start=True, width=120)
    return header + body

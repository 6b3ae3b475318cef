"""Pure helpers of the Kubernetes client layer: naming objects, checking their shape, the CRDs among them,
and what counts when comparing a live object for "unchanged"."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from platform_core.cluster.kube_diff import normalize
from platform_core.cluster.kube_error import KubeError

if TYPE_CHECKING:
    from kubernetes import client

Obj = dict[str, Any]
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def describe(obj: Obj) -> str:
    """``Deployment mlops/mlflow``: how errors and reports name an object."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}"


def server_message(err: client.ApiException) -> str:
    try:
        body = json.loads(err.body or "")
        return str(body.get("message") or err.reason)
    except (ValueError, AttributeError):
        return f"{err.status} {err.reason}"


def well_formed(obj: Any, index: int) -> Obj:
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        raise KubeError(f"object #{index}: not a Kubernetes object (needs apiVersion and kind)")
    if not (obj.get("metadata") or {}).get("name"):
        raise KubeError(f"object #{index} ({obj['kind']}): metadata.name is required")
    return obj


def crd_kinds(objs: list[Obj]) -> set[tuple[str, str]]:
    """(apiVersion, kind) pairs the CRDs among ``objs`` will serve."""
    out: set[tuple[str, str]] = set()
    for o in objs:
        if isinstance(o, dict) and (o.get("apiVersion"), o.get("kind")) == CRD:
            spec = o.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind"))
            out |= {
                (f"{spec.get('group')}/{v.get('name')}", kind)
                for v in spec.get("versions") or []
                if v.get("served", True)
            }
    return out


def settled(obj: Obj) -> Obj:
    """An object as compared for "unchanged": managed fields count, their timestamps do not."""
    out = normalize(obj)
    out["metadata"]["managedFields"] = [
        {k: v for k, v in mf.items() if k != "time"} for mf in (obj.get("metadata") or {}).get("managedFields") or []
    ]
    return out

"""Small object builders for tests that drive the fake API server."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

Obj = dict[str, Any]


def crd(group: str, kind: str, plural: str, scope: str = "Namespaced", version: str = "v1beta1") -> Obj:
    """A CustomResourceDefinition with one served version, a status subresource and an open schema."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    served = {"name": version, "served": True, "storage": True, "schema": schema, "subresources": {"status": {}}}
    names = {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope, "versions": [served], "names": names},
    }


def deployment(
    name: str, image: str = "nginx:1.27", replicas: int = 1, ns: str = "default", labels: dict[str, str] | None = None
) -> Obj:
    """A one-container Deployment selecting ``app=<name>``."""
    selector = {"app": name}
    meta: Obj = {"name": name, "namespace": ns} | ({"labels": labels} if labels else {})
    template = {"metadata": {"labels": selector}, "spec": {"containers": [{"name": "main", "image": image}]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
    }


def rolled_out(apps: client.AppsV1Api, ns: str, name: str, timeout: float = 5.0) -> Any:
    """The Deployment once rolled out: the fake takes rollout_seconds, as pods take time to start."""
    deadline = time.monotonic() + timeout
    while (dep := apps.read_namespaced_deployment(name, ns)).status.available_replicas != dep.spec.replicas:
        assert time.monotonic() < deadline, f"{ns}/{name} did not roll out"
        time.sleep(0.05)
    return dep

"""The fake API server's resource registry: built-in types, CRD-served types, and discovery documents."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has a /status subresource
    subresources: tuple[str, ...] = ()  # others, e.g. ("log",)
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the real server names the resource in messages: ``deployments.apps``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery(self) -> list[dict[str, Any]]:
        main = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": _RW,
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        subs = (["status"] if self.status else []) + list(self.subresources)
        verbs = {"status": ["get", "patch", "update"], "log": ["get"], "scale": ["get", "patch", "update"]}
        return [main] + [
            {
                "name": f"{self.plural}/{s}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": verbs.get(s, ["get"]),
            }
            for s in subs
        ]


def _t(gv: str, plural: str, kind: str, ns: bool, status: bool = False, *subs: str) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(group, version, plural, kind, ns, status, subs)


BUILTIN: list[ResourceType] = [
    _t("v1", "namespaces", "Namespace", False, True),
    _t("v1", "services", "Service", True, True),
    _t("v1", "endpoints", "Endpoints", True),
    _t("v1", "configmaps", "ConfigMap", True),
    _t("v1", "secrets", "Secret", True),
    _t("v1", "pods", "Pod", True, True, "log", "portforward"),
    _t("v1", "serviceaccounts", "ServiceAccount", True),
    _t("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, True),
    _t("v1", "persistentvolumes", "PersistentVolume", False, True),
    _t("v1", "nodes", "Node", False, True),
    _t("v1", "events", "Event", True),
    _t("apps/v1", "deployments", "Deployment", True, True, "scale"),
    _t("apps/v1", "statefulsets", "StatefulSet", True, True, "scale"),
    _t("apps/v1", "daemonsets", "DaemonSet", True, True),
    _t("apps/v1", "replicasets", "ReplicaSet", True, True, "scale"),
    _t("batch/v1", "jobs", "Job", True, True),
    _t("rbac.authorization.k8s.io/v1", "roles", "Role", True),
    _t("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True),
    _t("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False),
    _t("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _t("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False, True),
    _t("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True),
    _t("networking.k8s.io/v1", "ingresses", "Ingress", True, True),
    _t("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True, True),
    _t("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
    _t("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
    _t("coordination.k8s.io/v1", "leases", "Lease", True),
    _t("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", False),
    _t("storage.k8s.io/v1", "storageclasses", "StorageClass", False),
    _t("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    # served by K3s's bundled metrics-server through the aggregation layer: see fake_metrics.py
    _t("metrics.k8s.io/v1beta1", "pods", "PodMetrics", True),
    _t("metrics.k8s.io/v1beta1", "nodes", "NodeMetrics", False),
]


class Registry:
    """Which (group, version, plural) the fake serves; CRDs add and remove entries."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        # A CRD's types are served as soon as it is Established, but discovery lists them only once the
        # apiextensions DiscoveryController has resynced (apiextensions-apiserver pkg/apiserver/
        # customresource_discovery_controller.go, asynchronous): clients that re-read discovery right after
        # Established get "no matches for kind" (kubernetes/kubectl#1117). Seconds to wait; 0 turns it off.
        self.discovery_lag = 0.0
        self._visible_at: dict[tuple[str, str, str], float] = {}
        for rt in BUILTIN:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return next((t for t in self._types.values() if t.api_version == api_version and t.kind == kind), None)

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def add_crd(self, crd: dict[str, Any]) -> None:
        self.remove_crd(crd["metadata"]["name"])
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        added = []
        for ver in spec.get("versions", []):
            if not ver.get("served", True):
                continue
            rt = ResourceType(
                spec["group"],
                ver["name"],
                names["plural"],
                names["kind"],
                spec.get("scope") == "Namespaced",
                "status" in (ver.get("subresources") or {}),
                short_names=tuple(names.get("shortNames", [])),
            )
            key = (rt.group, rt.version, rt.plural)
            if key not in self._types:
                self._visible_at[key] = time.monotonic() + self.discovery_lag
            self._types[key] = rt
            added.append(rt)
        self._by_crd[crd["metadata"]["name"]] = added

    def remove_crd(self, name: str) -> list[ResourceType]:
        gone = self._by_crd.pop(name, [])
        for rt in gone:
            self._types.pop((rt.group, rt.version, rt.plural), None)
            self._visible_at.pop((rt.group, rt.version, rt.plural), None)
        return gone

    def _discoverable(self) -> list[ResourceType]:
        now = time.monotonic()
        return [rt for key, rt in self._types.items() if self._visible_at.get(key, 0.0) <= now]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rt in self._discoverable():
            if rt.group and rt.version not in out.setdefault(rt.group, []):
                out[rt.group].append(rt.version)
        return out

    def api_group_list(self) -> dict[str, Any]:
        groups = []
        for name, versions in sorted(self.groups().items()):
            gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
            groups.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = [t for t in self._discoverable() if t.group == group and t.version == version]
        if not types:
            return None
        gv = f"{group}/{version}" if group else version
        resources = [entry for t in types for entry in t.discovery()]
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

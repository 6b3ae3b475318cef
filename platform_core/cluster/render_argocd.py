"""Argo CD's own objects around its upstream install.yaml, and the Applications of the app-of-apps tree."""

from __future__ import annotations

from typing import Any

from platform_core.cluster.gitops_source import repo_url, revision
from platform_core.cluster.render_base import (
    APPLICATION,
    ARGOCD_NAMESPACE,
    IN_CLUSTER,
    LOAD_BALANCER_ONLY,
    Obj,
    meta,
    namespace,
    obj,
)
from platform_core.config import PlatformConfig

ASSET = "argocd"
ROOT_ASSET = "gitops"
ROOT_APP = "mlops-platform"
# prune off: a file removed from git must not delete a database; selfHeal on: hand edits are reverted.
SYNC_POLICY: dict[str, Any] = {"automated": {"prune": False, "selfHeal": True}}


def argocd_namespace() -> Obj:
    """install.yaml carries no Namespace object, yet all of it goes into ``argocd``."""
    return namespace(ARGOCD_NAMESPACE, ASSET)


def platform_namespace(cfg: PlatformConfig) -> Obj:
    return namespace(cfg.k3s.namespace, ASSET)


def argocd_server_patch(cfg: PlatformConfig) -> Obj:
    """A minimal server-side-apply object: only ``type`` (a pool IP when k3s.exposure.argocd is lan, upstream's
    ClusterIP otherwise), so the platform owns that one field of the Service."""
    lan = cfg.k3s.exposure.of(ASSET) == "lan"
    spec = {"type": "LoadBalancer", **LOAD_BALANCER_ONLY} if lan else {"type": "ClusterIP"}
    return obj("v1", "Service", meta("argocd-server", ASSET, ARGOCD_NAMESPACE), spec=spec)


def _application(name: str, asset: str, cfg: PlatformConfig, path: str, dest_namespace: str) -> Obj:
    spec = {
        "project": "default",
        "source": {"repoURL": repo_url(cfg), "targetRevision": revision(cfg), "path": path},
        "destination": {"server": IN_CLUSTER, "namespace": dest_namespace},
        "syncPolicy": SYNC_POLICY,
    }
    return obj(*APPLICATION, meta(name, asset, ARGOCD_NAMESPACE, name), spec=spec)


def root_application(cfg: PlatformConfig) -> Obj:
    """The app-of-apps root: Argo CD syncs the child Applications under ``cfg.k3s.gitops.path``."""
    return _application(ROOT_APP, ROOT_ASSET, cfg, cfg.k3s.gitops.path, ARGOCD_NAMESPACE)


def child_application(cfg: PlatformConfig, service: str) -> Obj:
    """One platform service: its plain manifests under ``infra/manifests/<service>`` into the platform namespace."""
    return _application(service, service, cfg, f"infra/manifests/{service}", cfg.k3s.namespace)


def render_argocd_pre(cfg: PlatformConfig) -> list[Obj]:
    """Applied before install.yaml: the namespaces it and the platform services go into."""
    return [argocd_namespace(), platform_namespace(cfg)]


def render_argocd_post(cfg: PlatformConfig) -> list[Obj]:
    """Applied after install.yaml: the server on a pool IP, then the root Application."""
    return [argocd_server_patch(cfg), root_application(cfg)]

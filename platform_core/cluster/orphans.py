"""Orphans: live objects labelled as the platform's, or Argo CD Applications, that nothing desires any more —
the seed's MinIO Application, removed from git and still running. Found always; pruned only with
`k3s.prune_orphans: true`, and an Application is pruned with its workloads (Argo CD's cascade finalizer)."""

from __future__ import annotations

from typing import Any

import yaml

from platform_core.cluster.gitops_source import render_gitops_source
from platform_core.cluster.kube import KubeClient
from platform_core.cluster.kube_health import wait_until_none_left
from platform_core.cluster.render import render_infra_tree
from platform_core.cluster.render_argocd import argocd_server_patch, render_argocd_pre, root_application
from platform_core.cluster.render_base import APPLICATION, ARGOCD_NAMESPACE, MANAGED_BY, application_ref
from platform_core.cluster.render_metallb import render_metallb
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.secrets import METALLB_MEMBERLIST, render_secrets
from platform_core.services.seaweedfs import SeaweedFSResource

Obj = dict[str, Any]
Identity = tuple[str, str | None, str]  # kind, namespace, name
CASCADE = "resources-finalizer.argocd.argoproj.io"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def _identity(obj: Obj, default_ns: str) -> Identity:
    meta = obj.get("metadata") or {}
    ns = None if obj.get("kind") in CLUSTER_SCOPED else meta.get("namespace") or default_ns
    return obj.get("kind", ""), ns, meta.get("name", "")


def desired(c: ClusterResource) -> list[Obj]:
    """Everything the platform applies itself (the in-cluster GitOps source too) or through Argo CD from infra/."""
    cfg = c.cfg
    identities = SeaweedFSResource(config_path=c.config_path, state_dir=c.state_dir).identities()
    mine = [
        *render_metallb(cfg, c.state.credentials.token(METALLB_MEMBERLIST)),
        *render_argocd_pre(cfg),
        argocd_server_patch(cfg),
        root_application(cfg),
        *render_secrets(cfg, c.state.credentials, identities, c.config_text),
    ]
    tree = render_infra_tree(cfg)
    from_git = [doc for text in tree.values() for doc in yaml.safe_load_all(text) if doc]
    source = render_gitops_source(cfg, tree) if cfg.k3s.gitops.in_cluster else []
    return mine + source + from_git


def orphan_objects(c: ClusterResource, kube: KubeClient) -> list[Obj]:
    """Labelled objects nothing desires, among the kinds the platform creates. Never a Pod (a running training
    or batch step is the platform's and owned by no one), never an object a controller owns."""
    wanted = desired(c)
    kinds = {(o["apiVersion"], o["kind"]) for o in wanted if o.get("kind") not in ("Pod", APPLICATION[1])}
    live = kube.list_managed(f"app.kubernetes.io/managed-by={MANAGED_BY}", kinds)
    # ReplicaSets, EndpointSlices... carry the labels of their owner: only top-level objects can be orphans
    top = [o for o in live if not o["metadata"].get("ownerReferences")]
    identities = {
        _identity(o, ARGOCD_NAMESPACE if o.get("kind") == "Application" else c.cfg.k3s.namespace) for o in wanted
    }
    return [o for o in top if _identity(o, c.cfg.k3s.namespace) not in identities]


def describe(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace') + '/' if meta.get('namespace') else ''}{meta['name']}"


def prune_application(kube: KubeClient, name: str) -> None:
    """Delete an Application *and* what it deployed: without the finalizer Argo CD leaves the workloads."""
    ref = application_ref(name)
    kube.apply(
        [{**ref, "metadata": {**ref["metadata"], "finalizers": [CASCADE]}}], field_manager="mlops-platform-prune"
    )
    kube.delete(ref)


def application_orphans(kube: KubeClient, desired: set[str]) -> tuple[list[str], list[str]]:
    """(orphans, being pruned): live Applications nothing desires, apart from those already deleted and waiting
    for Argo CD's cascade (deletionTimestamp set, Terminating until their resources are gone)."""
    live = kube.list(*APPLICATION, namespace=ARGOCD_NAMESPACE)
    gone = {a["metadata"]["name"] for a in live if a["metadata"].get("deletionTimestamp")}
    names = {a["metadata"]["name"] for a in live} - desired
    return sorted(names - gone), sorted(names & gone)


def prune_applications(
    kube: KubeClient, names: list[str], terminating: list[str], timeout: float, interval: float = 0.5
) -> None:
    """Prune each Application with its workloads, and wait until Argo CD has deleted them and those already
    ``terminating`` (bounded). The API server refuses a new finalizer on an object being deleted: those are
    only waited for."""
    for name in names:
        prune_application(kube, name)
    wait_until_none_left(
        lambda: [n for n in [*names, *terminating] if kube.get(application_ref(n)) is not None],
        timeout,
        lambda left: (
            f"Applications {left} still Terminating after {timeout:g}s: Argo CD deletes their resources "
            "first (see each one's status)"
        ),
        interval,
    )

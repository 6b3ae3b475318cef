"""The k3s target's cluster assets: K3s, MetalLB, Argo CD, the Secrets, the platform image and the app-of-apps,
each one reconcile step (platform_core/cluster/steps.py). The host and the services Argo CD deploys have their
homes with their local twins (defs/host, defs/storage, defs/tracking), whose function checks run unchanged
against the services' recorded addresses (LoadBalancer, or the platform's port-forward)."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import dagster as dg

from platform_core.cluster.bundle import bundle_images, required_images, wanted
from platform_core.cluster.gitops_source import NAME as GITOPS_SOURCE
from platform_core.cluster.gitops_source import TREE_DIGEST, tree_config_map, tree_digest
from platform_core.cluster.image import bundle_archive, desired_image, live_image, normalized_ref
from platform_core.cluster.kube import KubeClient
from platform_core.cluster.kube_health import condition_true
from platform_core.cluster.lan_exposure import lan_entries
from platform_core.cluster.orphans import application_orphans
from platform_core.cluster.reconcile import cluster_spec, reconcile_asset
from platform_core.cluster.render import REPO_ROOT, diff_tree, render_infra_tree
from platform_core.cluster.render_argocd import platform_namespace
from platform_core.cluster.render_base import ARGOCD_NAMESPACE
from platform_core.cluster.render_metallb import live_pool_problems, live_pool_strings, probe_service
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.steps import (
    METALLB_NAMESPACE,
    STEPS,
    application_status,
    desired_applications,
    image_source,
)
from platform_core.config import PlatformConfig
from platform_core.results import check_errors_fail

LB_WAIT_SECONDS = 60

CLUSTER_SPECS = [
    cluster_spec("k3s_cluster", "cluster", ["host"], "K3s with the configured CIDRs, online or air-gapped."),
    cluster_spec(
        "cluster_images",
        "cluster",
        ["k3s_cluster"],
        "Every image the cluster runs, in K3s's containerd: imported from the offline bundle in air-gap.",
    ),
    cluster_spec("metallb", "cluster", ["cluster_images"], "MetalLB (ConfigMap or CRD mode) and its pool."),
    cluster_spec("argocd", "cluster", ["metallb"], "Argo CD from its pinned install.yaml, server-side applied."),
    cluster_spec("cluster_secrets", "cluster", ["k3s_cluster"], "The Secrets the platform's pods read."),
    cluster_spec(
        "platform_image",
        "cluster",
        ["k3s_cluster"],
        "versions.platform_image in K3s's containerd: imported from the offline bundle or built on the host.",
    ),
    cluster_spec(
        "gitops", "cluster", ["argocd", "cluster_secrets", "platform_image"], "The app-of-apps root Application."
    ),
]


# --- checks --------------------------------------------------------------------------------------------------
def _get(cluster: ClusterResource, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
    found = cluster.kube().get(
        {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    )
    return found or {}


@dg.asset_check(asset="k3s_cluster", blocking=True, description="Every node reports Ready.")
@check_errors_fail
def node_ready(cluster: ClusterResource) -> dg.AssetCheckResult:
    nodes = cluster.kube().list("v1", "Node")
    ready = {n["metadata"]["name"]: condition_true(n, "Ready") for n in nodes}
    return dg.AssetCheckResult(passed=bool(ready) and all(ready.values()), description=f"nodes: {ready or 'none'}")


API_SERVICE_NAME = "kubernetes.default.svc.cluster.local"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dg.asset_check(
    asset="k3s_cluster", blocking=True, description="The `kubernetes` Service holds the first address of service_cidr."
)
@check_errors_fail
def service_cidr_in_use(cluster: ClusterResource) -> dg.AssetCheckResult:
    want = str(cluster.cfg.cluster_network.service_cidr[1])
    got = _get(cluster, "v1", "Service", "kubernetes", "default").get("spec", {}).get("clusterIP")
    return dg.AssetCheckResult(passed=got == want, description=f"kubernetes Service ClusterIP {got}, want {want}")


@dg.asset_check(
    asset="k3s_cluster",
    blocking=True,
    description="CoreDNS on network.cluster_dns answers a real query from the node for the API Service's name.",
)
@check_errors_fail
def cluster_dns_serves(cluster: ClusterResource) -> dg.AssetCheckResult:
    network = cluster.cfg.cluster_network
    dns, api = str(network.cluster_dns), str(network.service_cidr[1])
    got = _get(cluster, "v1", "Service", "kube-dns", "kube-system").get("spec", {}).get("clusterIP")
    # Asked on the node, where ClusterIPs route (dig comes with host preparation): a Service IP alone proves nothing.
    query = cluster.executor.probe(["dig", "+short", "+time=2", "+tries=2", f"@{dns}", API_SERVICE_NAME, "A"])
    answers = [line for line in query.out.split() if _is_ip(line)] if query.ok else []  # not dig's ";;" notes
    error = query.stderr.decode(errors="replace").strip()
    said = ", ".join(answers) if query.ok else f"no answer (rc {query.rc}: {error})"
    return dg.AssetCheckResult(
        passed=got == dns and answers == [api],
        description=f"kube-dns ClusterIP {got} (want {dns}); {API_SERVICE_NAME} @{dns}: {said} (want {api})",
    )


@dg.asset_check(asset="metallb", blocking=True, description="A probe LoadBalancer Service gets an IP from the pool.")
@check_errors_fail
def load_balancer_gets_pool_ip(cluster: ClusterResource) -> dg.AssetCheckResult:
    kube, probe = cluster.kube(), probe_service(cluster.cfg)
    # The probe lives in the platform namespace, which argocd or cluster_secrets may not have created yet.
    kube.apply([platform_namespace(cluster.cfg), probe])
    where = (probe["metadata"]["namespace"], probe["metadata"]["name"])
    deadline = time.monotonic() + LB_WAIT_SECONDS
    while (ip := kube.load_balancer_ip(*where)) is None and time.monotonic() < deadline:
        time.sleep(1)  # MetalLB assigns asynchronously
    kube.delete(probe)  # give its address back: the pool may be small (21 addresses in the seed)
    first, last = cluster.cfg.cluster_network.pool_range
    inside = ip is not None and first <= ipaddress.IPv4Address(ip) <= last
    live_pool = live_pool_problems(cluster.cfg, live_pool_strings(_live_pool_objects(kube)))
    return dg.AssetCheckResult(
        passed=inside and not live_pool,
        description=f"probe Service got {ip or 'no address'} (pool {first}-{last})"
        + (f"; live pool: {'; '.join(live_pool)}" if live_pool else ""),
    )


def _live_pool_objects(kube: KubeClient) -> list[dict]:
    """MetalLB's pool as the cluster has it (the ConfigMap of v0.12, or IPAddressPools of v0.13+)."""
    found = kube.get(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": "metallb-system"}}
    )
    pools = [found] if found else []
    if ("metallb.io/v1beta1", "IPAddressPool") in kube.served_kinds():
        pools += kube.list("metallb.io/v1beta1", "IPAddressPool", "metallb-system")
    return pools


@dg.asset_check(asset="argocd", blocking=True, description="Every Argo CD Deployment is available.")
@check_errors_fail
def argocd_available(cluster: ClusterResource) -> dg.AssetCheckResult:
    kube = cluster.kube()
    names = [d["metadata"]["name"] for d in kube.list("apps/v1", "Deployment", ARGOCD_NAMESPACE)]
    state = kube.deployments_available(ARGOCD_NAMESPACE, names)
    down = [n for n, ok in state.items() if not ok]
    return dg.AssetCheckResult(
        passed=bool(names) and not down, description=f"unavailable: {down or 'none'} of {len(names)}"
    )


@dg.asset_check(asset="gitops", description="Each Application is Synced and Healthy.")
@check_errors_fail
def applications_synced_healthy(cluster: ClusterResource) -> dg.AssetCheckResult:
    kube = cluster.kube()
    bad = []
    for name in sorted(desired_applications()):
        sync, health, message = application_status(kube, name)
        if (sync, health) != ("Synced", "Healthy"):
            bad.append(f"{name} {sync}/{health}" + (f" ({message})" if message else ""))
    return dg.AssetCheckResult(passed=not bad, description="; ".join(bad) or "all Synced and Healthy")


@dg.asset_check(
    asset="platform_image",
    blocking=True,
    description="K3s has versions.platform_image: built from these sources, or the bundle's; for registry, "
    "no pod fails to pull it.",
)
@check_errors_fail
def platform_image_present(cluster: ClusterResource) -> dg.AssetCheckResult:
    cfg, (source, _) = cluster.cfg, image_source(cluster)
    ref = cfg.versions.platform_image
    if source == "registry":
        failures = [
            f
            for f in cluster.kube().image_pull_failures(cfg.k3s.namespace)
            if normalized_ref(f.image) == normalized_ref(ref)
        ]
        lines = [f"{f.pod} on node {f.node}: {f.reason}: {f.message}" for f in failures]
        return dg.AssetCheckResult(
            passed=not failures, description=f"registry {ref}: {'; '.join(lines) or 'no pull failures'}"
        )
    want = desired_image(source, bundle_archive(cluster.bundle_dir), ref, REPO_ROOT)
    live = live_image(cluster.executor, ref)
    return dg.AssetCheckResult(passed=want.met_by(live), description=f"{source} {ref}: {want.describe(live)}")


@dg.asset_check(
    asset="cluster_images",
    blocking=True,
    description="Air-gap: each image the cluster runs is in K3s's containerd as its bundle archive has it; "
    "online: no platform pod fails to pull one.",
)
@check_errors_fail
def cluster_images_present(cluster: ClusterResource) -> dg.AssetCheckResult:
    if cluster.install_mode[0] == "online":
        lines = _pull_failures(cluster, _platform_namespaces(cluster.cfg))
        return dg.AssetCheckResult(passed=not lines, description=f"online: {'; '.join(lines) or 'no pull failure'}")
    # the platform image's archive is platform_image_present's
    archives = bundle_images(cluster.bundle_dir or Path("."), required_images(cluster.cfg))
    absent = []
    for ref, archive in archives.items():
        want, live = wanted(archive), live_image(cluster.executor, ref)
        if not want.met_by(live):
            absent.append(f"{ref} ({want.describe(live)})")
    return dg.AssetCheckResult(
        passed=not absent,
        description=f"{len(archives) - len(absent)} of {len(archives)} in containerd"
        + (f"; not as the bundle has it: {', '.join(absent)}" if absent else ""),
    )


def _platform_namespaces(cfg: PlatformConfig) -> list[str]:
    return [METALLB_NAMESPACE, ARGOCD_NAMESPACE, cfg.k3s.namespace]


@dg.asset_check(asset="gitops", blocking=True, description="What Argo CD syncs is what platform.yaml renders.")
@check_errors_fail
def infra_matches_config(cluster: ClusterResource) -> dg.AssetCheckResult:
    """Argo CD deploys git, not platform.yaml: the in-cluster source must serve this config's tree, and a repo
    source must hold it (rendered and pushed), or the cluster runs something else than the config says."""
    tree = render_infra_tree(cluster.cfg)
    if not cluster.cfg.k3s.gitops.in_cluster:
        stale = diff_tree(tree, REPO_ROOT)
        fix = "; run `python -m platform_core.cluster.render` and push" if stale else ""
        return dg.AssetCheckResult(passed=not stale, description=f"differs: {', '.join(stale) or 'nothing'}{fix}")
    served, want = tree_config_map(tree), tree_digest(tree)[:16]
    live = cluster.kube().get(served) or {}
    stale = sorted(
        k for k in {*served["data"], *(live.get("data") or {})} if served["data"].get(k) != live.get("data", {}).get(k)
    )
    # what git daemon serves is what its pod committed at start: a Ready pod must have started on this tree
    pods = [p for p in cluster.kube().list("v1", "Pod", ARGOCD_NAMESPACE) if _serves(p, want)]
    where = f"ConfigMap {ARGOCD_NAMESPACE}/{served['metadata']['name']}"
    problems = ["missing"] if not live else [f"differs: {', '.join(stale)}"] if stale else []
    problems += [] if pods else [f"no Ready {GITOPS_SOURCE} pod serves tree {want}"]
    return dg.AssetCheckResult(
        passed=not problems,
        description=f"{where}: {'; '.join(problems) + '; materialize gitops' if problems else 'served as rendered'}",
    )


def _serves(pod: dict[str, Any], digest: str) -> bool:
    meta = pod.get("metadata") or {}
    named = (meta.get("labels") or {}).get("app.kubernetes.io/name") == GITOPS_SOURCE
    return named and condition_true(pod, "Ready") and (meta.get("annotations") or {}).get(TREE_DIGEST) == digest


@dg.asset_check(asset="gitops", description="No pod is stuck pulling its image (the seed's Bitnami failure).")
@check_errors_fail
def images_pull(cluster: ClusterResource) -> dg.AssetCheckResult:
    lines = _pull_failures(cluster, [cluster.cfg.k3s.namespace])
    return dg.AssetCheckResult(passed=not lines, description="; ".join(lines) or "every image pulled")


def _pull_failures(cluster: ClusterResource, namespaces: list[str]) -> list[str]:
    kube = cluster.kube()
    failures = [f for ns in namespaces for f in kube.image_pull_failures(ns)]
    return [f"{f.image} on node {f.node} ({f.pod}): {f.reason}: {f.message}" for f in failures]


@dg.asset_check(asset="gitops", description="No live Application is missing from git (the seed's MinIO orphan).")
@check_errors_fail
def no_orphan_applications(cluster: ClusterResource) -> dg.AssetCheckResult:
    orphans, pruning = application_orphans(cluster.kube(), desired_applications())
    hint = "; prune with k3s.prune_orphans: true" if orphans else ""
    hint += f" (being pruned: {', '.join(pruning)})" if pruning else ""
    return dg.AssetCheckResult(passed=not orphans, description=f"orphans: {', '.join(orphans) or 'none'}{hint}")


@dg.asset_check(
    asset="gitops",
    description="What the LAN reaches (LoadBalancers, node ports, external IPs, host-network pods) is what "
    "k3s.exposure declares.",
)
@check_errors_fail
def only_declared_on_lan(cluster: ClusterResource) -> dg.AssetCheckResult:
    entries = lan_entries(cluster.kube(), cluster.cfg)
    undeclared = [str(e) for e in entries if not e.declared]
    listed = "; ".join(str(e) for e in entries) or "nothing"
    return dg.AssetCheckResult(
        passed=not undeclared,
        description=(f"not declared on the LAN: {'; '.join(undeclared)}. " if undeclared else "")
        + f"On the LAN: {listed}",
    )


CLUSTER_CHECKS = [
    node_ready,
    service_cidr_in_use,
    cluster_dns_serves,
    load_balancer_gets_pool_ip,
    cluster_images_present,
    argocd_available,
    platform_image_present,
    applications_synced_healthy,
    infra_matches_config,
    images_pull,
    no_orphan_applications,
    only_declared_on_lan,
]


def cluster_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """The k3s target's cluster (nothing in the local target), with its checks and its config drift sensor."""
    if cfg.target != "k3s":
        return dg.Definitions()
    assets = [reconcile_asset(spec, STEPS[spec.key.to_user_string()]) for spec in CLUSTER_SPECS]
    return dg.Definitions(assets=assets, asset_checks=CLUSTER_CHECKS)

"""The k3s target's reconcile steps, one per asset: each looks, changes only what differs, and says what it
changed; in plan mode (`state.planning()`) each says what it *would* change and changes nothing.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from platform_core.cluster.bundle import cluster_images_step, pull_if_not_present
from platform_core.cluster.gitops_source import NAME as GITOPS_SOURCE
from platform_core.cluster.gitops_source import refresh_applications, render_gitops_source, repo_url, revision
from platform_core.cluster.image import (
    Source,
    build_egress,
    bundle_archive,
    desired_image,
    image_step,
    live_image,
    resolve_source,
)
from platform_core.cluster.k3s_install import (
    K3sInstallError,
    NeedsRebuildError,
    cidr_change,
    fetch_kubeconfig,
    install_steps,
    installed_cidrs,
)
from platform_core.cluster.kube import ApplyResult, KubeClient, KubeError
from platform_core.cluster.orphans import (
    application_orphans,
    describe,
    orphan_objects,
    prune_applications,
)
from platform_core.cluster.port_forward import kubectl_command
from platform_core.cluster.render import REPO_ROOT, SERVICES, render_infra_tree
from platform_core.cluster.render_argocd import (
    ROOT_APP,
    argocd_server_patch,
    platform_namespace,
    render_argocd_pre,
    root_application,
)
from platform_core.cluster.render_base import ARGOCD_NAMESPACE, application_ref
from platform_core.cluster.render_metallb import render_metallb
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.rollout import restart_consumers, restart_image_users
from platform_core.cluster.secrets import METALLB_MEMBERLIST, render_secrets
from platform_core.cluster.step_result import StepResult
from platform_core.host.facts import host_facts
from platform_core.host.prepare import prepare_host, run_steps
from platform_core.redact import redact_url
from platform_core.services.seaweedfs import SeaweedFSResource

Obj = dict[str, Any]
METALLB_NAMESPACE = "metallb-system"
MANAGER = "mlops-platform"
# A field manager of its own: under server-side apply, the same manager applying only `type` would give up (and
# so delete) every field of the Service that install.yaml set, and each run would flip between the two.
ARGOCD_SERVER_MANAGER = "mlops-platform-argocd-server"


def _lines(results: list[ApplyResult]) -> list[str]:
    return [
        f"{r.action} {r.kind} {r.namespace + '/' if r.namespace else ''}{r.name}"
        for r in results
        if r.action != "unchanged"
    ]


def _apply(
    c: ClusterResource, kube: KubeClient, objs: list[Obj], namespace: str | None = None, manager: str = MANAGER
) -> list[str]:
    return _planned(c, _lines(kube.apply(objs, dry_run=c.plan, namespace=namespace, field_manager=manager)))


def _planned(c: ClusterResource, lines: list[str]) -> list[str]:
    """In plan mode what an apply would do (StepResult.change already says "would: ")."""
    if not c.plan:
        return lines
    return [line.replace("configured", "configure", 1).replace("created", "create", 1) for line in lines]


def _cluster_or_plan(c: ClusterResource) -> KubeClient | None:
    """The cluster's client; in plan mode on a host without K3s yet, None (everything would be created)."""
    if c.plan and not c.installed:
        return None
    return c.kube()


def image_source(c: ClusterResource) -> tuple[Source, str]:
    """Where the platform image comes from, and why; a one-line error when auto finds no way."""
    ref = c.cfg.versions.platform_image

    def built() -> bool:
        return desired_image("host_build", None, ref, REPO_ROOT).met_by(live_image(c.executor, ref))

    return resolve_source(c.cfg, c.bundle_dir, lambda: build_egress(c.executor), built)


# --- host and K3s ------------------------------------------------------------------------------------------
def host_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    facts = host_facts(c.executor, str(cfg.network.host_ip) if cfg.network else None)
    source, source_why = image_source(c)  # before any change: a missing image source stops here
    report = prepare_host(c.executor, cfg, podman=source == "host_build")
    mode, reasons = c.install_mode
    metadata = {
        "target": c.executor.describe(),
        "os": f"{report.os.id} {report.os.version}" if report.os else "?",
        "install_mode": mode,
        "install_mode_why": "; ".join(reasons),
        "image_source": f"{source} ({source_why})",
        "steps": "\n".join(o.line() for o in report.steps),
        "notes": "; ".join(report.notes) or "none",
        **{k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in facts.items()},
    }
    return StepResult([o.line() for o in report.pending()], metadata)


def k3s_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    rebuild = cidr_change(cfg, installed_cidrs(c.executor))
    if rebuild:  # K3s cannot move its CIDRs in place: never "heal" this silently
        raise NeedsRebuildError(
            f"needs rebuild: {'; '.join(rebuild)} (K3s cannot change these in place: uninstall k3s on "
            f"{c.executor.describe()} and install again, or restore network.* in platform.yaml)"
        )
    mode, _ = c.install_mode
    outcomes = run_steps(c.executor, install_steps(cfg, mode, c.bundle_dir))
    changes = [o.line() for o in outcomes if o.status != "already"]
    status = {o.name: o.status for o in outcomes}
    if status.get("k3s config") == "changed" and status.get("k3s service") == "already":
        c.executor.run(["systemctl", "restart", "k3s"], sudo=True, check=True)  # K3s reads config.yaml at start
        changes.append("restarted k3s to load the new config.yaml")
    try:
        if fetch_kubeconfig(c.executor, cfg, c.kubeconfig):
            changes.append(f"kubeconfig written to {c.kubeconfig} (0600)")
    except K3sInstallError:
        if not c.plan:
            raise
        changes.append(f"fetch kubeconfig into {c.kubeconfig}")
    if not c.plan:  # a fresh K3s starts CoreDNS tens of seconds after its API: the DNS check needs it up
        c.kube().wait_available("kube-system", ["coredns"], cfg.k3s.rollout_timeout_seconds)
    return StepResult(changes, {"version": cfg.versions.k3s, "install_mode": mode, "kubeconfig": str(c.kubeconfig)})


# --- MetalLB and Argo CD -----------------------------------------------------------------------------------
def _upstream(
    c: ClusterResource, kube: KubeClient | None, component: str, version: str
) -> tuple[list[Obj], dict[str, Any]]:
    manifest, objs = c.manifest(component, version)
    objs = pull_if_not_present(objs)
    dropped: list[Obj] = []
    if kube is not None:
        objs, dropped = kube.split_unserved(objs)
    metadata = {
        f"{component}_version": version,
        f"{component}_sha256": manifest.sha256,
        f"{component}_source": manifest.source,
        "dropped_kinds": "; ".join(f"{o['kind']}/{o['metadata']['name']}: not served by this cluster" for o in dropped)
        or "none",
    }
    return objs, metadata


def metallb_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    kube = _cluster_or_plan(c)
    objs, metadata = _upstream(c, kube, "metallb", cfg.versions.metallb)
    key = c.state.credentials.token(METALLB_MEMBERLIST) if cfg.versions.metallb_mode == "configmap" else None
    config = render_metallb(cfg, memberlist_key=key)
    metadata |= {"mode": cfg.versions.metallb_mode, "pool": cfg.network.metallb_pool if cfg.network else "?"}
    if kube is None:
        return StepResult([f"apply {len(objs)} MetalLB objects and {len(config)} pool objects"], metadata)
    changes = _apply(c, kube, objs, METALLB_NAMESPACE)
    if not c.plan:
        kube.wait_available(METALLB_NAMESPACE, ["controller"], cfg.k3s.rollout_timeout_seconds)
        if cfg.versions.metallb_mode == "crd":
            wait_for_webhook(kube, config, cfg.k3s.webhook_timeout_seconds)
    return StepResult(changes + _apply(c, kube, config, METALLB_NAMESPACE), metadata)


def wait_for_webhook(kube: KubeClient, pool: list[Obj], timeout: float, interval: float = 2.0) -> None:
    """MetalLB >= v0.13 validates IPAddressPool and L2Advertisement with a webhook (failurePolicy Fail) that
    serves only once its certificate is in place, seconds after the controller is Available: applying the pool
    then fails with "failed calling webhook ... x509" (metallb#1540, #1597, #1697; the hand-run deployment's
    failure). A server-side dry run of the pool goes through the same webhook: wait until one succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            kube.apply(pool, dry_run=True, namespace=METALLB_NAMESPACE)
            return
        except KubeError as err:
            if "webhook" not in str(err):
                raise
            if time.monotonic() > deadline:
                raise KubeError(f"MetalLB's webhook still refuses the address pool after {timeout:g}s: {err}") from err
        time.sleep(interval)


def _deployments(objs: list[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in objs if o.get("kind") == "Deployment"]


def argocd_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    kube = _cluster_or_plan(c)
    objs, metadata = _upstream(c, kube, "argocd", cfg.versions.argocd)
    if kube is None:
        return StepResult([f"apply {len(objs)} Argo CD objects"], metadata)
    changes = _apply(c, kube, render_argocd_pre(cfg))
    changes += _apply(c, kube, objs, ARGOCD_NAMESPACE)  # server-side: Argo CD >= 3.5's CRDs exceed annotations
    if not c.plan:
        kube.wait_available(ARGOCD_NAMESPACE, _deployments(objs), cfg.k3s.rollout_timeout_seconds)
    changes += _apply(c, kube, [argocd_server_patch(cfg)], ARGOCD_NAMESPACE, ARGOCD_SERVER_MANAGER)
    if cfg.k3s.exposure.of("argocd") == "lan":
        server_ip = kube.load_balancer_ip(ARGOCD_NAMESPACE, "argocd-server")
        metadata["server_url"] = f"https://{server_ip}" if server_ip else "pending"
    else:  # upstream's Service serves https on 443
        forward = kubectl_command(ARGOCD_NAMESPACE, "argocd-server", 443, local_port=8443)
        metadata["server_url"] = f"https://127.0.0.1:8443 after `{forward}`"
    admin = kube.get(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-initial-admin-secret", "namespace": ARGOCD_NAMESPACE},
        }
    )
    if admin and "password" in admin.get("data", {}):
        password = base64.b64decode(admin["data"]["password"]).decode()
        if c.write_state_file("argocd-admin.json", {"username": "admin", "password": password}):
            changes.append("admin password saved to the state directory (0600)")
    metadata["admin_secret"] = str(c.state.root / "argocd-admin.json") if admin else "not created yet by Argo CD"
    return StepResult(changes, metadata)


# --- what Argo CD deploys ----------------------------------------------------------------------------------
def secrets_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    identities = SeaweedFSResource(config_path=c.config_path, state_dir=c.state_dir).identities()
    secrets = render_secrets(cfg, c.state.credentials, identities, c.config_text)
    names = ", ".join(s["metadata"]["name"] for s in secrets)
    kube = _cluster_or_plan(c)
    if kube is None:
        return StepResult([f"create Secrets {names}"], {"secrets": names})
    # values never reach metadata: only which Secret changed. The namespace too: this asset needs only
    # k3s_cluster, so it may run before argocd creates it.
    results = kube.apply([platform_namespace(cfg), *secrets], dry_run=c.plan, field_manager=MANAGER)
    changes = _planned(c, _lines(results))
    changed = {r.name for r in results if r.kind == "Secret" and r.action == "configured"}
    if not c.plan:  # also finishes a roll an earlier run left undone
        changes += restart_consumers(kube, cfg, secrets, changed)
    return StepResult(changes, {"secrets": names, "namespace": cfg.k3s.namespace})


def platform_image_step(c: ClusterResource) -> StepResult:
    """versions.platform_image in K3s's containerd: imported from the bundle or built on the host (see image.py);
    pods already running the old image under the same tag are rolled."""
    cfg = c.cfg
    source, why = image_source(c)
    metadata = {"image": cfg.versions.platform_image, "source": source, "source_why": why}
    if source == "registry":
        return StepResult([], metadata)
    want = desired_image(source, bundle_archive(c.bundle_dir), cfg.versions.platform_image, REPO_ROOT)
    metadata["digest"] = want.value
    outcomes = run_steps(c.executor, [image_step(cfg, want)])
    changes = [o.line() for o in outcomes if o.status != "already"]
    if changes and not c.plan:
        changes += restart_image_users(c.kube(), cfg, want.value)
    return StepResult(changes, metadata)


def application_status(kube: KubeClient, name: str) -> tuple[str, str, str]:
    app = kube.get(application_ref(name))
    status = (app or {}).get("status", {})
    health = status.get("health", {})
    return status.get("sync", {}).get("status", "Missing"), health.get("status", "Missing"), health.get("message", "")


def desired_applications() -> set[str]:
    return {ROOT_APP, *SERVICES}


def gitops_step(c: ClusterResource) -> StepResult:
    cfg = c.cfg
    kube = _cluster_or_plan(c)
    source = f"{redact_url(repo_url(cfg))}@{revision(cfg)}:{cfg.k3s.gitops.path}"
    if kube is None:
        return StepResult([f"create Application {ROOT_APP} ({len(SERVICES)} child Applications) from {source}"], {})
    changes = []
    if cfg.k3s.gitops.in_cluster:  # the git server first: Argo CD clones it as soon as the root exists
        changes += _apply(c, kube, render_gitops_source(cfg, render_infra_tree(cfg)), ARGOCD_NAMESPACE)
        if not c.plan:
            kube.wait_available(ARGOCD_NAMESPACE, [GITOPS_SOURCE], cfg.k3s.rollout_timeout_seconds)
        if any(line.startswith("configured ConfigMap") for line in changes) and not c.plan:
            apps = refresh_applications(kube, sorted(desired_applications()), cfg.k3s.rollout_timeout_seconds)
            changes.append(f"Argo CD refreshed {', '.join(apps)} from the new tree")
    changes += _apply(c, kube, [root_application(cfg)], ARGOCD_NAMESPACE)
    orphans, pruning = application_orphans(kube, desired_applications())
    stray = orphan_objects(c, kube)
    if cfg.k3s.prune_orphans and not c.plan:
        prune_applications(kube, orphans, pruning, cfg.k3s.rollout_timeout_seconds)
        for obj in stray:
            kube.delete(obj)
        if orphans:
            changes.append(f"pruned orphan Applications {', '.join(orphans)}")
        if stray:
            changes.append(f"pruned orphan objects {', '.join(map(describe, stray))}")
    rows = ["| application | sync | health |", "|---|---|---|"]
    rows += [
        f"| {name} | {' | '.join(application_status(kube, name)[:2])} |"
        for name in sorted({*orphans, *pruning} | desired_applications())
    ]
    return StepResult(
        changes,
        {
            "repo": source,
            "applications": "\n".join(rows),
            "orphans": ", ".join([*orphans, *map(describe, stray)]) or "none",
        },
    )


Step = Callable[[ClusterResource], StepResult]
STEPS: dict[str, Step] = {
    "host": host_step,
    "k3s_cluster": k3s_step,
    "cluster_images": cluster_images_step,
    "metallb": metallb_step,
    "argocd": argocd_step,
    "cluster_secrets": secrets_step,
    "platform_image": platform_image_step,
    "gitops": gitops_step,
}

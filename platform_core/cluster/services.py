"""The platform services in the k3s target: Argo CD deploys them from infra/; their assets wait until the
Application is Synced and Healthy, heal hand edits by asking Argo CD to sync, and record how to reach them (the
LoadBalancer address, or a port-forward for what k3s.exposure keeps off the LAN), which the shared resources then use
for the same function checks as the local target."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg

from platform_core.cluster.addresses import service_ports
from platform_core.cluster.kube import KubeClient
from platform_core.cluster.port_forward import kubectl_command
from platform_core.cluster.render import SERVICES
from platform_core.cluster.render_base import application_ref
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.step_result import StepResult
from platform_core.cluster.steps import application_status
from platform_core.config import PlatformConfig
from platform_core.resource import ENDPOINTS_FILE

Obj = dict[str, Any]
SYNC_MANAGER = "mlops-platform-sync"
DRIFT_PROBE = "mlops-platform-drift-probe"  # used only for dry runs
SETTLE_SECONDS = 600  # a first sync pulls images: minutes on a fresh node


def hand_edits(kube: KubeClient, cfg: PlatformConfig, app: str) -> list[str]:
    """Fields of the app's live objects that differ from what infra/ renders (someone edited them by hand)."""
    found = []
    for desired in SERVICES[app](cfg):
        # A manager of our own that owns nothing: the dry run overrides only the fields infra/ sets, so the
        # comparison ignores what Argo CD or the cluster add (tracking labels, defaults).
        for change in kube.diff(desired, namespace=cfg.k3s.namespace, field_manager=DRIFT_PROBE):
            found.append(f"{desired['kind']}/{desired['metadata']['name']} {change.path or '(missing)'}")
    return found


def request_sync(kube: KubeClient, app: str) -> None:
    """What `argocd app sync` does: set the Application's operation; Argo CD's controller takes it from there."""
    kube.apply(
        [
            {
                **application_ref(app),
                "operation": {"sync": {"prune": False}, "initiatedBy": {"username": "mlops-platform"}},
            }
        ],
        field_manager=SYNC_MANAGER,
    )


def _pull_failures(kube: KubeClient, cfg: PlatformConfig, app: str) -> list[str]:
    """The app's pods (named after its Deployment) that the kubelet has put in back-off after failed pulls: a
    first ErrImagePull may be a transient registry error, ImagePullBackOff is retries failing."""
    return [
        f"{f.image} on {f.node}: {f.reason}"
        for f in kube.image_pull_failures(cfg.k3s.namespace)
        if f.pod.startswith(f"{app}-") and f.reason == "ImagePullBackOff"
    ]


def _operation_running(kube: KubeClient, app: str) -> bool:
    live = kube.get(application_ref(app))
    if (live or {}).get("operation"):  # requested, not yet picked up by the controller
        return True
    return ((live or {}).get("status", {}).get("operationState") or {}).get("phase") == "Running"


def _settle(kube: KubeClient, cfg: PlatformConfig, app: str, timeout: float = SETTLE_SECONDS) -> tuple[str, str, str]:
    """Argo CD syncs asynchronously: wait until the Application is Synced and Healthy with no sync running,
    giving up early when a pod cannot pull its image: Argo CD calls that Progressing, not Degraded, until the
    Deployment's progress deadline (10 min), and waiting will not fix it."""
    deadline, interval = time.monotonic() + timeout, 0.25
    while True:
        sync, health, message = application_status(kube, app)
        if (sync, health) == ("Synced", "Healthy") and not _operation_running(kube, app):
            return sync, health, message
        if time.monotonic() > deadline or (health != "Healthy" and _pull_failures(kube, cfg, app)):
            return sync, health, message
        time.sleep(interval)
        interval = min(2 * interval, 2.0)


def service_step(c: ClusterResource, asset: str) -> StepResult:
    cfg = c.cfg
    app, port = service_ports(cfg)[asset]
    kube = c.kube()
    changes = []
    edits = hand_edits(kube, cfg, app)
    if edits:
        changes.append(f"{'request' if c.plan else 'requested'} an Argo CD sync to undo: {'; '.join(edits)}")
        if not c.plan:
            request_sync(kube, app)
    sync, health, message = application_status(kube, app) if c.plan else _settle(kube, cfg, app)
    if (sync, health) != ("Synced", "Healthy") and not c.plan:
        pulls = _pull_failures(kube, cfg, app)
        raise dg.Failure(
            f"Application {app} is {sync}/{health}: {message}" + (f"; cannot pull {'; '.join(pulls)}" if pulls else "")
        )
    where, address = _endpoint(c, kube, app, port)
    endpoints = c.read_state_file(ENDPOINTS_FILE)
    if where and endpoints.get(asset) != where:
        c.write_state_file(ENDPOINTS_FILE, {**endpoints, asset: where})
        changes.append(f"address recorded: {address}")
    return StepResult(changes, {"application": app, "sync": sync, "health": health, "address": address})


def _endpoint(c: ClusterResource, kube: KubeClient, app: str, port: int) -> tuple[dict[str, Any] | None, str]:
    """What the workstation records to reach the app (None while a LoadBalancer address is pending in a plan)."""
    ns = c.cfg.k3s.namespace
    if c.cfg.k3s.exposure.of(app) == "cluster":
        how = f"cluster only; the platform port-forwards, people run `{kubectl_command(ns, app, port)}`"
        return {"service": app, "namespace": ns, "port": port}, how
    ip = kube.load_balancer_ip(ns, app)
    if ip is None and not c.plan:
        raise dg.Failure(f"Service {ns}/{app} has no LoadBalancer address: is MetalLB's pool exhausted?")
    return ({"host": ip, "port": port} if ip else None), f"{ip}:{port} (LAN)"

"""Infra drift of the k3s target: desired (rendered from platform.yaml and infra/) versus live, each finding with
a class: self-healable (re-materialize the named asset) or needs-rebuild (K3s cannot move its CIDRs in place),
and orphans (live, labelled ours or an Argo CD Application, but no longer desired) as manual."""

from __future__ import annotations

import dagster as dg

from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.findings import Finding
from platform_core.alerting.sensors import DRIFT_INTERVAL_SECONDS, alert_on_findings
from platform_core.cluster.k3s_install import cidr_change, installed_cidrs
from platform_core.cluster.kube import KubeClient, KubeError
from platform_core.cluster.lan_exposure import lan_entries
from platform_core.cluster.orphans import application_orphans, describe, orphan_objects
from platform_core.cluster.render import SERVICES
from platform_core.cluster.render_metallb import render_metallb
from platform_core.cluster.resource import ClusterResource
from platform_core.cluster.secrets import METALLB_MEMBERLIST
from platform_core.cluster.services import hand_edits
from platform_core.cluster.steps import application_status, desired_applications
from platform_core.host.executor import HostError
from platform_core.settings import in_cluster

APP_ASSET = {"postgres": "postgres", "seaweedfs": "seaweedfs", "mlflow": "mlflow_server"}


def _rebuild(cluster: ClusterResource) -> list[Finding]:
    if in_cluster():  # K3s's installed CIDRs are read on the host, over SSH from the workstation only
        return []
    changes = cidr_change(cluster.cfg, installed_cidrs(cluster.executor))
    return (
        [
            Finding(
                "needs_rebuild:k3s_cluster",
                "k3s_cluster",
                "k3s cluster needs a rebuild",
                "platform.yaml changed what K3s cannot change in place: " + "; ".join(changes),
                remedy="needs-rebuild",
            )
        ]
        if changes
        else []
    )


def _applications(kube: KubeClient) -> list[Finding]:
    findings = []
    for name in sorted(desired_applications()):
        sync, health, message = application_status(kube, name)
        if (sync, health) != ("Synced", "Healthy"):
            subject = APP_ASSET.get(name, "gitops")
            text = f"Application {name} is {sync}/{health}" + (f": {message}" if message else "")
            findings.append(Finding(f"application:{name}", subject, f"Argo CD Application {name} unhealthy", text))
    for failure in kube.image_pull_failures():
        findings.append(
            Finding(
                f"image_pull:{failure.namespace}/{failure.pod}",
                "gitops",
                f"cannot pull {failure.image}",
                f"pod {failure.namespace}/{failure.pod} on node {failure.node}: {failure.reason}: {failure.message}",
                remedy="manual",
            )
        )
    return findings


def _hand_edits(cluster: ClusterResource, kube: KubeClient) -> list[Finding]:
    findings = []
    for app in SERVICES:
        edits = hand_edits(kube, cluster.cfg, app)
        if edits:
            asset = APP_ASSET.get(app, app)
            findings.append(
                Finding(
                    f"edited:{app}",
                    asset,
                    f"{app} edited out of band",
                    f"{'; '.join(edits)} differ from infra/: re-materialize {asset} (Argo CD sync)",
                )
            )
    for obj in render_metallb(cluster.cfg, cluster.state.credentials.token(METALLB_MEMBERLIST)):
        if kube.diff(obj, field_manager="mlops-platform-drift-probe"):
            findings.append(
                Finding(
                    f"edited:metallb:{obj['metadata']['name']}",
                    "metallb",
                    "MetalLB config drifted",
                    f"{obj['kind']}/{obj['metadata']['name']} differs from platform.yaml",
                )
            )
    return findings


def _orphans(cluster: ClusterResource, kube: KubeClient) -> list[Finding]:
    orphans, _ = application_orphans(kube, desired_applications())
    return [
        Finding(
            f"orphan_application:{name}",
            "gitops",
            f"orphan Application {name}",
            f"Application {name} is live but not in infra/ (pruned only with k3s.prune_orphans: true)",
            remedy="manual",
        )
        for name in orphans
    ] + [
        Finding(
            f"orphan_object:{describe(obj)}",
            "gitops",
            f"orphan {describe(obj)}",
            f"{describe(obj)} is labelled as the platform's but nothing desires it (pruned only with "
            "k3s.prune_orphans: true)",
            remedy="manual",
        )
        for obj in orphan_objects(cluster, kube)
    ]


def _undeclared_on_lan(cluster: ClusterResource, kube: KubeClient) -> list[Finding]:
    return [
        Finding(
            f"lan:{entry.what}",
            "gitops",
            f"{entry.what} reachable from the LAN",
            f"{entry.what} is reachable at {entry.where}, which k3s.exposure does not declare (a lan Service at its "
            "pool address only)",
            remedy="manual",
        )
        for entry in lan_entries(kube, cluster.cfg)
        if not entry.declared
    ]


def _unreachable(key: str, subject: str, what: str, err: Exception) -> Finding:
    return Finding(
        key, subject, f"{what} unreachable", f"{type(err).__name__}: {err}", inhibitable=False, remedy="manual"
    )


def cluster_findings(cluster: ClusterResource) -> list[Finding]:
    """Every finding, and the host or API server being unreachable as findings of their own (the most
    important news of all, and a cause that downstream findings name)."""
    try:
        findings = _rebuild(cluster)
    except HostError as err:
        return [_unreachable("unreachable:host", "host", f"host {cluster.cfg.host.address}", err)]
    if not cluster.installed:
        return findings  # nothing installed yet: nothing to drift from
    try:
        kube = cluster.kube()
        found = _applications(kube) + _hand_edits(cluster, kube) + _orphans(cluster, kube)
        return findings + found + _undeclared_on_lan(cluster, kube)
    except KubeError as err:
        return [*findings, _unreachable("unreachable:api_server", "k3s_cluster", "Kubernetes API server", err)]


@dg.sensor(
    name="infra_drift_sensor",
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="The cluster against platform.yaml and infra/: CIDRs, Argo CD health, image pulls, hand edits, "
    "orphans, anything on the LAN that k3s.exposure does not declare; one alert when a finding appears, one when "
    "it clears.",
)
def cluster_drift_sensor(
    context: dg.SensorEvaluationContext, cluster: ClusterResource, alerts: AlertsResource
) -> dg.SkipReason:
    return alert_on_findings(context, cluster_findings(cluster), alerts, "infra_drift_sensor")

"""Rolling the platform's workloads when what their pods read at start changed (Secrets, the platform image under
an unchanged tag), as `kubectl rollout restart` does: a pod-template annotation, one workload at a time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from platform_core.cluster.kube import KubeClient, KubeError
from platform_core.cluster.render import SERVICES
from platform_core.config import PlatformConfig

Obj = dict[str, Any]
SECRETS_DIGEST = "mlops-platform/secrets-digest"  # pod-template annotation: a change rolls the pods
IMAGE_DIGEST = "mlops-platform/image-digest"  # the same for a rebuilt or re-imported platform image


def restart_consumers(kube: KubeClient, cfg: PlatformConfig, secrets: list[Obj]) -> list[str]:
    """Pods read Secrets at start (env, subPath mounts): a changed Secret needs a rollout, as
    `kubectl rollout restart` does it: a pod-template annotation, here the digest of the Secrets."""
    digest = hashlib.sha256(json.dumps([s["data"] for s in secrets], sort_keys=True).encode()).hexdigest()[:16]
    return _roll(kube, cfg, (SECRETS_DIGEST, digest), "mlops-platform-rollout", "Secrets changed")


def restart_image_users(kube: KubeClient, cfg: PlatformConfig, digest: str) -> list[str]:
    """Pods running the platform image under an unchanged tag keep the old image until they restart."""
    stamp = (IMAGE_DIGEST, digest.removeprefix("sha256:")[:16])
    return _roll(kube, cfg, stamp, "mlops-platform-image-rollout", "platform image changed", _uses_platform_image(cfg))


def _uses_platform_image(cfg: PlatformConfig) -> Callable[[Obj], bool]:
    def uses(obj: Obj) -> bool:
        containers = obj["spec"]["template"]["spec"]["containers"]
        return any(c["image"] == cfg.versions.platform_image for c in containers)

    return uses


def _roll(
    kube: KubeClient,
    cfg: PlatformConfig,
    annotation: tuple[str, str],
    manager: str,
    why: str,
    selected: Callable[[Obj], bool] = lambda obj: True,
) -> list[str]:
    """Stamp ``annotation`` on the pod template of each live, selected workload (its own field manager, so the
    stamps of other reasons stay), which rolls its pods: one at a time, in SERVICES' order (storage, then MLflow,
    then its clients), each rolled out before the next, so a client restarted with a rotated password never meets
    the MLflow pod whose init container has yet to set it. A rollout that does not finish stops no other stamp
    (the next run would see no change left to roll for): the rest are rolled, then the step fails naming it."""
    restarted: list[str] = []
    stuck: list[str] = []
    for app in SERVICES:
        for obj in SERVICES[app](cfg):
            if (
                obj["kind"] != "Deployment"  # what the platform renders; wait_available reads Deployments
                or not selected(obj)
                or kube.get({**obj, "metadata": {**obj["metadata"], "namespace": cfg.k3s.namespace}}) is None
            ):
                continue
            stamp = {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {"name": obj["metadata"]["name"], "namespace": cfg.k3s.namespace},
                "spec": {"template": {"metadata": {"annotations": dict([annotation])}}},
            }
            kube.apply([stamp], field_manager=manager)
            restarted.append(f"restarted {obj['kind']} {cfg.k3s.namespace}/{obj['metadata']['name']} ({why})")
            if not stuck:  # after one stuck rollout the order is lost anyway: stamp the rest without waiting
                try:
                    kube.wait_available(cfg.k3s.namespace, [obj["metadata"]["name"]], cfg.k3s.rollout_timeout_seconds)
                except KubeError as err:
                    stuck.append(str(err))
    if stuck:
        raise KubeError(f"{'; '.join(restarted)}; but {stuck[0]}")
    return restarted

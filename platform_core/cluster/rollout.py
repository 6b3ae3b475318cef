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


def restart_consumers(kube: KubeClient, cfg: PlatformConfig, secrets: list[Obj], changed: set[str]) -> list[str]:
    """Pods read Secrets at start (env, subPath mounts; Dagster its config files): the workloads reading a
    changed Secret roll, as `kubectl rollout restart` does, with a pod-template annotation: the digest of the
    Secrets each one reads. One that reads none of ``changed`` is left alone (an edited platform.yaml, in the
    orchestrator's Secret, restarts no database), unless its stamp is behind what it reads (a roll cut short:
    the Secret changed on an earlier run), so calling this on every run finishes what one left undone."""
    data = {s["metadata"]["name"]: s["data"] for s in secrets}

    def digest(obj: Obj, stamped: str | None) -> str | None:
        read = sorted(secret_names(obj) & data.keys())
        if not read or (stamped is None and not set(read) & changed):  # never stamped and nothing new to read
            return None
        payload = json.dumps([data[name] for name in read], sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    return _roll(kube, cfg, SECRETS_DIGEST, digest, "mlops-platform-rollout", "Secrets changed")


def secret_names(workload: Obj) -> set[str]:
    """The Secrets a workload's pods read: volumes, envFrom and env references, init containers too."""
    pod = workload["spec"]["template"]["spec"]
    names = {v["secret"]["secretName"] for v in pod.get("volumes") or [] if "secret" in v}
    for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
        names |= {e["secretRef"]["name"] for e in container.get("envFrom") or [] if "secretRef" in e}
        refs = [(e.get("valueFrom") or {}).get("secretKeyRef") for e in container.get("env") or []]
        names |= {ref["name"] for ref in refs if ref}
    return names


def restart_image_users(kube: KubeClient, cfg: PlatformConfig, digest: str) -> list[str]:
    """Pods running the platform image under an unchanged tag keep the old image until they restart."""
    stamp = digest.removeprefix("sha256:")[:16]
    uses = _uses_platform_image(cfg)
    return _roll(
        kube,
        cfg,
        IMAGE_DIGEST,
        lambda obj, _stamped: stamp if uses(obj) else None,
        "mlops-platform-image-rollout",
        "platform image changed",
    )


def _uses_platform_image(cfg: PlatformConfig) -> Callable[[Obj], bool]:
    def uses(obj: Obj) -> bool:
        containers = obj["spec"]["template"]["spec"]["containers"]
        return any(c["image"] == cfg.versions.platform_image for c in containers)

    return uses


def _roll(
    kube: KubeClient,
    cfg: PlatformConfig,
    annotation: str,
    value_for: Callable[[Obj, str | None], str | None],
    manager: str,
    why: str,
) -> list[str]:
    """Stamp ``annotation`` with ``value_for(workload, its live stamp)`` on the pod template of each live
    workload it gives a new value for (its own field manager, so the stamps of other reasons stay), which rolls
    its pods: one at a time, in SERVICES' order (storage, then MLflow, then its clients), each rolled out before
    the next, so a client restarted with a rotated password never meets the MLflow pod whose init container has
    yet to set it. A rollout that does not finish stops no other stamp: the rest are rolled, then the step fails
    naming it."""
    restarted: list[str] = []
    stuck: list[str] = []
    for app in SERVICES:
        for obj in SERVICES[app](cfg):
            if obj["kind"] != "Deployment":  # wait_available reads Deployments
                continue
            live = kube.get({**obj, "metadata": {**obj["metadata"], "namespace": cfg.k3s.namespace}})
            stamped = ((live or {}).get("spec", {}).get("template", {}).get("metadata") or {}).get("annotations", {})
            value = value_for(obj, stamped.get(annotation)) if live else None
            if value is None or value == stamped.get(annotation):
                continue
            stamp = {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {"name": obj["metadata"]["name"], "namespace": cfg.k3s.namespace},
                "spec": {"template": {"metadata": {"annotations": {annotation: value}}}},
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

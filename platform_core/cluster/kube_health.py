"""Workload health read through the API: a Deployment's rollout, and pods that cannot pull their image.

A mixin of ``KubeClient``: it needs only ``get`` and ``list``. A rollout counts as done by kubectl's own rule
(kubectl/pkg/polymorphichelpers/rollout_status.go, DeploymentStatusViewer): the controller has observed the
latest generation, every replica is updated, no old replica is left, and every updated replica is available.
The Available condition alone is not enough: it stays True from the old ReplicaSet while a new one rolls out.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from platform_core.cluster.kube_error import KubeError

Obj = dict[str, Any]
_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
PROGRESS_EVERY_SECONDS = 30
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePullFailure:
    pod: str
    namespace: str
    node: str | None
    image: str
    reason: str
    message: str


def condition_true(obj: Obj, kind: str) -> bool:
    """Whether the object's status reports the condition (Ready, Available...) as True."""
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def wait_until_none_left(
    pending: Callable[[], builtins.list[str]], timeout: float, failure: Callable[[str], str], interval: float = 0.5
) -> None:
    """Poll ``pending`` until it lists nothing; after ``timeout`` s a KubeError from ``failure(what is left)``."""
    deadline = time.monotonic() + timeout
    while left := pending():
        if time.monotonic() > deadline:
            raise KubeError(failure(", ".join(left)))
        time.sleep(interval)


def rollout_pending(dep: Obj) -> str | None:
    """Why the Deployment's rollout is not complete (kubectl's words), or None when it is."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "waiting for the rollout to be observed"
    wanted = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    if not condition_true(dep, "Available"):
        return "not Available"
    return None


class WorkloadHealth:
    def get(self, obj: Obj) -> Obj | None:  # provided by KubeClient
        raise NotImplementedError

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        raise NotImplementedError

    def deployment_states(self, namespace: str, names: builtins.list[str]) -> dict[str, str | None]:
        """Deployment -> why its rollout is pending, or None when it is complete."""
        out: dict[str, str | None] = {}
        for name in names:
            ref = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": namespace, "name": name}}
            dep = self.get(ref)
            out[name] = "not created yet" if dep is None else rollout_pending(dep)
        return out

    def deployments_available(self, namespace: str, names: builtins.list[str]) -> dict[str, bool]:
        return {name: why is None for name, why in self.deployment_states(namespace, names).items()}

    def wait_available(self, namespace: str, names: builtins.list[str], timeout: float, interval: float = 0.25) -> None:
        """Wait until every named Deployment has rolled out (polling from ``interval`` up to every 2 s), logging
        what is pending every 30 s; an error naming the others, and why, after ``timeout`` s."""
        started = time.monotonic()
        reported = started
        while True:
            pending = {n: why for n, why in self.deployment_states(namespace, names).items() if why}
            if not pending:
                return
            waited = time.monotonic() - started
            shown = ", ".join(f"{n} ({why})" for n, why in sorted(pending.items()))
            if waited > timeout:
                raise KubeError(f"Deployments in {namespace} not available after {timeout:g}s: {shown}")
            if time.monotonic() - reported >= PROGRESS_EVERY_SECONDS:
                log.info("waiting %.0fs of %gs for Deployments in %s: %s", waited, timeout, namespace, shown)
                reported = time.monotonic()
            time.sleep(interval)
            interval = min(2 * interval, 2.0)

    def image_pull_failures(self, namespace: str | None = None) -> builtins.list[ImagePullFailure]:
        """Pods whose containers cannot pull their image (ErrImagePull / ImagePullBackOff)."""
        out = []
        for pod in self.list("v1", "Pod", namespace):
            status = pod.get("status") or {}
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in _PULL_REASONS:
                    out.append(
                        ImagePullFailure(
                            pod["metadata"]["name"],
                            pod["metadata"]["namespace"],
                            (pod.get("spec") or {}).get("nodeName"),
                            cs.get("image", ""),
                            waiting["reason"],
                            waiting.get("message", ""),
                        )
                    )
        return out

"""Pods of the fake's workloads: made from a template, run (or backing off) by the kubelet's image decision, and
a Deployment's status while its new generation rolls out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.k8s.fake_kubelet import container_state
from tests.k8s.fake_store import Obj, clone

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer


def compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (0, None)}  # the real server omits empty counters


def mid_rollout(status: Obj, count: int, first: bool) -> Obj:
    """A Deployment while its new ReplicaSet rolls out, as the deployment controller reports it: a first one is
    not Available yet; a later one stays Available on the old replicas while updatedReplicas lags behind
    (kubernetes pkg/controller/deployment/sync.go, calculateStatus)."""
    if first:
        counts = {"updatedReplicas": count, "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": count}
        cond = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}
    else:
        counts = {"replicas": 2 * count, "updatedReplicas": 0, "readyReplicas": count, "availableReplicas": count}
        cond = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
    return {**compact({**status, **counts}), "conditions": [cond, progressing]}


def pod_ready(pod: Obj | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pod_status(pod: Obj, fake: FakeApiServer) -> Obj:
    started = pod["metadata"]["creationTimestamp"]
    statuses = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        image = c.get("image", "")
        state = container_state(fake, c, started)
        statuses.append(
            {
                "name": c.get("name"),
                "image": image,
                "imageID": "",
                "ready": "running" in state,
                "started": "running" in state,
                "restartCount": 0,
                "state": state,
            }
        )
    ok = all(s["ready"] for s in statuses)
    conds = [
        {
            "type": t,
            "status": "True" if ok or t in ("PodScheduled", "Initialized") else "False",
            "lastTransitionTime": started,
        }
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running" if ok else "Pending",
        "hostIP": "127.0.0.1",
        "startTime": started,
        "conditions": conds,
        "containerStatuses": statuses,
    }


def owned_by(obj: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def pod_for(kind: str, w: Obj, name: str, template_hash: str) -> Obj:
    template = (w.get("spec") or {}).get("template") or {}
    labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": template_hash}
    owner = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": w["metadata"]["name"],
        "uid": w["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    meta = {
        "name": name,
        "labels": labels,
        # a pod carries its template's annotations (kubectl rollout restart's stamp, the platform's digests)
        "annotations": {
            **((template.get("metadata") or {}).get("annotations") or {}),
            "fake/template-hash": template_hash,
        },
        "ownerReferences": [owner],
    }
    return {"metadata": meta, "spec": clone(template.get("spec") or {})}

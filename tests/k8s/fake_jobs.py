"""The fake's Job controller, for Jobs of one pod at a time (completions and parallelism 1, as K8sRunLauncher's
run Jobs): the Job's status from its pod, as kube-controller-manager's job controller writes it (kubernetes
pkg/controller/job/job_controller.go; JobStatus and the Job conditions in the batch/v1 API reference): startTime
once seen, `active`/`ready` while the pod runs, a failed attempt (the pod failed, or went away while running)
counted in `failed` and retried with a new pod until `spec.backoffLimit` (default 6) is passed, then
Failed/BackoffLimitExceeded; Complete/CompletionsReached when the pod succeeds; a finished Job is never touched
again. Without it a Job's status stays empty, which dagster-k8s reads as "Job could not be found"
(dagster_k8s/launcher.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.k8s.fake_pods import compact, pod_for, pod_ready
from tests.k8s.fake_store import Obj

if TYPE_CHECKING:
    from tests.k8s.fake_controllers import Controllers


def reconcile_jobs(ctrl: Controllers) -> bool:
    jrt, prt = ctrl.rt("batch/v1", "Job"), ctrl.rt("v1", "Pod")
    assert jrt is not None and prt is not None
    changed = False
    for job in ctrl.store.items(jrt):
        status = job.get("status") or {}
        if any(c["type"] in ("Complete", "Failed") for c in status.get("conditions") or []):
            continue  # the job controller never touches a finished Job again
        meta = job["metadata"]
        ns, failed = meta["namespace"], status.get("failed", 0)
        pod_name = f"{meta['name']}-{meta['uid'][:4]}{failed}"  # a new pod per attempt, as generateName gives
        pod = ctrl.store.find(prt, ns, pod_name)
        if pod is None and status.get("active"):  # its pod went away while running: that attempt failed
            failed += 1
        elif pod is None:
            ctrl.store.create(prt, ns, _pod(job, pod_name), "job-controller")
            changed = True
        if pod is not None or not status.get("active"):
            pod = ctrl.store.find(prt, ns, pod_name)
            if pod is not None:
                changed = ctrl._pod(prt, pod) or changed
                pod = ctrl.store.find(prt, ns, pod_name)
        new = _status(job, pod, failed)
        if status != new:
            changed = ctrl._put(jrt, {**job, "status": new}) or changed
    return changed


def _pod(job: Obj, name: str) -> Obj:
    pod = pod_for("Job", job, name, job["metadata"]["uid"][:10])
    pod["metadata"]["ownerReferences"][0]["apiVersion"] = "batch/v1"
    labels = pod["metadata"]["labels"]
    labels.pop("pod-template-hash")
    job_name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    labels |= {"batch.kubernetes.io/job-name": job_name, "job-name": job_name}
    labels |= {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
    return pod


def _status(job: Obj, pod: Obj | None, failed: int) -> Obj:
    """JobStatus for a Job of one pod at a time: `backoffLimit` (default 6) failed attempts are allowed."""
    started = (job.get("status") or {}).get("startTime") or job["metadata"]["creationTimestamp"]
    phase = ((pod or {}).get("status") or {}).get("phase", "Pending")
    failed += phase == "Failed"
    base = {"startTime": started, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
    if phase == "Succeeded":
        done = {
            "type": "Complete",
            "status": "True",
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
        }
        return {
            **base,
            **compact({"failed": failed}),
            "succeeded": 1,
            "completionTime": started,
            "conditions": [_at(done, started)],
        }
    if failed > (job.get("spec") or {}).get("backoffLimit", 6):
        done = {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
        return {**base, "failed": failed, "conditions": [_at(done, started)]}
    running = pod is not None and phase != "Failed"
    return {**base, **compact({"failed": failed, "active": 1 if running else 0}), "ready": 1 if pod_ready(pod) else 0}


def _at(condition: Obj, when: str) -> Obj:
    return {**condition, "lastProbeTime": when, "lastTransitionTime": when}

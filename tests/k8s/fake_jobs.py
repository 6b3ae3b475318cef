"""The fake's Job controller: one pod per Job (K8sRunLauncher's run Jobs run one pod, no retries), and the Job's
status from it, as kube-controller-manager's job controller writes it (kubernetes pkg/controller/job/
job_controller.go; JobStatus in the batch/v1 API reference): startTime once it is seen, `active` and `ready` for
a pod not finished, `succeeded`/`failed` and a Complete/Failed condition for one that is. Without it a Job's
status stays empty, which dagster-k8s reads as "Job could not be found" (dagster_k8s/launcher.py)."""

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
        meta = job["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        pod_name = f"{name}-{uid[:5]}"
        if ctrl.store.find(prt, ns, pod_name) is None and not (job.get("status") or {}).get("completionTime"):
            ctrl.store.create(prt, ns, _pod(job, pod_name), "job-controller")
            changed = True
        pod = ctrl.store.find(prt, ns, pod_name)
        if pod is not None:
            changed = ctrl._pod(prt, pod) or changed
            pod = ctrl.store.find(prt, ns, pod_name)
        status = _status(job, pod)
        if job.get("status") != status:
            changed = ctrl._put(jrt, {**job, "status": status}) or changed
    return changed


def _pod(job: Obj, name: str) -> Obj:
    pod = pod_for("Job", job, name, job["metadata"]["uid"][:10])
    pod["metadata"]["ownerReferences"][0]["apiVersion"] = "batch/v1"
    labels = pod["metadata"]["labels"]
    labels.pop("pod-template-hash")
    labels |= {"batch.kubernetes.io/job-name": job["metadata"]["name"], "job-name": job["metadata"]["name"]}
    labels |= {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
    return pod


def _status(job: Obj, pod: Obj | None) -> Obj:
    started = (job.get("status") or {}).get("startTime") or job["metadata"]["creationTimestamp"]
    phase = ((pod or {}).get("status") or {}).get("phase", "Pending")
    if phase not in ("Succeeded", "Failed"):
        counts = compact({"active": 1 if pod else 0})
        return {"startTime": started, **counts, "ready": 1 if pod_ready(pod) else 0, "terminating": 0}
    done = "Complete" if phase == "Succeeded" else "Failed"
    condition = {"type": done, "status": "True", "lastTransitionTime": started, "lastProbeTime": started}
    counts = {"succeeded": 1} if phase == "Succeeded" else {"failed": 1}
    status = {"startTime": started, **counts, "ready": 0, "terminating": 0, "conditions": [condition]}
    return status | ({"completionTime": started} if phase == "Succeeded" else {})

"""Argo CD's application controller, simulated: sync an Application from its repository (fake_git), judge health."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tests.k8s.fake_git import RepoError, checkout
from tests.k8s.fake_store import ApiError, Obj, now

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer

_MANAGER = "argocd-controller"
TRACKING = "argocd.argoproj.io/tracking-id"
_ORDER = {"CustomResourceDefinition": 0, "Namespace": 1}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def available(kind: str, obj: Obj) -> bool:
    """A workload's availability as its controller reports it (and Argo CD and MetalLB read it)."""
    st, spec = obj.get("status") or {}, obj.get("spec") or {}
    if st.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False
    if kind == "Deployment":
        return any(c["type"] == "Available" and c["status"] == "True" for c in st.get("conditions", []))
    if kind == "StatefulSet":
        return st.get("readyReplicas", 0) >= spec.get("replicas", 1)
    return st.get("desiredNumberScheduled", 0) > 0 and st.get("numberAvailable", 0) >= st["desiredNumberScheduled"]


def _source(app: Obj) -> Obj:
    spec = app.get("spec") or {}
    return spec.get("source") or (spec.get("sources") or [{}])[0]


def _read(root: Path) -> tuple[list[Obj], str]:
    """The manifests under an app path (the fake's git checkout) and a revision hash of their content."""
    files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml")
    digest = hashlib.sha1()
    docs = []
    for f in files:
        text = f.read_text()
        digest.update(str(f.relative_to(root)).encode() + text.encode())
        docs += [d for d in yaml.load_all(text, Loader=_Loader) if isinstance(d, dict) and d.get("kind")]
    return sorted(docs, key=lambda d: _ORDER.get(d["kind"], 2)), digest.hexdigest()


def sync(fake: FakeApiServer, app: Obj) -> Obj:
    """Apply the app's path server-side, as Argo CD's automated sync does; returns the new status."""
    spec = app.get("spec") or {}
    src, dest = _source(app), spec.get("destination") or {}
    status: Obj = {"reconciledAt": now(), "sync": {"comparedTo": {"source": src, "destination": dest}}}
    try:
        root = checkout(fake, src) / (src.get("path") or "")
        if not src.get("path") or not root.is_dir():
            raise RepoError(f"{src.get('path')}: app path does not exist")
    except RepoError as err:
        status["sync"]["status"] = "OutOfSync"
        status["conditions"] = [{"type": "ComparisonError", "lastTransitionTime": now(), "message": str(err)}]
        status["health"] = {"status": "Missing"}
        return status
    docs, revision = _read(root)
    options = (spec.get("syncPolicy") or {}).get("syncOptions") or []
    errors, resources = [], []
    if "CreateNamespace=true" in options and dest.get("namespace"):
        _apply(fake, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dest["namespace"]}}, None, None)
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        try:
            resources.append(_apply(fake, doc, dest.get("namespace"), app["metadata"]["name"]))
        except ApiError as err:
            errors.append(f"{doc['kind']}/{meta.get('name')}: {err.message}")
    if (spec.get("syncPolicy") or {}).get("automated", {}).get("prune"):
        _prune(fake, app["metadata"]["name"], resources)
    phase = "Failed" if errors else "Succeeded"
    status["sync"].update(status="OutOfSync" if errors else "Synced", revision=revision)
    status["operationState"] = {
        "phase": phase,
        "message": "; ".join(errors) or "successfully synced (all tasks run)",
        "finishedAt": now(),
        "syncResult": {"revision": revision},
    }
    status["resources"] = resources
    if errors:
        status["conditions"] = [{"type": "SyncError", "message": "; ".join(errors), "lastTransitionTime": now()}]
    return status


def tracking_id(app: str, group: str, kind: str, namespace: str | None, name: str) -> str:
    """Argo CD v3 tracks what an Application owns by this annotation, not by label (its default
    ``application.resourceTrackingMethod: annotation``; argo-cd docs, user-guide/resource_tracking)."""
    return f"{app}:{group}/{kind}:{namespace or ''}/{name}"


def _apply(fake: FakeApiServer, doc: Obj, default_ns: str | None, app: str | None) -> Obj:
    """Server-side apply as Argo CD's controller; ``app`` None: not tracked (CreateNamespace's namespace)."""
    rt = fake.registry.by_kind(doc.get("apiVersion", ""), doc["kind"])
    if rt is None:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({doc.get('apiVersion')} {doc['kind']})"
        )
    meta = doc["metadata"]
    ns = (meta.get("namespace") or default_ns or "default") if rt.namespaced else None
    if app is not None:
        meta.setdefault("annotations", {})[TRACKING] = tracking_id(app, rt.group, rt.kind, ns, meta.get("name", ""))
    fake.store.apply(rt, ns, meta.get("name", ""), doc, _MANAGER, force=True)
    return {
        "group": rt.group,
        "version": rt.version,
        "kind": rt.kind,
        "namespace": ns or "",
        "name": meta["name"],
        "status": "Synced",
    }


def _prune(fake: FakeApiServer, app_name: str, keep: list[Obj]) -> None:
    wanted = {(r["kind"], r["namespace"], r["name"]) for r in keep}
    for rt in fake.registry.all():
        for obj in fake.store.list(rt, None):
            meta = obj["metadata"]
            if not (meta.get("annotations") or {}).get(TRACKING, "").startswith(f"{app_name}:"):
                continue
            if (rt.kind, meta.get("namespace", ""), meta["name"]) not in wanted:
                fake.store.delete(rt, meta.get("namespace"), meta["name"])


def deployment_health(dep: Obj) -> str | None:
    """Why Argo CD calls a Deployment Progressing, or None when Healthy (gitops-engine pkg/health/
    health_deployment.go, its messages). It turns Degraded only at ProgressDeadlineExceeded (spec.
    progressDeadlineSeconds, 600 s by default), which the fake never reaches: a pod that cannot pull its image
    leaves the Application Progressing, not Degraded."""
    st, spec = dep.get("status") or {}, dep.get("spec") or {}
    if st.get("observedGeneration", 0) < dep["metadata"].get("generation", 1):
        return "Waiting for rollout to finish: observed deployment generation less than desired generation"
    wanted, updated = spec.get("replicas", 1), st.get("updatedReplicas", 0)
    if updated < wanted:
        return f"Waiting for rollout to finish: {updated} out of {wanted} new replicas have been updated..."
    if st.get("replicas", 0) > updated:
        return f"Waiting for rollout to finish: {st['replicas'] - updated} old replicas are pending termination..."
    if st.get("availableReplicas", 0) < updated:
        available_now = st.get("availableReplicas", 0)
        return f"Waiting for rollout to finish: {available_now} of {updated} updated replicas are available..."
    return None


def health(fake: FakeApiServer, app: Obj) -> Obj:
    """Healthy, or Progressing with the first workload's reason (the worst of the app's resources wins)."""
    status = app.get("status") or {}
    if status.get("health", {}).get("status") == "Missing" and "resources" not in status:
        return status["health"]
    problems = []
    for res in status.get("resources") or []:
        if res["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        obj = fake.store.find(fake.rtype("apps/v1", res["kind"]), res["namespace"], res["name"])
        if obj is None:
            continue
        why = deployment_health(obj) if res["kind"] == "Deployment" else None
        if why is None and not available(res["kind"], obj):
            why = f"{res['kind']} {res['namespace']}/{res['name']} is not available"
        if why:
            problems.append(why)
    if problems:
        return {"status": "Progressing", "message": "; ".join(problems)}
    return {"status": "Healthy"}

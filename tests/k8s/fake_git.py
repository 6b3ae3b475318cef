"""Argo CD's repo-server for the fake: an Application's repoURL and targetRevision to the files it syncs.

Where the behaviour comes from:
- A repository is cloned from its URL at the revision the Application names; a failure stops the sync with a
  ComparisonError "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code =
  Unknown desc = ..." (the shape of argo-cd#17267's report), e.g. "failed to list refs: ... no such host".
- git:// to a cluster Service is served by whatever runs behind it; the platform's git server
  (platform_core/cluster/gitops_source.py) serves its ConfigMap's tree, committed on branch ``main``, and only
  once its pod is Ready (the Service has no endpoint before). Other URLs are outside the cluster: reachable only
  with egress, and only if the repository exists (GitHub answers 401 for a missing one: "authentication
  required").
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeApiServer

Obj = dict[str, Any]
_PREFIX = (
    "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = "
)
_IN_CLUSTER = re.compile(r"git://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(\d+))?/(.+)")


class RepoError(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(_PREFIX + why)


def checkout(fake: FakeApiServer, source: Obj) -> Path:
    """The checkout of ``source`` (repoURL, targetRevision); records the clone, raises RepoError like Argo CD."""
    url, revision = str(source.get("repoURL", "")), str(source.get("targetRevision") or "HEAD")
    found = _IN_CLUSTER.fullmatch(url)
    root = _in_cluster(fake, found, url, revision) if found else _outside(fake, url)
    fake.clones.append(url)
    return root


def _outside(fake: FakeApiServer, url: str) -> Path:
    host = re.sub(r"^[a-z+]+://(?:[^@/]*@)?([^/:]+).*$", r"\1", url)
    if not fake.egress:
        raise RepoError(
            f'failed to list refs: Get "{url}/info/refs?service=git-upload-pack": dial tcp: lookup {host}: no such host'
        )
    if url not in fake.git_repos:
        raise RepoError("failed to list refs: authentication required: Repository not found.")
    return fake.git_repos[url]


def _in_cluster(fake: FakeApiServer, found: re.Match[str], url: str, revision: str) -> Path:
    name, namespace, repository = found.group(1), found.group(2), found.group(4)
    host = f"{name}.{namespace}.svc.cluster.local"
    svc = fake.store.find(fake.rtype("v1", "Service"), namespace, name)
    if svc is None:
        raise RepoError(f"failed to list refs: dial tcp: lookup {host}: no such host")
    pod = _ready_pod(fake, namespace, (svc.get("spec") or {}).get("selector") or {})
    if pod is None:
        raise RepoError(
            f"failed to list refs: dial tcp {svc['spec'].get('clusterIP')}:9418: connect: connection refused"
        )
    tree = _served_tree(fake, pod, repository)
    if revision not in ("HEAD", "main", "refs/heads/main"):
        raise RepoError(f"unable to resolve '{revision}' to a commit SHA")
    return _materialize(fake, tree)


def _ready_pod(fake: FakeApiServer, namespace: str, selector: dict[str, str]) -> Obj | None:
    for pod in fake.store.list(fake.rtype("v1", "Pod"), namespace):
        labels = pod["metadata"].get("labels") or {}
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", [])
        )
        if selector and all(labels.get(k) == v for k, v in selector.items()) and ready:
            return pod
    return None


def _served_tree(fake: FakeApiServer, pod: Obj, repository: str) -> dict[str, str]:
    """What the pod's ``git daemon`` serves: the files its ``tree`` volume maps from the ConfigMap."""
    spec = pod.get("spec") or {}
    script = " ".join(" ".join(c.get("command") or []) for c in spec.get("containers") or [])
    if "git daemon" not in script or f"/srv/git/{repository}" not in script:
        raise RepoError(f"failed to list refs: repository '{repository}' not exported")
    volume = next((v for v in spec.get("volumes") or [] if v["name"] == "tree" and "configMap" in v), None)
    source = (volume or {}).get("configMap") or {}
    cm = fake.store.find(fake.rtype("v1", "ConfigMap"), pod["metadata"]["namespace"], source.get("name", ""))
    data = (cm or {}).get("data") or {}
    return {item["path"]: data[item["key"]] for item in source.get("items") or [] if item["key"] in data}


def _materialize(fake: FakeApiServer, tree: dict[str, str]) -> Path:
    """The tree as a checkout directory, one per distinct tree (the same tree is the same commit)."""
    digest = hashlib.sha256(repr(sorted(tree.items())).encode()).hexdigest()[:16]
    if fake.git_cache is None:
        fake.git_cache = Path(tempfile.mkdtemp(prefix="fake-git-"))
    root = fake.git_cache / digest
    if not root.exists():
        for path, text in tree.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        root.mkdir(parents=True, exist_ok=True)
    return root

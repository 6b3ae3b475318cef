"""The GitOps source inside the cluster: a git server that serves ``infra/`` as rendered from platform.yaml.

Air-gap means the cluster clones nothing from outside, and Argo CD only syncs from a repository (git, Helm or
OCI). So the platform puts the rendered tree into a ConfigMap and runs ``git daemon`` on the platform image
(already in containerd): at start the pod commits the tree with a fixed author and date (the same tree always
gives the same commit, so a restart is no new revision for Argo CD) and serves it read-only on git:// 9418.
Argo CD reads git:// repositories (go-git lists the refs, the git CLI fetches; argo-cd#10587 is a user whose
Applications sync from repositories served by ``git daemon``); a plain HTTP file server would not do
(argo-cd#17267: no dumb HTTP).
"""

from __future__ import annotations

import hashlib
import json

from platform_core.cluster.kube import KubeClient
from platform_core.cluster.kube_health import wait_until_none_left
from platform_core.cluster.render_base import (
    ARGOCD_NAMESPACE,
    Obj,
    application_ref,
    deployment,
    hardened,
    meta,
    obj,
    resources,
    service,
)
from platform_core.config import PlatformConfig

NAME = "gitops-source"
ASSET = "gitops"
PORT = 9418
REPOSITORY = "infra.git"
BRANCH = "main"
TREE_MOUNT = "/tree"
TREE_DIGEST = "mlops-platform/tree-digest"  # pod-template annotation: a new tree restarts the server
UID = 10001  # the platform image's non-root user (infra/image/Dockerfile)
_MAX_TREE_BYTES = 900 * 1024  # a ConfigMap holds at most 1 MiB
# The mounted ConfigMap's top level holds ..data and ..<timestamp> beside the files' symlinks: tar follows the
# symlinks and leaves those out. The commit is fixed in name and date, so it depends on the tree alone. The
# emptyDir outlives a container restart: the previous bare repository is replaced, not cloned over.
SERVE_SCRIPT = f"""set -eu
work=$(mktemp -d)
tar -C {TREE_MOUNT} -chf - --exclude='./..*' . | tar -C "$work" -xf -
cd "$work"
git init -q -b {BRANCH} .
git add -A
GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z \\
  git -c user.name=mlops-platform -c user.email=mlops-platform@localhost commit -q -m 'infra/ from platform.yaml'
rm -rf /srv/git/{REPOSITORY}
git clone -q --bare "$work" /srv/git/{REPOSITORY}
cd /
rm -rf "$work"
exec git daemon --reuseaddr --export-all --base-path=/srv/git --listen=0.0.0.0 --port={PORT} /srv/git
"""


class TreeTooLargeError(ValueError):
    """The rendered tree does not fit in one ConfigMap."""


def repo_url(cfg: PlatformConfig) -> str:
    """What Argo CD's Applications clone: the in-cluster server's Service, or ``k3s.gitops.repo_url``."""
    if cfg.k3s.gitops.in_cluster:
        return f"git://{NAME}.{ARGOCD_NAMESPACE}.svc.cluster.local:{PORT}/{REPOSITORY}"
    return str(cfg.k3s.gitops.repo_url)


def revision(cfg: PlatformConfig) -> str:
    return BRANCH if cfg.k3s.gitops.in_cluster else cfg.k3s.gitops.revision


def config_map_key(path: str) -> str:
    """A ConfigMap key for a repository path (keys allow no '/'; the volume's items put the path back)."""
    return path.replace("/", ".")


def tree_digest(tree: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def tree_config_map(tree: dict[str, str]) -> Obj:
    keys = {config_map_key(p) for p in tree}
    if len(keys) != len(tree):
        raise TreeTooLargeError("two infra/ paths map to the same ConfigMap key")
    size = sum(len(p) + len(text.encode()) for p, text in tree.items())
    if size > _MAX_TREE_BYTES:
        raise TreeTooLargeError(f"the rendered infra/ tree is {size} bytes; a ConfigMap holds at most 1 MiB")
    data = {config_map_key(p): text for p, text in sorted(tree.items())}
    return obj("v1", "ConfigMap", meta(NAME, ASSET, ARGOCD_NAMESPACE, NAME), data=data)


def _pod(cfg: PlatformConfig, tree: dict[str, str]) -> Obj:
    container = {
        "name": "git-daemon",
        "image": cfg.versions.platform_image,
        "imagePullPolicy": "IfNotPresent",  # imported into containerd by platform_image
        "command": ["sh", "-c", SERVE_SCRIPT],
        "env": [{"name": "HOME", "value": "/srv/git"}],
        "ports": [{"name": "git", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "git"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "git"}, "periodSeconds": 20, "initialDelaySeconds": 10},
        "volumeMounts": [
            {"name": "tree", "mountPath": TREE_MOUNT, "readOnly": True},
            {"name": "repositories", "mountPath": "/srv/git"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": resources("10m", "32Mi", "200m", "128Mi"),
        "securityContext": hardened(UID),
    }
    items = [{"key": config_map_key(p), "path": p} for p in sorted(tree)]
    return {
        "containers": [container],
        "terminationGracePeriodSeconds": 5,  # git daemon as PID 1 leaves SIGTERM to the kubelet's kill
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [
            {"name": "tree", "configMap": {"name": NAME, "items": items}},
            {"name": "repositories", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def render_gitops_source(cfg: PlatformConfig, tree: dict[str, str]) -> list[Obj]:
    """The tree's ConfigMap, the git server (restarted when the tree changes) and its ClusterIP Service."""
    server = deployment(NAME, ASSET, ARGOCD_NAMESPACE, _pod(cfg, tree))
    server["spec"]["template"]["metadata"]["annotations"] = {TREE_DIGEST: tree_digest(tree)[:16]}
    ports = service(NAME, ASSET, ARGOCD_NAMESPACE, {"git": PORT}, "cluster")
    return [tree_config_map(tree), server, ports]


REFRESH = "argocd.argoproj.io/refresh"
REFRESH_MANAGER = "mlops-platform-refresh"


def refresh_applications(kube: KubeClient, names: list[str], timeout: float, interval: float = 0.5) -> list[str]:
    """Have Argo CD read the new commit now rather than at its next poll (3 min): the ``refresh`` annotation, which
    the controller removes once it has compared the Application with git again (`argocd app get --refresh` sets
    it and waits for that). Returns the Applications refreshed."""
    live = [name for name in names if kube.get(application_ref(name)) is not None]
    for name in live:
        stamp = application_ref(name)
        stamp["metadata"]["annotations"] = {REFRESH: "normal"}
        kube.apply([stamp], field_manager=REFRESH_MANAGER)
    wait_until_none_left(
        lambda: [name for name in live if _refresh_pending(kube, name)],
        timeout,
        lambda left: f"Argo CD has not refreshed {left} after {timeout:g}s",
        interval,
    )
    return live


def _refresh_pending(kube: KubeClient, name: str) -> bool:
    annotations = ((kube.get(application_ref(name)) or {}).get("metadata") or {}).get("annotations") or {}
    return REFRESH in annotations

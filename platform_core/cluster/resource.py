"""`ClusterResource`: the k3s target's host executor, Kubernetes client, upstream manifests and secrets.

In plan mode (`state.planning()`) every verb only looks: host commands go through a `PlanExecutor` (probes run for real,
changes are recorded), Kubernetes writes are server-side dry runs, nothing is written to the state directory.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from platform_core.cluster.k3s_install import Mode, resolve_install_mode
from platform_core.cluster.kube import KubeClient
from platform_core.cluster.upstream import Manifest, obtain_manifest, parse_manifest
from platform_core.host.executor import Executor, HostError, PlanExecutor
from platform_core.host.reach import executor_for
from platform_core.resource import KUBECONFIG_FILE, PlatformResource
from platform_core.settings import in_cluster
from platform_core.state import is_planning

Obj = dict[str, Any]
# The assets whose work is on the host, over SSH: only the workstation materializes them (no SSH key enters the
# cluster), so the in-cluster schedule leaves them out and no freshness window applies to them there.
HOST_ASSETS = ("host", "k3s_cluster", "cluster_images", "platform_image")


class ClusterResource(PlatformResource):
    @property
    def plan(self) -> bool:
        """Plan mode (`state.planning()`, the platform's one plan switch): report what would change, change
        nothing."""
        return is_planning()

    @property
    def executor(self) -> Executor:
        """The host, reached locally or over SSH; in plan mode through a `PlanExecutor` that records changes."""
        return self._planned_executor if self.plan else self._executor

    @cached_property
    def _executor(self) -> Executor:
        if in_cluster():  # no SSH key for the host ever enters the cluster
            raise HostError(
                f"{self.cfg.host.address}: the host is reached from the workstation only; "
                "run `platformctl up` there for host-level changes"
            )
        return executor_for(self.cfg, self.state.root)

    @cached_property
    def _planned_executor(self) -> PlanExecutor:
        return PlanExecutor(self._executor)

    @property
    def kubeconfig(self) -> Path:
        return self.state.root / KUBECONFIG_FILE

    @property
    def installed(self) -> bool:
        """Whether there is a cluster to talk to: in a pod of it, or k3s_cluster fetched its kubeconfig."""
        return in_cluster() or self.kubeconfig.exists()

    def kube(self) -> KubeClient:
        if not self.installed:
            raise FileNotFoundError(f"{self.kubeconfig}: no kubeconfig yet; materialize k3s_cluster first")
        return KubeClient.for_platform(self.kubeconfig)

    @cached_property
    def install_mode(self) -> tuple[Mode, list[str]]:
        """online or airgap, and why: the egress preflight runs on the host (the seed's VM had no egress)."""
        return resolve_install_mode(self.cfg, self.executor)

    @property
    def bundle_dir(self) -> Path | None:
        bundle = self.cfg.k3s.offline_bundle_dir
        if bundle is None:
            return None
        path = Path(bundle)
        return path if path.is_absolute() else Path(self.config_path).parent / path

    def manifest(self, component: str, version: str) -> tuple[Manifest, list[Obj]]:
        """The pinned upstream manifest, sha256-verified, and its objects."""
        mode, _ = self.install_mode
        found = obtain_manifest(
            component,
            version,
            bundle_dir=self.bundle_dir,
            mode=mode,
            # plan mode writes nothing to the state directory, not even the verified-manifest cache
            state_dir=None if self.plan else self.state.root,
        )
        return found, parse_manifest(found.text)

    @property
    def config_text(self) -> str:
        """platform.yaml as written: the in-cluster orchestrator reads the same file (from a Secret)."""
        return Path(self.config_path).read_text(encoding="utf-8")

    def write_state_file(self, name: str, data: dict[str, Any]) -> bool:
        """A 0600 JSON file under the state directory (no-op when equal, and in plan mode)."""
        path = self.state.root / name
        text = json.dumps(data, sort_keys=True, indent=2)
        if self.plan or (path.exists() and path.read_text() == text):
            return False
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text)
        return True

    def read_state_file(self, name: str) -> dict[str, Any]:
        path = self.state.root / name
        return json.loads(path.read_text()) if path.exists() else {}

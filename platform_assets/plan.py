"""`platformctl plan`: what materializing the platform would change, changing nothing (Terraform's `plan`).

k3s target: every reconcile step runs with `ClusterResource(plan=True)`: host probes run for real, host
changes are listed instead of made, Kubernetes writes are server-side dry runs. Local target: desired versus live
(the infra drift findings) as the actions `up` would take.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from platform_assets.cluster.resource import ClusterResource
from platform_assets.cluster.services import service_step
from platform_assets.cluster.steps import STEPS
from platform_assets.config import PlatformConfig
from platform_assets.state import StateDir

K3S_ORDER = [*STEPS, "postgres", "seaweedfs", "mlflow_server"]


def k3s_plan(cfg_path: Path, state: StateDir, selection: list[str] | None) -> Iterator[tuple[str, str]]:
    cluster = ClusterResource(config_path=str(cfg_path), state_dir=str(state.root), plan=True)
    for asset in K3S_ORDER:
        if selection and asset not in selection:
            continue
        try:
            result = STEPS[asset](cluster) if asset in STEPS else service_step(cluster, asset)
            yield asset, result.change(plan=True)
        except Exception as err:  # a plan reports what blocks a step instead of stopping at the first one
            yield asset, f"blocked: {err}"
    executor = cluster.executor
    for line in getattr(executor, "planned", []):
        yield "host commands", line


def local_plan(cfg: PlatformConfig, state: StateDir, cfg_path: Path) -> Iterator[tuple[str, str]]:
    from ml_assets.resources import build_ml_resources
    from platform_assets.drift.local import local_findings

    resources = build_ml_resources(cfg, state, cfg_path)
    postgres, seaweedfs, mlflow = (resources[k] for k in ("postgres_resource", "seaweedfs_resource", "mlflow_resource"))
    for resource in (postgres, seaweedfs, mlflow, resources["data_api_resource"], resources["inference_resource"]):
        spec = resource.service_spec()
        if not resource.supervisor.status(spec.name).running:
            yield spec.name, "would start"
    for finding in local_findings(postgres, seaweedfs, mlflow):
        if not finding.key.startswith("service_down"):
            yield finding.subject, f"would fix: {finding.title}: {finding.message} ({finding.remedy})"


def plan(cfg: PlatformConfig, state: StateDir, cfg_path: Path, selection: list[str] | None) -> list[str]:
    steps = k3s_plan(cfg_path, state, selection) if cfg.target == "k3s" else local_plan(cfg, state, cfg_path)
    lines = [f"{asset}: {change}" for asset, change in steps]
    return lines or ["no change"]

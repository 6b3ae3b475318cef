"""The one place where the target (local or k3s) picks the resources every asset, check and sensor uses."""

from __future__ import annotations

from pathlib import Path

from platform_core.alerting.alerts import AlertsResource
from platform_core.cluster.resource import ClusterResource
from platform_core.config import PlatformConfig
from platform_core.host.resource import HostResource
from platform_core.orchestrator.services import DagsterResource
from platform_core.services.mlflow import MlflowResource
from platform_core.services.postgres import PostgresResource
from platform_core.services.seaweedfs import SeaweedFSResource
from platform_core.state import StateDir


def build_resources(cfg: PlatformConfig, state: StateDir, config_path: Path) -> dict[str, object]:
    alerts = AlertsResource(
        log_file=str(state.root / cfg.alerts.log_file),
        # webhook_url: left to the resource to read from platform.yaml, so the UI never shows it
        timeout_seconds=cfg.alerts.timeout_seconds,
        retries=cfg.alerts.retries,
        backoff_seconds=cfg.alerts.backoff_seconds,
        config_path=str(config_path),
        lineage_dir=str(state.lineage),
    )
    where = {"config_path": str(config_path), "state_dir": str(state.root)}
    # The same resources serve both targets: in k3s they reach the services where the service assets recorded
    # them (PlatformResource.address: a LoadBalancer address, or a port-forward for what k3s.exposure keeps in the
    # cluster), and `cluster` reaches the host and the API server.
    cluster = ClusterResource(config_path=str(config_path), state_dir=str(state.root))
    extra = {"cluster": cluster} if cfg.target == "k3s" else {}
    return {
        **extra,
        "host_resource": HostResource(**where),
        "postgres_resource": PostgresResource(**where),
        "seaweedfs_resource": SeaweedFSResource(**where),
        "mlflow_resource": MlflowResource(**where),
        "dagster_resource": DagsterResource(**where),
        "alerts": alerts,
    }

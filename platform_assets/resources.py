"""The one place where the target (local or k3s) picks the resources every asset, check and sensor uses."""

from __future__ import annotations

from pathlib import Path

from platform_assets.alerts import AlertsResource
from platform_assets.cluster.resource import ClusterResource
from platform_assets.config import PlatformConfig
from platform_assets.host.resources import HostResource
from platform_assets.state import StateDir
from platform_assets.storage.postgres import PostgresResource
from platform_assets.storage.seaweedfs import SeaweedFSResource
from platform_assets.tracking.mlflow_server import MlflowResource


def build_resources(cfg: PlatformConfig, state: StateDir, config_path: Path) -> dict[str, object]:
    alerts = AlertsResource(
        log_file=str(state.root / cfg.alerts.log_file),
        # webhook_url: left to the resource to read from platform.yaml, so the UI never shows it
        timeout_seconds=cfg.alerts.timeout_seconds,
        retries=cfg.alerts.retries,
        backoff_seconds=cfg.alerts.backoff_seconds,
        config_path=str(config_path),
    )
    where = {"config_path": str(config_path), "state_dir": str(state.root)}
    # The same resources serve both targets: in k3s they reach the services at the LoadBalancer addresses the
    # service assets record (PlatformResource.address), and `cluster` reaches the host and the API server.
    extra = {"cluster": ClusterResource(**where)} if cfg.target == "k3s" else {}
    return {
        **extra,
        "host_resource": HostResource(**where),
        "postgres_resource": PostgresResource(**where),
        "seaweedfs_resource": SeaweedFSResource(**where),
        "mlflow_resource": MlflowResource(**where),
        "alerts": alerts,
    }

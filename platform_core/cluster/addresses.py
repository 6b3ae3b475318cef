"""Which Service, on which port, stands for each service asset in the k3s target, and its cluster DNS name: what
the service assets record for the workstation, and where a pod of the cluster finds the service."""

from __future__ import annotations

from platform_core.cluster.render_storage import POSTGRES_PORT, service_dns
from platform_core.config import PlatformConfig


def service_ports(cfg: PlatformConfig) -> dict[str, tuple[str, int]]:
    """asset -> (Argo CD Application / Service name, port clients use)."""
    return {
        "postgres": ("postgres", POSTGRES_PORT),
        "seaweedfs": ("seaweedfs", cfg.services.seaweedfs.s3_port),
        "mlflow_server": ("mlflow", cfg.services.mlflow.port),
        "data_api": ("data-api", cfg.services.data_api.port),
        "inference_service": ("inference", cfg.services.inference.port),
        "dagster": ("dagster", cfg.services.dagster.webserver_port),
    }


def service_dns_address(cfg: PlatformConfig, asset: str) -> tuple[str, int]:
    """Where a pod in the cluster reaches the service of ``asset``: its Service's DNS name."""
    name, port = service_ports(cfg)[asset]
    return service_dns(name, cfg), port

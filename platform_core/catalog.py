"""Names both code locations share: the supervised services with the asset that runs each, the asset keys one
location names as the other's upstream, and the owners shown in the UI."""

from dataclasses import dataclass

import dagster as dg

PLATFORM_OWNERS = ["team:platform"]
ML_OWNERS = ["team:ml"]


@dataclass(frozen=True)
class Service:
    """A platform service: its supervisor (and platform.yaml `services.<name>`) name, its asset, the resource key
    that reaches it, and the port field it answers on."""

    name: str
    asset: str
    resource: str
    port_field: str = "port"


SERVICES = (
    Service("postgres", "postgres", "postgres_resource"),
    Service("seaweedfs", "seaweedfs", "seaweedfs_resource", "s3_port"),  # answers as its S3 gateway
    Service("mlflow", "mlflow_server", "mlflow_resource"),
    Service("data_api", "data_api", "data_api_resource"),
    Service("inference", "inference_service", "inference_resource"),
)
# The orchestrator's own processes (platform_core/orchestrator/): supervisor name -> asset. Last, so that
# `platformctl down`, which stops dependents first, stops the watchdog before anything it would restart.
ORCHESTRATOR_SERVICES = {
    "dagster_code_platform": "dagster_code_servers",
    "dagster_code_ml": "dagster_code_servers",
    "dagster_webserver": "dagster_webserver",
    "dagster_daemon": "dagster_daemon",
    "watchdog": "orchestrator_watchdog",
}
SERVICE_ASSETS = {**{service.name: service.asset for service in SERVICES}, **ORCHESTRATOR_SERVICES}


def bucket_key(name: str) -> dg.AssetKey:
    """The asset of one S3 bucket (the platform location makes it; the ML location reads and writes it)."""
    return dg.AssetKey(["buckets", name])

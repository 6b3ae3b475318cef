"""Names both code locations share: the supervised services with the asset that runs each, the asset keys one
location names as the other's upstream, and the owners shown in the UI."""

import dagster as dg

PLATFORM_OWNERS = ["team:platform"]
ML_OWNERS = ["team:ml"]

# supervisor name -> the asset that runs it (both code locations)
SERVICE_ASSETS = {
    "postgres": "postgres",
    "seaweedfs": "seaweedfs",
    "mlflow": "mlflow_server",
    "data_api": "data_api",
    "inference": "inference_service",
}


def bucket_key(name: str) -> dg.AssetKey:
    """The asset of one S3 bucket (the platform location makes it; the ML location reads and writes it)."""
    return dg.AssetKey(["buckets", name])

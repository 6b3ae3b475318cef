"""Every supervised service, by its supervisor name, with the asset that runs it (both code locations)."""

SERVICE_ASSETS = {
    "postgres": "postgres",
    "seaweedfs": "seaweedfs",
    "mlflow": "mlflow_server",
    "data_api": "data_api",
    "inference": "inference_service",
}

"""Where a registered model version's files sit in the artifact store, for the tests that tamper with them."""

from __future__ import annotations

from typing import Any

from platform_core.services.seaweedfs import ADMIN


def pickle_key(mlflow_resource: Any, seaweedfs_resource: Any, name: str, version: str) -> tuple[str, str]:
    """(bucket, key) of the version's cloudpickled model, found through the registry as MLflow's reader."""
    from mlflow import MlflowClient

    with mlflow_resource.reader.acting():
        source = MlflowClient(tracking_uri=mlflow_resource.url).get_model_version(name, version).source
    model_id = source.removeprefix("models:/")  # models:/m-<logged model id>
    s3 = seaweedfs_resource.client(ADMIN)
    bucket = mlflow_resource.cfg.mlflow.artifact_bucket
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
        if model_id in obj["Key"] and obj["Key"].endswith("python_model.pkl")
    ]
    assert len(keys) == 1, keys
    return bucket, keys[0]

"""Shared by the serving tests: a champion in the stack's registry and the inference service on the stack."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from mlflow import MlflowClient
from mlflow.models import infer_signature

from ml_assets.data.dataset import ames_listings
from ml_assets.model.estimator import HousePriceModel
from ml_assets.model.tracking import ModelTracker
from ml_assets.schema import LISTING_FIELDS
from ml_assets.serving.prediction_log import SCHEMA
from ml_assets.serving.resource import InferenceResource
from ml_assets.serving.settings import ServingSettings
from platform_core.services.seaweedfs import ADMIN

EXPERIMENT = "serving-tests"
TRAIN_ROWS = 2000
ALIAS = "champion"


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]


def listings(start: int = TRAIN_ROWS, count: int = 100) -> pd.DataFrame:
    """Raw listings the model never trained on, without the price (what a client sends)."""
    return ames_listings().iloc[start : start + count].drop(columns="price").reset_index(drop=True)


def as_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


def as_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Listings field by field, as the service hands them to the model and its prediction log."""
    return {name: [row.get(name) for row in rows] for name in LISTING_FIELDS}


def register_model(tracking_uri: str, name: str, train_rows: int = TRAIN_ROWS) -> Registered:
    """Train on the first rows, log with metrics on the rest, register a new version of `name`."""
    frame = ames_listings()
    train, holdout = frame.iloc[:train_rows], frame.iloc[TRAIN_ROWS:]
    model = HousePriceModel.train(train.drop(columns="price"), train["price"].to_numpy())
    predicted = model.predict_records(as_json(holdout.drop(columns="price")))
    truth = holdout["price"].to_numpy()
    metrics = {
        "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        "r2": float(1 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)),
    }
    sample = listings(0, 20)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(sample),
            input_example=sample.head(3),
            # explicit requirements: inferring them imports the model in a subprocess, seconds for nothing
            pip_requirements=["mlflow==3.17.2", "scikit-learn", "numpy", "pandas", "threadpoolctl"],
        )
    version = mlflow.register_model(info.model_uri, name)
    return Registered(name, str(version.version), run.info.run_id, metrics)


def set_champion(tracking_uri: str, name: str, version: str) -> None:
    """As the promotion gate does: approve the version's files (their digest in its tags), then move the alias."""
    approve(tracking_uri, name, version)
    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, ALIAS, version)


def approve(tracking_uri: str, name: str, version: str) -> str:
    return ModelTracker(tracking_uri, EXPERIMENT, name).approve(version)


_FIRST_VERSIONS: dict[str, Registered] = {}


def ensure_champion(stack: Any) -> Registered:
    """Version 1 of the config's model as champion: registered once per session, re-pointed on later calls."""
    url = stack.resource("mlflow_resource").url
    key = str(stack.config_path)
    if key not in _FIRST_VERSIONS:
        name = stack.resource("mlflow_resource").cfg.ml.model_name
        _FIRST_VERSIONS[key] = register_model(url, name)
    first = _FIRST_VERSIONS[key]
    set_champion(url, first.name, first.version)
    return first


def derived_config(stack: Any, directory: Path, **inference: Any) -> Path:
    """The stack's config with `services.inference` settings changed (same ports, same state)."""
    data = yaml.safe_load(Path(stack.config_path).read_text())
    data["services"]["inference"] = {**data["services"].get("inference", {}), **inference}
    path = directory / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def state_dir(stack: Any) -> str:
    return stack.resource("postgres_resource").state_dir


@contextmanager
def running_service(stack: Any, directory: Path, **inference: Any) -> Iterator[InferenceResource]:
    """The service under the stack's supervisor, stopped (gracefully: the log flushes) on exit."""
    config = derived_config(stack, directory, **inference) if inference else stack.config_path
    resource = InferenceResource(config_path=str(config), state_dir=state_dir(stack))
    resource.ensure_server()
    try:
        yield resource
    finally:
        stop(resource)


def stop(resource: InferenceResource) -> None:
    spec = resource.service_spec()
    resource.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def spare_service(stack: Any, directory: Path, model_name: str) -> Iterator[str]:
    """A second instance outside the supervisor (whose pid files are per name), for another model name."""
    data = yaml.safe_load(Path(stack.config_path).read_text())
    port = free_port()
    data["services"]["inference"] = {"port": port}
    data["ml"] = {**data.get("ml", {}), "model_name": model_name}
    config = directory / "spare.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    log = (directory / "spare.log").open("wb")
    argv = [sys.executable, "-m", "ml_assets.serving", "--config", str(config), "--state-dir", state_dir(stack)]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        yield url
    finally:
        proc.terminate()  # only the process this helper started, by its handle
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/metrics", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout}s")


def registry_predict(model: Registered, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(f"models:/{model.name}/{model.version}").predict(frame))


def logged_rows(stack: Any, street: str, expected: int, timeout: float = 15.0) -> list[dict]:
    """Rows of the prediction log with this street, once `expected` of them are in S3."""
    s3 = stack.resource("seaweedfs_resource").client(ADMIN)
    bucket = stack.resource("mlflow_resource").cfg.ml.predictions_bucket
    prefix = f"predictions/date={datetime.now(UTC).date().isoformat()}/"
    tables: dict[str, list[dict]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            if item["Key"] not in tables and item["Key"].endswith(".parquet"):
                table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()))
                assert table.schema.names == SCHEMA.names
                tables[item["Key"]] = table.to_pylist()
        rows = [row for rows in tables.values() for row in rows if row["street"] == street]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def log_settings(stack: Any, bucket: str, **changes: Any) -> ServingSettings:
    """Settings for a PredictionLog of its own, writing as the predictions bucket's owner."""
    s3 = stack.resource("seaweedfs_resource")
    access, secret = s3.state.credentials.s3_keys(s3.cfg.bucket(s3.cfg.ml.predictions_bucket).owner)
    return ServingSettings(
        tracking_uri="http://127.0.0.1:9",  # unused by the log
        model_name="unused",
        s3_endpoint=s3.endpoint,
        s3_access_key=access,
        s3_secret_key=secret,
        predictions_bucket=bucket,
        **changes,
    )

"""The training pod's entrypoint (target k3s): ``python -m ml_assets.pipes_train``, started by K8sPipesTrainingRunner.

Where things are (features URI, S3 endpoint, MLflow URI, experiment, model name) arrives as Pipes extras; the S3
keys only from the environment, filled from the Secret ``training-env``, because extras are logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import pandas as pd
from botocore.config import Config
from dagster_pipes import PipesContext, open_dagster_pipes

from ml_assets.data.store import TableStore
from ml_assets.tracking import ModelTracker
from ml_assets.train_step import URL_KEYS, train_and_log

EXTRAS = ("features_uri", "s3_endpoint", "tracking_uri", "experiment", "model_name")
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SECRET_NAME = "training-env"


@dataclass(frozen=True)
class Settings:
    bucket: str
    key: str
    s3_endpoint: str
    tracking_uri: str
    experiment: str
    model_name: str
    access_key: str
    secret_key: str


def settings(extras: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Checked before anything is read or logged; each error names the missing or bad input."""
    for name in EXTRAS:
        if not isinstance(extras.get(name), str) or not extras[name]:
            raise ValueError(f"pipes extra {name!r} is missing or empty")
    for name in SECRET_ENV:
        if not environ.get(name):
            raise ValueError(f"environment variable {name} is not set (it comes from the Secret {SECRET_NAME})")
    uri = urlsplit(str(extras["features_uri"]))
    if uri.scheme != "s3" or not uri.netloc or not uri.path.strip("/"):
        raise ValueError(f"pipes extra 'features_uri': {extras['features_uri']!r} is not s3://<bucket>/<key>")
    return Settings(
        bucket=uri.netloc,
        key=uri.path.lstrip("/"),
        s3_endpoint=str(extras["s3_endpoint"]),
        tracking_uri=str(extras["tracking_uri"]),
        experiment=str(extras["experiment"]),
        model_name=str(extras["model_name"]),
        access_key=environ["AWS_ACCESS_KEY_ID"],
        secret_key=environ["AWS_SECRET_ACCESS_KEY"],
    )


def read_features(s: Settings) -> pd.DataFrame:
    s3 = boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint,
        aws_access_key_id=s.access_key,
        aws_secret_access_key=s.secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60, retries={"max_attempts": 3}
        ),
    )
    return TableStore(s3, s.bucket).get(s.key)


def pipes_metadata(metadata: Mapping[str, object]) -> dict[str, object]:
    """Links stay links in the Dagster UI; every other value is inferred (text, int, float)."""
    return {k: {"raw_value": v, "type": "url"} if k in URL_KEYS else v for k, v in metadata.items()}


def train(pipes: PipesContext) -> None:
    s = settings(pipes.extras, os.environ)
    table = read_features(s)
    pipes.log.info(f"training on {len(table)} rows of s3://{s.bucket}/{s.key}, tracking at {s.tracking_uri}")
    metadata = train_and_log(table, ModelTracker(s.tracking_uri, s.experiment, s.model_name))
    pipes.report_asset_materialization(metadata=pipes_metadata(metadata), data_version=str(metadata["run_id"]))


def main() -> None:
    with open_dagster_pipes() as pipes:  # an exception here is reported to Dagster, then fails the pod
        train(pipes)


if __name__ == "__main__":
    main()

"""The Kubernetes Secrets the platform's pods read, made from the credentials generated in the state directory.

They never go to git (the infra/ manifests only name them) and their values never reach metadata or logs.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from platform_core.cluster.render_base import meta, obj
from platform_core.cluster.render_dagster import PG_PASSWORD_KEY, PG_PASSWORD_SECRET, PLATFORM_SECRET
from platform_core.cluster.render_ml import DATA_API_SECRET, INFERENCE_SECRET, MLFLOW_SECRET, MLFLOW_USERS_SECRET
from platform_core.cluster.render_storage import (
    POSTGRES,
    POSTGRES_PORT,
    POSTGRES_SECRET,
    S3_IDENTITIES_SECRET,
    service_dns,
)
from platform_core.config import PlatformConfig
from platform_core.dagster_storage import instance_role
from platform_core.services import mlflow_auth
from platform_core.services.postgres import SUPERUSER
from platform_core.state import Credentials

Obj = dict[str, Any]
ASSET = "cluster_secrets"
DATA_API_TOKEN = "data-api-admin"  # as ml_assets.data.service reads it
METALLB_MEMBERLIST = "metallb-memberlist"  # MetalLB v0.12's speakers' shared secret
# The ML step pods (dagster-k8s Pipes, ml_assets.step_runner) read S3 keys only from these, through envFrom:
TRAINING_SECRET = "training-env"  # every step pod: the datasets bucket owner's keys
REPORTS_SECRET = "reports-env"  # the drift_report pod alone: the reports bucket owner's keys
MLFLOW_WRITER_SECRET = "mlflow-writer-env"  # the training pod: logs runs as MLflow's writer
MLFLOW_READER_SECRET = "mlflow-reader-env"  # the drift_report pod: only loads the champion
MLFLOW_IDENTITY_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
SECRET_ENV = {
    TRAINING_SECRET: ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    REPORTS_SECRET: ("REPORTS_AWS_ACCESS_KEY_ID", "REPORTS_AWS_SECRET_ACCESS_KEY"),
    MLFLOW_WRITER_SECRET: MLFLOW_IDENTITY_ENV,
    MLFLOW_READER_SECRET: MLFLOW_IDENTITY_ENV,
}


def _secret(cfg: PlatformConfig, name: str, values: dict[str, str]) -> Obj:
    """`data`, base64: the server folds `stringData` into `data` owned by no field manager, so a key removed
    from the platform's Secret would stay behind after a server-side apply (kubernetes#89765)."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return obj("v1", "Secret", meta(name, ASSET, cfg.k3s.namespace), type="Opaque", data=data)


def secret_values(secret: Obj) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def ml_step_env(cfg: PlatformConfig, credentials: Credentials) -> dict[str, dict[str, str]]:
    """Secret name -> its variables: what the step pods get through envFrom, and what the in-process runner
    hands the same steps in the local target."""
    owners = {TRAINING_SECRET: cfg.ml.datasets_bucket, REPORTS_SECRET: cfg.ml.reports_bucket}
    identities = {
        MLFLOW_WRITER_SECRET: mlflow_auth.writer(credentials),
        MLFLOW_READER_SECRET: mlflow_auth.reader(credentials),
    }
    return {
        **{
            name: dict(zip(SECRET_ENV[name], credentials.s3_keys(cfg.bucket(bucket).owner), strict=True))
            for name, bucket in owners.items()
        },
        **{name: identity.environ() for name, identity in identities.items()},
    }


def orchestrator_secrets(cfg: PlatformConfig, credentials: Credentials, config_text: str) -> list[Obj]:
    """The in-cluster orchestrator's: its instance's password, and what its code servers and run pods read to do
    what `platformctl` does here: platform.yaml (the alerts webhook can be a secret URL) and the credentials,
    every one the config implies made first, since only the workstation generates them."""
    for db in cfg.databases:
        credentials.postgres_password(db.owner)
    for bucket in cfg.buckets:
        credentials.s3_keys(bucket.owner)
    for identity in (mlflow_auth.writer, mlflow_auth.reader):
        identity(credentials)
    for token in (METALLB_MEMBERLIST, DATA_API_TOKEN, mlflow_auth.FLASK_SECRET_TOKEN):
        credentials.token(token)
    stored = credentials.path.read_text() if credentials.path.exists() else "{}"
    return [
        _secret(cfg, PG_PASSWORD_SECRET, {PG_PASSWORD_KEY: credentials.postgres_password(instance_role(cfg))}),
        _secret(cfg, PLATFORM_SECRET, {"platform.yaml": config_text, "credentials.json": stored}),
    ]


def render_secrets(
    cfg: PlatformConfig, credentials: Credentials, s3_identities: dict[str, Any], config_text: str
) -> list[Obj]:
    mlflow_role = next(db.owner for db in cfg.databases if db.name == cfg.mlflow.database)
    mlflow_password = credentials.postgres_password(mlflow_role)
    artifact_access, artifact_secret = credentials.s3_keys(cfg.bucket(cfg.mlflow.artifact_bucket).owner)
    ml_access, ml_secret = credentials.s3_keys(cfg.bucket(cfg.ml.predictions_bucket).owner)
    backend = (
        f"postgresql+psycopg2://{mlflow_role}:{mlflow_password}@{service_dns(POSTGRES, cfg)}:{POSTGRES_PORT}"
        f"/{cfg.mlflow.database}"
    )
    return [
        _secret(cfg, S3_IDENTITIES_SECRET, {"s3.json": json.dumps(s3_identities, sort_keys=True)}),
        _secret(cfg, POSTGRES_SECRET, {"password": credentials.postgres_password(SUPERUSER)}),
        _secret(
            cfg,
            MLFLOW_SECRET,
            {
                "MLFLOW_BACKEND_STORE_URI": backend,
                "PGPASSWORD": mlflow_password,
                "AWS_ACCESS_KEY_ID": artifact_access,
                "AWS_SECRET_ACCESS_KEY": artifact_secret,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials.token(mlflow_auth.FLASK_SECRET_TOKEN),
            },
        ),
        _secret(
            cfg,
            MLFLOW_USERS_SECRET,
            {
                mlflow_auth.WRITER_PASSWORD_ENV: mlflow_auth.writer(credentials).password,
                mlflow_auth.READER_PASSWORD_ENV: mlflow_auth.reader(credentials).password,
            },
        ),
        _secret(
            cfg,
            INFERENCE_SECRET,
            {
                "SERVING_S3_ACCESS_KEY": ml_access,
                "SERVING_S3_SECRET_KEY": ml_secret,
                **mlflow_auth.reader(credentials).environ(),
            },
        ),
        _secret(cfg, DATA_API_SECRET, {"token": credentials.token(DATA_API_TOKEN)}),
        *(_secret(cfg, name, data) for name, data in ml_step_env(cfg, credentials).items()),
        *orchestrator_secrets(cfg, credentials, config_text),  # last: after every credential above is made
    ]

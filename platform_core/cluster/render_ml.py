"""MLflow, the offline data API and the inference service, all in the platform image (see infra/image/).

Their credentials come from Secrets the platform creates (``mlflow-env``, ``data-api-admin``, ``inference-env``),
never from git; everything else is a plain env value or flag rendered from the config.
"""

from __future__ import annotations

from typing import Any

from platform_core.cluster.render_base import (
    Obj,
    deployment,
    env,
    hardened,
    http_probe,
    meta,
    obj,
    resources,
    secret_env,
    service,
)
from platform_core.cluster.render_storage import POSTGRES, POSTGRES_PORT, SEAWEEDFS, service_dns
from platform_core.config import PlatformConfig
from platform_core.services import mlflow_auth

MLFLOW = "mlflow"
DATA_API = "data-api"
INFERENCE = "inference"
# MLFLOW_BACKEND_STORE_URI, PGPASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_FLASK_SERVER_SECRET_KEY
MLFLOW_SECRET = "mlflow-env"
MLFLOW_USERS_SECRET = "mlflow-users"  # the writer's and the reader's passwords: the init container's alone
MLFLOW_AUTH_CONFIGMAP = "mlflow-auth"
MLFLOW_AUTH_DIR = "/etc/mlflow-auth"
DATA_API_SECRET = "data-api-admin"  # key token: the Bearer token of the data API's /admin/* endpoints
DATA_API_TOKEN_ENV = "DATA_API_ADMIN_TOKEN"
INFERENCE_SECRET = "inference-env"
# the predictions bucket owner's keys, and MLflow's reader (it loads the champion, and can move nothing)
INFERENCE_SECRET_KEYS = (
    "SERVING_S3_ACCESS_KEY",
    "SERVING_S3_SECRET_KEY",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
PLATFORM_UID = 10001  # the non-root user of infra/image/Dockerfile
# MLflow refuses unknown Host headers (DNS rebinding); allow its Service names, loopback and private IPs.
_PRIVATE_HOSTS = ["10.*", "192.168.*", *(f"172.{i}.*" for i in range(16, 32))]


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def _container(name: str, cfg: PlatformConfig, command: list[str], port: int, health: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": cfg.versions.platform_image,
        # Imported into containerd (k3s.image_source bundle/host_build): K3s must never try to pull it. The same
        # for registry, whose tag is pinned; so infra/ does not depend on image_source.
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": http_probe(health, "http"),
        "livenessProbe": http_probe(health, "http", period=20, delay=30),
        "securityContext": hardened(PLATFORM_UID),
    }


def mlflow_allowed_hosts(cfg: PlatformConfig) -> str:
    names = [MLFLOW, f"{MLFLOW}.{cfg.k3s.namespace}", f"{MLFLOW}.{cfg.k3s.namespace}.svc", service_dns(MLFLOW, cfg)]
    hosts = [h for name in [*names, "localhost", "127.0.0.1"] for h in (name, f"{name}:*")]
    return ",".join([*hosts, *_PRIVATE_HOSTS])


def mlflow_auth_store_uri(cfg: PlatformConfig) -> str:
    """MLflow's auth tables live beside its tracking tables; the role's password is PGPASSWORD, not in the URI."""
    role = next(db.owner for db in cfg.databases if db.name == cfg.mlflow.database)
    return f"postgresql+psycopg2://{role}@{service_dns(POSTGRES, cfg)}:{POSTGRES_PORT}/{cfg.mlflow.database}"


def _mlflow_users_init(cfg: PlatformConfig, auth_env: list[dict[str, Any]]) -> dict[str, Any]:
    """Writes the writer (admin) and the reader into the auth store before the server starts, from the Secret
    mlflow-users: a rotated password is set there, and the server itself never holds the writer's password. It
    also makes the production model and the checks' model, so no signed-in user can create (and own) them first."""
    init = {
        "name": "mlflow-users",
        "image": cfg.versions.platform_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "platform_core.services.mlflow_auth"],
        "env": [
            *auth_env,
            *env({mlflow_auth.CLAIM_MODELS_ENV: f"{cfg.ml.model_name},{mlflow_auth.CHECK_MODEL}"}),
            secret_env("PGPASSWORD", MLFLOW_SECRET, "PGPASSWORD"),
            secret_env(mlflow_auth.WRITER_PASSWORD_ENV, MLFLOW_USERS_SECRET, mlflow_auth.WRITER_PASSWORD_ENV),
            secret_env(mlflow_auth.READER_PASSWORD_ENV, MLFLOW_USERS_SECRET, mlflow_auth.READER_PASSWORD_ENV),
        ],
        "volumeMounts": [{"name": "auth-config", "mountPath": MLFLOW_AUTH_DIR, "readOnly": True}],
        "resources": resources("50m", "256Mi", "500m", "512Mi"),
        "securityContext": hardened(PLATFORM_UID),
    }
    return init


def render_mlflow(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.mlflow.port, cfg.k3s.namespace
    s3 = f"http://{service_dns(SEAWEEDFS, cfg)}:{cfg.services.seaweedfs.s3_port}"
    command = [
        "mlflow",
        "server",
        f"--app-name={mlflow_auth.APP_NAME}",
        "--host=0.0.0.0",
        f"--port={port}",
        f"--workers={cfg.services.mlflow.workers}",
        "--serve-artifacts",
        f"--artifacts-destination=s3://{cfg.mlflow.artifact_bucket}",
    ]  # the backend URI, with its role, comes from MLFLOW_BACKEND_STORE_URI in the Secret
    container = _container(MLFLOW, cfg, command, port, "/health")
    container["envFrom"] = [{"secretRef": {"name": MLFLOW_SECRET}}]
    auth_env = env({"MLFLOW_AUTH_CONFIG_PATH": f"{MLFLOW_AUTH_DIR}/{mlflow_auth.INI_NAME}"})
    container["volumeMounts"] = [{"name": "auth-config", "mountPath": MLFLOW_AUTH_DIR, "readOnly": True}]
    container["env"] = auth_env + env(
        {
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_SERVER_ALLOWED_HOSTS": mlflow_allowed_hosts(cfg),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else 9 worker processes and ~2.4 GB
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    container["resources"] = resources("100m", "512Mi", "1", "2Gi")
    pod = _pod(container)
    pod["initContainers"] = [_mlflow_users_init(cfg, auth_env)]
    pod["volumes"] = [{"name": "auth-config", "configMap": {"name": MLFLOW_AUTH_CONFIGMAP}}]
    ini = {mlflow_auth.INI_NAME: mlflow_auth.auth_ini(mlflow_auth_store_uri(cfg))}
    return [
        obj("v1", "ConfigMap", meta(MLFLOW_AUTH_CONFIGMAP, MLFLOW, ns, MLFLOW), data=ini),
        deployment(MLFLOW, MLFLOW, ns, pod),
        service(MLFLOW, MLFLOW, ns, {"http": port}, cfg.k3s.exposure.of(MLFLOW)),
    ]


def render_data_api(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.data_api.port, cfg.k3s.namespace
    command = ["python", "-m", "ml_assets.data.offline_api", "--host=0.0.0.0", f"--port={port}"]
    command += [f"--batch-rows={cfg.ml.batch_rows}", f"--batches={cfg.ml.batches}"]
    # off loopback, /admin/* (drift injection) needs the token; the flag names the variable, never the value
    command += [f"--admin-token-env={DATA_API_TOKEN_ENV}"]
    container = _container(DATA_API, cfg, command, port, "/health")
    container["env"] = [secret_env(DATA_API_TOKEN_ENV, DATA_API_SECRET, "token")]
    container["resources"] = resources("50m", "256Mi", "500m", "1Gi")
    svc = service(DATA_API, DATA_API, ns, {"http": port}, cfg.k3s.exposure.of(DATA_API))
    return [deployment(DATA_API, DATA_API, ns, _pod(container)), svc]


def render_inference(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.inference.port, cfg.k3s.namespace
    command = ["python", "-m", "ml_assets.serving", "--host=0.0.0.0", f"--port={port}", "--settings-from-env"]
    # /health is 503 until a champion exists; a probe on it would keep the pod out of the Service, so the
    # POST /reload that loads the first champion could never reach it. /metrics answers once the server is up.
    container = _container(INFERENCE, cfg, command, port, "/metrics")
    inference = cfg.services.inference
    # ServingSettings read from SERVING_<FIELD>; the same values settings_from_config gives the local target
    plain = {
        "SERVING_TRACKING_URI": f"http://{service_dns(MLFLOW, cfg)}:{cfg.services.mlflow.port}",
        "SERVING_MODEL_NAME": cfg.ml.model_name,
        "SERVING_S3_ENDPOINT": f"http://{service_dns(SEAWEEDFS, cfg)}:{cfg.services.seaweedfs.s3_port}",
        "SERVING_PREDICTIONS_BUCKET": cfg.ml.predictions_bucket,
        "SERVING_THREADS": str(inference.threads),
        "SERVING_MAX_BATCH_ROWS": str(inference.max_batch_rows),
        "SERVING_MAX_BODY_BYTES": str(inference.max_body_bytes),
        "SERVING_LOG_FLUSH_ROWS": str(inference.log_flush_rows),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    # one secretKeyRef per key, not envFrom: a Secret missing a key stops the pod with a clear event
    container["env"] = [*env(plain), *(secret_env(key, INFERENCE_SECRET, key) for key in INFERENCE_SECRET_KEYS)]
    container["resources"] = resources("100m", "512Mi", "1", "2Gi")
    svc = service(INFERENCE, INFERENCE, ns, {"http": port}, cfg.k3s.exposure.of(INFERENCE))
    return [deployment(INFERENCE, INFERENCE, ns, _pod(container)), svc]

"""MLflow, the offline data API and the inference service, all in the platform image (see infra/image/).

Their credentials come from Secrets the platform creates (``mlflow-env``, ``inference-env``), never from git.
"""

from __future__ import annotations

from typing import Any

from platform_assets.cluster.render_base import Obj, deployment, env, hardened, http_probe, resources, service
from platform_assets.cluster.render_storage import SEAWEEDFS, service_dns
from platform_assets.config import PlatformConfig

MLFLOW = "mlflow"
DATA_API = "data-api"
INFERENCE = "inference"
MLFLOW_SECRET = "mlflow-env"  # MLFLOW_BACKEND_STORE_URI, PGPASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
INFERENCE_SECRET = "inference-env"
PLATFORM_CONFIGMAP = "platform-config"  # key platform.yaml: the user's config, applied by the platform
PLATFORM_UID = 10001  # the non-root user of infra/image/Dockerfile
# MLflow refuses unknown Host headers (DNS rebinding); allow its Service names, loopback and private IPs.
_PRIVATE_HOSTS = ["10.*", "192.168.*", *(f"172.{i}.*" for i in range(16, 32))]


def _pod(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if volumes:
        pod["volumes"] = volumes
    return pod


def _container(name: str, cfg: PlatformConfig, command: list[str], port: int, health: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": cfg.versions.platform_image,
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


def render_mlflow(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.mlflow.port, cfg.k3s.namespace
    s3 = f"http://{service_dns(SEAWEEDFS, cfg)}:{cfg.services.seaweedfs.s3_port}"
    command = [
        "mlflow",
        "server",
        "--host=0.0.0.0",
        f"--port={port}",
        f"--workers={cfg.services.mlflow.workers}",
        "--serve-artifacts",
        f"--artifacts-destination=s3://{cfg.mlflow.artifact_bucket}",
    ]  # the backend URI, with its role, comes from MLFLOW_BACKEND_STORE_URI in the Secret
    container = _container(MLFLOW, cfg, command, port, "/health")
    container["envFrom"] = [{"secretRef": {"name": MLFLOW_SECRET}}]
    container["env"] = env(
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
    return [deployment(MLFLOW, MLFLOW, ns, _pod(container)), service(MLFLOW, MLFLOW, ns, {"http": port})]


def render_data_api(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.data_api.port, cfg.k3s.namespace
    command = ["python", "-m", "ml_assets.data.offline_api", f"--port={port}"]
    command += [f"--batch-rows={cfg.ml.batch_rows}", f"--batches={cfg.ml.batches}"]
    container = _container(DATA_API, cfg, command, port, "/health")
    container["resources"] = resources("50m", "256Mi", "500m", "1Gi")
    return [deployment(DATA_API, DATA_API, ns, _pod(container)), service(DATA_API, DATA_API, ns, {"http": port})]


def render_inference(cfg: PlatformConfig) -> list[Obj]:
    port, ns = cfg.services.inference.port, cfg.k3s.namespace
    command = ["python", "-m", "ml_assets.serving"]
    command += ["--config=/etc/mlops-platform/platform.yaml", "--state-dir=/var/lib/mlops-platform"]
    # /health is 503 until a champion exists; a probe on it would keep the pod out of the Service, so the
    # POST /reload that loads the first champion could never reach it. /metrics answers once the server is up.
    container = _container(INFERENCE, cfg, command, port, "/metrics")
    container["envFrom"] = [{"secretRef": {"name": INFERENCE_SECRET}}]
    container["resources"] = resources("100m", "512Mi", "1", "2Gi")
    container["volumeMounts"] = [
        {"name": "config", "mountPath": "/etc/mlops-platform", "readOnly": True},
        {"name": "state", "mountPath": "/var/lib/mlops-platform"},
    ]
    volumes = [
        {"name": "config", "configMap": {"name": PLATFORM_CONFIGMAP}},
        {"name": "state", "emptyDir": {}},
    ]
    pod = _pod(container, volumes)
    return [deployment(INFERENCE, INFERENCE, ns, pod), service(INFERENCE, INFERENCE, ns, {"http": port})]

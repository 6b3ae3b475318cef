"""SeaweedFS and PostgreSQL as plain Kubernetes objects (no Helm, no Bitnami): pinned images, PVCs, probes.

Credentials are never rendered: the pods read Secrets (``seaweedfs-s3-identities``, ``postgres-admin``) that the
platform creates from its state directory.
"""

from __future__ import annotations

from typing import Any

from platform_core.cluster.render_base import (
    Obj,
    deployment,
    hardened,
    http_probe,
    meta,
    obj,
    pvc,
    resources,
    secret_env,
    service,
)
from platform_core.config import PlatformConfig

SEAWEEDFS = "seaweedfs"
S3_IDENTITIES_SECRET = "seaweedfs-s3-identities"  # key s3.json: the S3 identities file, made by the platform
POSTGRES = "postgres"
POSTGRES_SECRET = "postgres-admin"  # key password: the superuser's password, made by the platform
POSTGRES_PORT = 5432  # in-cluster the Service has its own IP, so the standard port (local uses 55432)
SEAWEEDFS_UID = 1000  # weed is a static binary: any uid works, given a writable /data
POSTGRES_UID = 70  # the postgres user of the alpine image
# Same reason as the local target: upstream grows 7 volumes per bucket at once, exhausting a small server.
MASTER_TOML = """\
[master.volume_growth]
copy_1 = 2
copy_other = 1
"""


def service_dns(name: str, cfg: PlatformConfig) -> str:
    return f"{name}.{cfg.k3s.namespace}.svc.cluster.local"


def _pod_security(uid: int) -> dict[str, Any]:
    """fsGroup makes the PVC writable by the non-root uid."""
    return {"fsGroup": uid, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _weed_args(cfg: PlatformConfig) -> list[str]:
    weed = cfg.services.seaweedfs
    return [
        "server",
        "-ip=$(POD_IP)",  # advertised to clients of the master; the pod IP is not a secret
        "-ip.bind=0.0.0.0",
        "-dir=/data",
        f"-master.port={weed.master_port}",
        f"-volume.port={weed.volume_port}",
        "-filer",
        f"-filer.port={weed.filer_port}",
        "-s3",
        f"-s3.port={weed.s3_port}",
        "-s3.config=/etc/seaweedfs/s3.json",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=256",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
    ]


def render_seaweedfs(cfg: PlatformConfig) -> list[Obj]:
    weed, ns = cfg.services.seaweedfs, cfg.k3s.namespace
    ports = {"master": weed.master_port, "volume": weed.volume_port, "filer": weed.filer_port, "s3": weed.s3_port}
    container = {
        "name": SEAWEEDFS,
        "image": cfg.versions.seaweedfs_image,
        "command": ["weed"],
        "args": _weed_args(cfg),
        "workingDir": "/data",  # the filer's leveldb store is relative to it
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": name, "containerPort": port} for name, port in ports.items()],
        "readinessProbe": http_probe("/healthz", weed.s3_port),
        "livenessProbe": http_probe("/cluster/status", weed.master_port, period=20, delay=30),
        "resources": resources("100m", "256Mi", "1", "1Gi"),
        "securityContext": hardened(SEAWEEDFS_UID),
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "s3-identities", "mountPath": "/etc/seaweedfs/s3.json", "subPath": "s3.json", "readOnly": True},
            {"name": "master-toml", "mountPath": "/etc/seaweedfs/master.toml", "subPath": "master.toml"},
        ],
    }
    pod = {
        "containers": [container],
        "securityContext": _pod_security(SEAWEEDFS_UID),
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "seaweedfs-data"}},
            {"name": "s3-identities", "secret": {"secretName": S3_IDENTITIES_SECRET}},
            {"name": "master-toml", "configMap": {"name": "seaweedfs-master"}},
        ],
    }
    master_cm = obj(
        "v1", "ConfigMap", meta("seaweedfs-master", SEAWEEDFS, ns, SEAWEEDFS), data={"master.toml": MASTER_TOML}
    )
    return [
        master_cm,
        pvc("seaweedfs-data", SEAWEEDFS, ns, SEAWEEDFS, "20Gi"),
        deployment(SEAWEEDFS, SEAWEEDFS, ns, pod, recreate=True),
        # S3 only: the filer, master and volume ports answer without credentials, and nothing outside the pod
        # needs them (the S3 gateway reaches its filer in-process)
        service(SEAWEEDFS, SEAWEEDFS, ns, {"s3": weed.s3_port}, cfg.k3s.exposure.of(SEAWEEDFS)),
    ]


def render_postgres(cfg: PlatformConfig) -> list[Obj]:
    ns = cfg.k3s.namespace
    ready = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT)]
    container = {
        "name": POSTGRES,
        "image": cfg.versions.postgres_image,
        "env": [
            secret_env("POSTGRES_PASSWORD", POSTGRES_SECRET, "password"),
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},  # a subdirectory: initdb owns it
        ],
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {
            "exec": {"command": ready},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": resources("100m", "256Mi", "1", "1Gi"),
        "securityContext": hardened(POSTGRES_UID),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
    }
    pod = {
        "containers": [container],
        "securityContext": _pod_security(POSTGRES_UID),
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "postgres-data"}}],
    }
    return [
        pvc("postgres-data", POSTGRES, ns, POSTGRES, "10Gi"),
        deployment(POSTGRES, POSTGRES, ns, pod, recreate=True),
        service(POSTGRES, POSTGRES, ns, {"postgres": POSTGRES_PORT}, cfg.k3s.exposure.of(POSTGRES)),
    ]

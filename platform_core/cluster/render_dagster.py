"""The orchestrator in the k3s target: Dagster's webserver, daemon and one gRPC code server per code location, on
the platform image, with the instance in the cluster's Postgres and runs launched as Jobs by dagster-k8s's
K8sRunLauncher. What the pods read that is secret (the instance's password, platform.yaml, the credentials) comes
from Secrets the platform makes (platform_core/cluster/secrets.py); infra/ only names them.

Taken from Dagster's Helm chart (dagster-io/dagster, `helm/dagster`): the instance's `dagster.yaml` in a ConfigMap,
`workspace.yaml` naming the code servers by Service, the password in a Secret with key `postgresql-password`,
`dagster-daemon liveness-check` as the daemon's liveness probe, config digests on the pod templates. Unlike it,
the ConfigMap is DAGSTER_HOME itself (read-only): nothing of Dagster writes there once the storage is Postgres,
the artifacts go to the state volume and the compute logs to the pods' own logs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from platform_core.cluster.render_base import (
    Obj,
    deployment,
    env,
    hardened,
    http_probe,
    meta,
    obj,
    pvc,
    resources,
    secret_env,
    service,
)
from platform_core.cluster.render_storage import POSTGRES, POSTGRES_PORT, service_dns
from platform_core.config import PlatformConfig
from platform_core.dagster_storage import PASSWORD_ENV, instance_storage
from platform_core.settings import CLUSTER_SECRET_DIR, CONFIG_ENV, IN_CLUSTER_ENV, STATE_DIR_ENV

DAGSTER = "dagster"  # the Application, and the webserver's Deployment and Service
DAEMON = "dagster-daemon"
CODE_SERVERS = {"platform_assets": "dagster-code-platform", "ml_assets": "dagster-code-ml"}  # location -> name
GRPC_PORT = 4000
GRPC_HEALTH_SERVICE = "DagsterApi"
INSTANCE_CONFIGMAP = "dagster-instance"
WORKSPACE_CONFIGMAP = "dagster-workspace"
# Dagster's convention (K8sRunLauncher's postgres_password_secret): key postgresql-password -> DAGSTER_PG_PASSWORD
PG_PASSWORD_SECRET = "dagster-postgresql-secret"
PG_PASSWORD_KEY = "postgresql-password"
PLATFORM_SECRET = "dagster-platform"  # platform.yaml and credentials.json, mounted at CLUSTER_SECRET_DIR
LAUNCHER_ACCOUNT = "dagster"  # webserver and daemon: launch and watch run Jobs in the namespace
RUN_ACCOUNT = "dagster-run"  # code servers and run pods: they do what `platformctl up` does
DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE_DIR = "/opt/dagster/workspace"
STATE_DIR = "/var/lib/platform"  # the alerts log, each location's published lineage (cross-location causes)
STATE_CLAIM = "dagster-state"  # one host (k3s), so one ReadWriteOnce volume is shared by the pods on it
PLATFORM_UID = 10001  # the non-root user of infra/image/Dockerfile
CONFIG_DIGEST = "mlops-platform/dagster-config-digest"  # pod-template annotation


def instance_config(cfg: PlatformConfig) -> dict[str, Any]:
    """The in-cluster `dagster.yaml`: storage in the cluster's Postgres, runs as Jobs in the namespace, queued so
    the small host runs at most two at a time."""
    launcher = {
        "job_image": cfg.versions.platform_image,
        "image_pull_policy": "IfNotPresent",  # imported into containerd, never pulled
        "job_namespace": cfg.k3s.namespace,
        "service_account_name": RUN_ACCOUNT,
        "instance_config_map": INSTANCE_CONFIGMAP,
        "postgres_password_secret": PG_PASSWORD_SECRET,
        "dagster_home": DAGSTER_HOME,
        "load_incluster_config": True,
        "env_vars": [f"{k}={v}" for k, v in sorted(platform_env(cfg).items())],
        "volumes": [platform_volume(), state_volume()],
        "volume_mounts": platform_mounts(),
        "security_context": hardened(PLATFORM_UID),
        # the pod's too: fsGroup makes the Secret's 0440 files and the state volume readable by the platform user
        "run_k8s_config": {"pod_spec_config": {"security_context": pod_security()}},
        "resources": resources("100m", "512Mi", "2", "4Gi"),  # a run loads a location and may train in process
        "labels": {"app.kubernetes.io/managed-by": "mlops-platform"},
    }
    return {
        "telemetry": {"enabled": False},
        **instance_storage(cfg, service_dns(POSTGRES, cfg), POSTGRES_PORT),
        # K8sRunLauncher, minus run monitoring's verdict on the workstation's own runs (no Job to look at)
        "run_launcher": {
            "module": "platform_core.orchestrator.cluster_launcher",
            "class": "PlatformRunLauncher",
            "config": launcher,
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 2},
        },
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 30},
        # DAGSTER_HOME is not the platform user's to write (the ConfigMap in the long-running pods; a directory the
        # image lacks in run pods): what a run writes goes to the state volume; stdout/stderr stay in each run
        # pod's log (`kubectl logs`), as the Helm chart's default NoOpComputeLogManager leaves them, while the
        # event log is in Postgres and in the UI.
        "local_artifact_storage": {
            "module": "dagster.core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": f"{STATE_DIR}/dagster"},
        },
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
    }


def platform_env(cfg: PlatformConfig) -> dict[str, str]:
    """What a pod running the platform's code needs to find its config, state and services (settings.py)."""
    return {
        CONFIG_ENV: f"{CLUSTER_SECRET_DIR}/platform.yaml",
        STATE_DIR_ENV: STATE_DIR,
        IN_CLUSTER_ENV: "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def platform_volume() -> Obj:
    return {"name": "platform", "secret": {"secretName": PLATFORM_SECRET, "defaultMode": 0o440}}


def pod_security() -> Obj:
    return {"runAsNonRoot": True, "fsGroup": PLATFORM_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def state_volume() -> Obj:
    return {"name": "state", "persistentVolumeClaim": {"claimName": STATE_CLAIM}}


def platform_mounts() -> list[Obj]:
    return [
        {"name": "platform", "mountPath": str(CLUSTER_SECRET_DIR), "readOnly": True},
        {"name": "state", "mountPath": STATE_DIR},
    ]


def workspace_config() -> dict[str, Any]:
    servers = [
        {"grpc_server": {"host": name, "port": GRPC_PORT, "location_name": location}}
        for location, name in CODE_SERVERS.items()
    ]
    return {"load_from": servers}


def _pod(account: str, containers: list[Obj], volumes: list[Obj]) -> dict[str, Any]:
    return {
        "serviceAccountName": account,
        "containers": containers,
        "volumes": volumes,
        "securityContext": pod_security(),
    }


def _container(cfg: PlatformConfig, name: str, command: list[str], mounts: list[Obj]) -> Obj:
    return {
        "name": name,
        "image": cfg.versions.platform_image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [secret_env(PASSWORD_ENV, PG_PASSWORD_SECRET, PG_PASSWORD_KEY), *env({"DAGSTER_HOME": DAGSTER_HOME})],
        "volumeMounts": [{"name": "instance", "mountPath": DAGSTER_HOME, "readOnly": True}, *mounts],
        "resources": resources("100m", "384Mi", "1", "1Gi"),
        "securityContext": hardened(PLATFORM_UID),
    }


def _config_volumes() -> list[Obj]:
    return [
        {"name": "instance", "configMap": {"name": INSTANCE_CONFIGMAP}},
        {"name": "workspace", "configMap": {"name": WORKSPACE_CONFIGMAP}},
    ]


def _code_server(cfg: PlatformConfig, location: str, name: str) -> list[Obj]:
    module = f"{location}.definitions"
    command = ["dagster", "api", "grpc", "-m", module, "-h", "0.0.0.0", "-p", str(GRPC_PORT)]
    container = _container(cfg, name, command, platform_mounts())
    # the image its runs use: K8sRunLauncher reads it from the code location the server reports
    container["env"] += [*env({**platform_env(cfg), "DAGSTER_CURRENT_IMAGE": cfg.versions.platform_image})]
    container["ports"] = [{"name": "grpc", "containerPort": GRPC_PORT}]
    # grpc.health.v1: Dagster's server reports its own service "DagsterApi" SERVING once started with its code
    # loaded (dagster/_grpc/server.py, DagsterGrpcServer); the probe asks for it by name.
    grpc = {"port": GRPC_PORT, "service": GRPC_HEALTH_SERVICE}
    probe = {"grpc": grpc, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6}
    container["readinessProbe"] = probe
    container["livenessProbe"] = {**probe, "periodSeconds": 20}
    container["startupProbe"] = {**probe, "failureThreshold": 30}  # up to 5 min to import on a busy 2-core host
    container["resources"] = resources("100m", "512Mi", "1", "2Gi")
    pod = _pod(RUN_ACCOUNT, [container], [_config_volumes()[0], platform_volume(), state_volume()])
    return [
        deployment(name, DAGSTER, cfg.k3s.namespace, pod),
        service(name, DAGSTER, cfg.k3s.namespace, {"grpc": GRPC_PORT}, "cluster"),
    ]


def _webserver(cfg: PlatformConfig) -> list[Obj]:
    port = cfg.services.dagster.webserver_port
    workspace = f"{WORKSPACE_DIR}/workspace.yaml"
    command = ["dagster-webserver", "-h", "0.0.0.0", "-p", str(port), "-w", workspace]
    container = _container(cfg, DAGSTER, command, [{"name": "workspace", "mountPath": WORKSPACE_DIR, "readOnly": True}])
    container["ports"] = [{"name": "http", "containerPort": port}]
    container["readinessProbe"] = http_probe("/server_info", "http")
    container["livenessProbe"] = http_probe("/server_info", "http", period=20, delay=60)
    pod = _pod(LAUNCHER_ACCOUNT, [container], _config_volumes())
    ns = cfg.k3s.namespace
    return [
        deployment(DAGSTER, DAGSTER, ns, pod),
        service(DAGSTER, DAGSTER, ns, {"http": port}, cfg.k3s.exposure.of(DAGSTER)),
    ]


def _daemon(cfg: PlatformConfig) -> Obj:
    workspace = f"{WORKSPACE_DIR}/workspace.yaml"
    container = _container(
        cfg,
        DAEMON,
        ["dagster-daemon", "run", "-w", workspace],
        [{"name": "workspace", "mountPath": WORKSPACE_DIR, "readOnly": True}],
    )
    # Who watches the watcher in the cluster: the kubelet restarts a daemon whose heartbeats went stale.
    liveness_check = {"exec": {"command": ["dagster-daemon", "liveness-check"]}, "timeoutSeconds": 20}
    container["livenessProbe"] = {
        **liveness_check,
        "initialDelaySeconds": 120,
        "periodSeconds": 30,
        "failureThreshold": 3,
    }
    container["readinessProbe"] = {**liveness_check, "initialDelaySeconds": 60, "periodSeconds": 120}
    pod = _pod(LAUNCHER_ACCOUNT, [container], _config_volumes())
    return deployment(DAEMON, DAGSTER, cfg.k3s.namespace, pod, recreate=True)  # one daemon, never two


def _rbac(cfg: PlatformConfig) -> list[Obj]:
    ns = cfg.k3s.namespace
    # What K8sRunLauncher's client calls (dagster_k8s/client.py): create and delete the run's Job, read its status
    # (run monitoring: read_namespaced_job_status), list, read and delete its pods (terminate), their logs and
    # events (a failed run's debug info).
    read = ["get", "list", "watch"]
    launch_rules = [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", *read]},
        {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": read},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", *read]},
        {"apiGroups": [""], "resources": ["pods/log", "pods/status", "events"], "verbs": read},
    ]
    rbac = "rbac.authorization.k8s.io/v1"
    launcher = [
        obj("v1", "ServiceAccount", meta(LAUNCHER_ACCOUNT, DAGSTER, ns)),
        obj(rbac, "Role", meta(LAUNCHER_ACCOUNT, DAGSTER, ns), rules=launch_rules),
        obj(
            rbac,
            "RoleBinding",
            meta(LAUNCHER_ACCOUNT, DAGSTER, ns),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LAUNCHER_ACCOUNT},
            subjects=[{"kind": "ServiceAccount", "name": LAUNCHER_ACCOUNT, "namespace": ns}],
        ),
    ]
    # Runs and sensors do what `platformctl up` does from the workstation with its admin kubeconfig: apply
    # Argo CD's and MetalLB's manifests (CRDs, cluster roles), Secrets, Applications, step pods. Argo CD's own
    # application controller holds the same rights for the same reason.
    runner = [
        obj("v1", "ServiceAccount", meta(RUN_ACCOUNT, DAGSTER, ns)),
        obj(
            rbac,
            "ClusterRoleBinding",
            meta(f"{RUN_ACCOUNT}-{ns}", DAGSTER),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            subjects=[{"kind": "ServiceAccount", "name": RUN_ACCOUNT, "namespace": ns}],
        ),
    ]
    return launcher + runner


def render_dagster(cfg: PlatformConfig) -> list[Obj]:
    ns = cfg.k3s.namespace
    config_maps = [
        obj(
            "v1",
            "ConfigMap",
            meta(INSTANCE_CONFIGMAP, DAGSTER, ns, DAGSTER),
            data={"dagster.yaml": yaml.safe_dump(instance_config(cfg), sort_keys=False)},
        ),
        obj(
            "v1",
            "ConfigMap",
            meta(WORKSPACE_CONFIGMAP, DAGSTER, ns, DAGSTER),
            data={"workspace.yaml": yaml.safe_dump(workspace_config(), sort_keys=False)},
        ),
    ]
    code_servers = [item for location, name in CODE_SERVERS.items() for item in _code_server(cfg, location, name)]
    workloads = [*code_servers, *_webserver(cfg), _daemon(cfg)]
    # Dagster reads dagster.yaml and workspace.yaml once, at start: a changed one must restart the pods
    digest = hashlib.sha256(json.dumps([c["data"] for c in config_maps], sort_keys=True).encode()).hexdigest()[:16]
    for item in workloads:
        if item["kind"] == "Deployment":
            item["spec"]["template"]["metadata"]["annotations"] = {CONFIG_DIGEST: digest}
    state = pvc(STATE_CLAIM, DAGSTER, ns, DAGSTER, "1Gi")
    return [*_rbac(cfg), *config_maps, state, _code_server_policy(cfg), *workloads]


def _code_server_policy(cfg: PlatformConfig) -> Obj:
    """Only the webserver and the daemon reach the code servers' gRPC port: a caller there can start a run with
    the code servers' rights (dagster/_grpc/server.py: StartRun). A pod isolated this way still takes its node's
    connections (the kubelet's probes), as Kubernetes' NetworkPolicy documents; K3s enforces policies itself
    (its embedded kube-router network policy controller)."""

    def named(names: list[str]) -> Obj:
        return {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": names}]}

    spec = {
        "podSelector": named(sorted(CODE_SERVERS.values())),
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"podSelector": named([DAGSTER, DAEMON])}], "ports": [{"protocol": "TCP", "port": GRPC_PORT}]}
        ],
    }
    return obj(
        "networking.k8s.io/v1", "NetworkPolicy", meta("dagster-code-servers", DAGSTER, cfg.k3s.namespace), spec=spec
    )

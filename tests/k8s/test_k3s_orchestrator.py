"""The orchestrator on the platform in the k3s target, on the API fake: Argo CD deploys Dagster from infra/, the
workstation records where its UI answers, and a run launched with the in-cluster instance's run launcher becomes
a Kubernetes Job whose spec the fake validates against the 1.31 schemas, as a real API server would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from platform_core.cluster.kube import KubeClient
from platform_core.cluster.render import seed_config
from platform_core.cluster.render_dagster import (
    CODE_SERVERS,
    PG_PASSWORD_KEY,
    PG_PASSWORD_SECRET,
    PLATFORM_SECRET,
    RUN_ACCOUNT,
    instance_config,
    render_dagster,
)
from platform_core.config import load_config
from platformctl.cli import _cluster_ui_line
from tests.k8s.scenario_k3s import Platform, changes, checks, platform_doc
from tests.k8s.schemas import validate_served
from tests.stacks import free_port_block

REPO = Path(__file__).resolve().parents[2]


def _get(kube: KubeClient, api_version: str, kind: str, name: str, namespace: str = "mlops") -> dict[str, Any]:
    found = kube.get({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}})
    assert found is not None, f"{kind} {namespace}/{name} is not in the cluster"
    return found


def test_argo_cd_deploys_dagster_and_the_ui_stays_off_the_lan(installed: Platform) -> None:
    p = installed
    result = p.run(["gitops", "dagster"])
    assert changes(result)["dagster"].startswith("address recorded: cluster only")
    assert checks(result)["applications_synced_healthy"][0] and checks(result)["only_declared_on_lan"][0]
    kube = p.cluster().kube()
    app = _get(kube, "argoproj.io/v1alpha1", "Application", "dagster", "argocd")
    assert (app["status"]["sync"]["status"], app["status"]["health"]["status"]) == ("Synced", "Healthy")
    for name in ("dagster", "dagster-daemon", *CODE_SERVERS.values()):
        deployment = _get(kube, "apps/v1", "Deployment", name)
        assert deployment["status"].get("availableReplicas") == 1, name
    assert _get(kube, "v1", "Service", "dagster")["spec"]["type"] == "ClusterIP"  # k3s.exposure.dagster: cluster
    # the workstation's instance moves into the cluster's Postgres once it is recorded (bootstrap.py)
    endpoints = json.loads((p.state_dir / "endpoints.json").read_text())
    assert endpoints["dagster"] == {"service": "dagster", "namespace": "mlops", "port": 3000}
    deployed, line = _cluster_ui_line(p.cluster().state)
    assert deployed and "kubectl -n mlops port-forward svc/dagster 3000:3000" in line
    # the Secrets its pods read: the instance's password and platform.yaml with the credentials, never in git
    secret = _get(kube, "v1", "Secret", PLATFORM_SECRET)
    assert set(secret["data"]) == {"platform.yaml", "credentials.json"}
    assert set(_get(kube, "v1", "Secret", PG_PASSWORD_SECRET)["data"]) == {PG_PASSWORD_KEY}
    assert changes(p.run(["gitops", "dagster"]))["dagster"] == "no change"
    # platform.yaml is in the code servers' Secret: an edit rolls them, and nothing else
    p.config.write_text(p.config.read_text() + "# edited by hand\n")
    edited = changes(p.run(["cluster_secrets"]))["cluster_secrets"]
    rolled = [line.split()[2] for line in edited.split("; ") if line.startswith("restarted")]
    assert rolled == ["mlops/dagster-code-platform", "mlops/dagster-code-ml"], edited


def test_a_run_launched_from_the_in_cluster_instance_becomes_a_valid_job(installed: Platform) -> None:
    """The run launcher and its config are the rendered ones; only what needs the cluster is swapped: the storage
    (sqlite here: the fake runs no Postgres), the launcher's Kubernetes config (the fake's kubeconfig instead of
    the pod's service account), and the queue (the daemon dequeues to the same launcher in the cluster)."""
    p = installed
    cfg = load_config(p.config)
    config = instance_config(cfg)
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        config.pop(section)
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    launcher = config["run_launcher"]["config"]
    launcher.update(load_incluster_config=False, kubeconfig_file=str(p.state_dir / "kubeconfig"))
    home = p.tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PLATFORM_CONFIG": str(p.config),
        "PLATFORM_STATE_DIR": str(p.state_dir),
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "job", "launch", "-m", "ml_assets.definitions", "-j", "retrain_and_deploy"]
    launched = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]

    _run_monitoring_spares_the_workstations_runs(home)
    jobs = p.cluster().kube().list("batch/v1", "Job", "mlops")
    assert len(jobs) == 1, launched.stdout[-3000:] + launched.stderr[-3000:]
    job = jobs[0]
    validate_served({k: v for k, v in job.items() if k != "status"})  # as the fake did when it was created
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["name"].startswith("dagster-run-")
    assert pod["serviceAccountName"] == RUN_ACCOUNT
    assert container["image"] == cfg.versions.platform_image and container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    env_by_name = {e["name"]: e for e in container["env"]}
    password = env_by_name["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": PG_PASSWORD_SECRET, "key": PG_PASSWORD_KEY}
    assert env_by_name["PLATFORM_IN_CLUSTER"]["value"] == "true"
    assert env_by_name["PLATFORM_CONFIG"]["value"] == "/etc/platform/platform.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["platform"]["secret"]["secretName"] == PLATFORM_SECRET
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/etc/platform", "/var/lib/platform"}
    assert container["securityContext"]["runAsNonRoot"] is True
    # the Secret's files are root's, mode 0440: only fsGroup lets the platform user read platform.yaml
    assert volumes["platform"]["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 10001
    assert set(container["resources"]) == {"requests", "limits"}


def test_the_code_servers_probe_asks_what_a_real_code_server_answers(tmp_path: Path) -> None:
    """The kubelet's gRPC probe (grpc.health.v1 Check for the probe's service) against a real `dagster api grpc`
    started with the rendered command: the fake's kubelet does not probe, so this is where a probe a real kubelet
    would fail forever (a service the server does not report) is caught."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(platform_doc(tmp_path, tmp_path / "bundle")))
    cfg = load_config(config)
    server = next(o for o in render_dagster(cfg) if o["metadata"]["name"] == CODE_SERVERS["platform_assets"])
    container = server["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]["grpc"]
    port = free_port_block(1)
    command = [str(Path(sys.executable).parent / "dagster"), *container["command"][1:]]
    command = [*command[: command.index("-h")], "-h", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "PLATFORM_CONFIG": str(config), "PLATFORM_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            deadline = time.monotonic() + 120
            while True:
                try:
                    answer = check(health_pb2.HealthCheckRequest(service=probe["service"]), timeout=5)
                    break
                except grpc.RpcError:
                    assert process.poll() is None and time.monotonic() < deadline, "the code server did not start"
                    time.sleep(0.5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as unknown:  # a misspelt service would keep the pod unready
                check(health_pb2.HealthCheckRequest(service="Dagster"), timeout=5)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_launchers_role_allows_every_call_dagster_k8s_makes() -> None:
    """Every Kubernetes API call of dagster-k8s's client (what K8sRunLauncher launches, monitors and terminates
    runs with), read from the installed library, against the rendered Role: the fake enforces no RBAC, a real
    API server answers 403, which run monitoring turns into a failed run."""
    import inspect
    import re

    import dagster_k8s.client

    source = Path(inspect.getsourcefile(dagster_k8s.client) or "").read_text()
    calls = set(re.findall(r"(batch|core)_api\.(create|delete|list|read|patch|replace)_namespaced_([a-z_]+)", source))
    assert len(calls) >= 6, calls  # the library still calls the API this way
    verbs = {"read": "get", "replace": "update"}
    # read_namespaced_job_status -> batch jobs/status get; list_namespaced_event -> core events list
    needed = {
        ("batch" if api == "batch" else "", kind.replace("_", "s/", 1) if "_" in kind else f"{kind}s", verbs.get(v, v))
        for api, v, kind in calls
    }
    role = next(o for o in render_dagster(seed_config()) if o["kind"] == "Role")
    rules = role["rules"]
    allowed = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert needed <= allowed, sorted(needed - allowed)


def _run_monitoring_spares_the_workstations_runs(home: Path) -> None:
    """What the daemon's run monitoring and the UI's Terminate ask the launcher: the run launched here has its
    Job; runs executed in process (platformctl on the workstation, tagged or not) have none, are not called dead
    while they write events, are failed once silent too long, and are not "terminated" from the cluster."""
    from platform_core.orchestrator import cluster_launcher
    from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG

    @dg.asset
    def elsewhere() -> None:
        return None

    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, cluster_launcher.PlatformRunLauncher)
        [launched] = instance.get_runs()
        launched_health = launcher.check_run_worker_health(launched)
        assert launched_health.status.value == "RUNNING", launched_health.msg
        tagged = dg.materialize([elsewhere], instance=instance, tags={WORKSTATION_RUN_TAG: "laptop"}).dagster_run
        untagged = dg.materialize([elsewhere], instance=instance).dagster_run
        health = launcher.check_run_worker_health(tagged)
        assert (health.status.value, health.msg) == ("RUNNING", "executed by platformctl on laptop")
        assert launcher.check_run_worker_health(untagged).msg == "executed outside the cluster"
        assert not launcher.terminate(tagged.run_id)  # nothing in the cluster to stop: it says where it runs
        messages = [e.message for e in instance.all_logs(tagged.run_id) if e.message]
        assert (
            "[PlatformRunLauncher] not terminated: executed by platformctl on laptop, it is stopped there (Ctrl-C)"
            in messages
        )
        cluster_launcher.SILENT_RUN_SECONDS = -1  # as if its process had been killed an hour ago
        try:
            assert launcher.check_run_worker_health(untagged).status.value == "FAILED"
        finally:
            cluster_launcher.SILENT_RUN_SECONDS = 3600


def test_the_in_cluster_schedule_and_freshness_leave_the_host_to_the_workstation(tmp_path: Path) -> None:
    """The daemon in the cluster runs `platform_health`; its pods have no way to the host, so the job leaves the
    host-level assets out and no freshness window waits on them there (the workstation's `make up` does them)."""
    from platform_assets.definitions import build_definitions
    from platform_core.cluster.resource import HOST_ASSETS

    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(platform_doc(tmp_path, tmp_path / "bundle")))
    defs = build_definitions(config)
    job = defs.resolve_job_def("platform_up")
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected and not selected & set(HOST_ASSETS) and {"metallb", "gitops", "postgres"} <= selected
    policies = {spec.key.to_user_string(): spec.freshness_policy for spec in defs.resolve_all_asset_specs()}
    assert all(policies[name] is None for name in HOST_ASSETS) and policies["gitops"] is not None

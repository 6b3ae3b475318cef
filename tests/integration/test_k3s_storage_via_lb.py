"""The k3s target's storage assets and function checks against real services reached the way the cluster's
are: the session's real SeaweedFS stands where MetalLB's address for S3 would point (k3s.exposure puts S3 on the
LAN), and its real Postgres and MLflow stand behind the pods of their ClusterIP Services, reached through the
platform's port-forward (the real kubernetes client's WebSocket port-forward, against the API fake).

In the cluster, `postgres`/`seaweedfs`/`mlflow_server` record `<state>/endpoints.json` once Argo CD has them
Healthy, and the cluster's Secrets carry the credentials generated in the state directory. Here both are given:
the endpoints are what those assets record and the credentials are the stack's own, so the k3s definitions'
databases, roles, buckets and checks (an S3 put/get per identity, SQL per role, an MLflow artifact round trip) run
for real through the same address lookup the cluster uses, and `platformctl plan` reads through it too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml

from platform_assets.definitions import build_definitions
from platform_assets.defs.storage.assets import postgres_accepts_password_login, s3_auth_enforced
from platform_assets.defs.tracking.assets import mlflow_auth_enforced, mlflow_round_trip
from platform_core.cluster.kube import KubeClient
from platform_core.cluster.port_forward import close_all
from platform_core.cluster.render_argocd import platform_namespace
from platform_core.cluster.render_ml import render_mlflow
from platform_core.cluster.render_storage import POSTGRES_PORT, render_postgres
from platform_core.config import load_config
from platform_core.orchestrator.bootstrap import bootstrap_instance
from platform_core.orchestrator.instance import instance_file, open_instance
from platform_core.results import NO_CHANGE
from platform_core.runs import run_report
from platform_core.services import mlflow_auth
from platform_core.state import StateDir, load_platform
from platformctl.plan import plan
from tests.integration.conftest import Stack
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.scenario_k3s import platform_doc

pytestmark = pytest.mark.integration
SECTIONS = {"run_storage", "event_log_storage", "schedule_storage"}  # dagster.yaml's, when it names Postgres


@pytest.fixture(scope="module")
def k3s_config(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("k3s-lb")
    local = yaml.safe_load(stack.config_path.read_text())
    doc = {**platform_doc(tmp, tmp / "bundle"), **{k: local[k] for k in ("services", "buckets", "databases", "mlflow")}}
    path = tmp / "platform.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = tmp / "state"
    (state / "secrets").mkdir(parents=True)
    shutil.copy(Path(local["state_dir"]) / "secrets" / "credentials.json", state / "secrets" / "credentials.json")
    services = local["services"]
    with FakeApiServer(repo_root=tmp / "repo") as fake:
        fake.write_kubeconfig(state / "kubeconfig")
        # Postgres and MLflow as Argo CD deploys them (ClusterIP); the stack's processes answer behind their pods
        kube = KubeClient.from_kubeconfig(state / "kubeconfig")
        cfg = load_config(path)
        kube.apply([platform_namespace(cfg), *render_postgres(cfg), *render_mlflow(cfg)])
        kube.wait_available(cfg.k3s.namespace, ["postgres", "mlflow"], timeout=10)
        ns, mlflow_port = cfg.k3s.namespace, services["mlflow"]["port"]
        fake.port_forwards[(ns, "postgres", POSTGRES_PORT)] = ("127.0.0.1", services["postgres"]["port"])
        fake.port_forwards[(ns, "mlflow", mlflow_port)] = ("127.0.0.1", mlflow_port)
        recorded = {
            "seaweedfs": {"host": "127.0.0.1", "port": services["seaweedfs"]["s3_port"]},
            "postgres": {"service": "postgres", "namespace": cfg.k3s.namespace, "port": POSTGRES_PORT},
            "mlflow_server": {"service": "mlflow", "namespace": cfg.k3s.namespace, "port": services["mlflow"]["port"]},
        }
        (state / "endpoints.json").write_text(json.dumps(recorded))
        yield path
        close_all()  # the forwards this module's runs opened, before their API server goes
        # every SQL and MLflow request above went through the port-forward to those pods
        assert {(ns, pod.rsplit("-", 2)[0], port) for ns, pod, port in fake.forwarded} == {
            (cfg.k3s.namespace, "postgres", POSTGRES_PORT),
            (cfg.k3s.namespace, "mlflow", services["mlflow"]["port"]),
        }


def test_databases_buckets_and_their_function_checks_run_through_the_recorded_addresses(
    stack: Stack, k3s_config: Path
) -> None:
    defs = build_definitions(k3s_config)
    cfg, _ = load_platform(k3s_config)
    storage = [dg.AssetKey("postgres_databases"), *(dg.AssetKey(["buckets", b.name]) for b in cfg.buckets)]
    # the server assets are the cluster's (Argo CD Applications); their function checks run here too
    server_checks = dg.AssetSelection.checks(
        mlflow_round_trip, mlflow_auth_enforced, s3_auth_enforced, postgres_accepts_password_login
    )
    selection = dg.AssetSelection.assets(*storage) | server_checks
    job = dg.define_asset_job("storage_via_lb", selection=selection)
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = merged.resolve_job_def("storage_via_lb").execute_in_process(instance=stack.instance, raise_on_error=False)
    report = run_report(stack.instance, result.run_id)
    assert report.status == "SUCCESS", report.failures
    assert set(report.changes.values()) == {NO_CHANGE}  # the stack made them already: same names, same owners
    assert report.changes.keys() == {key.to_user_string() for key in storage}
    checked = {name.split(":")[1] for name in report.checks}
    assert {"roles_query_their_databases", "roles_least_privilege", "s3_round_trip"} <= checked
    assert {
        "s3_auth_enforced",
        "mlflow_round_trip",
        "mlflow_auth_enforced",
        "postgres_accepts_password_login",
    } <= checked
    assert report.failed_checks == []


def test_plan_reads_storage_through_the_recorded_addresses(k3s_config: Path) -> None:
    cfg, state = load_platform(k3s_config)
    wanted = ["postgres_databases", *(f"buckets/{b.name}" for b in cfg.buckets)]
    lines = plan(cfg, state, k3s_config, wanted)
    assert lines == [f"{asset}: {NO_CHANGE}" for asset in [*wanted[1:], wanted[0]]]


def test_the_init_container_claims_the_models_before_the_server_answers_anyone(stack: Stack) -> None:
    """The k3s MLflow pod's init container (its command and its env names, as rendered) on the real store: a model
    it makes is the writer's, so the reader (any signed-in non-admin) cannot change it."""
    mlflow = stack.resource("mlflow_resource")
    cfg = mlflow.cfg
    [init] = next(o for o in render_mlflow(cfg) if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert init["command"][:3] == ["python", "-m", "platform_core.services.mlflow_auth"]
    plain = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    assert plain[mlflow_auth.CLAIM_MODELS_ENV] == f"{cfg.ml.model_name},{mlflow_auth.CHECK_MODEL}"
    model = "claimed-by-init"
    credentials = mlflow.state.credentials
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(mlflow.state.etc / mlflow_auth.INI_NAME),  # the local twin of the ConfigMap
        "PGPASSWORD": credentials.postgres_password(mlflow.backend_role),
        mlflow_auth.WRITER_PASSWORD_ENV: mlflow.writer.password,
        mlflow_auth.READER_PASSWORD_ENV: mlflow.reader.password,
        mlflow_auth.CLAIM_MODELS_ENV: f"{plain[mlflow_auth.CLAIM_MODELS_ENV]},{model}",
    }
    api = f"{mlflow.url}/api/2.0/mlflow"
    try:
        run = subprocess.run([sys.executable, *init["command"][1:]], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == [f"registered model {model} created with no owner (READ to non-admins)"]
        got = requests.get(f"{api}/registered-models/get", params={"name": model}, auth=mlflow.reader.auth, timeout=10)
        assert got.status_code == 200
        update = {"name": model, "description": "mine now"}
        denied = requests.patch(f"{api}/registered-models/update", json=update, auth=mlflow.reader.auth, timeout=10)
        assert denied.status_code == 403
        again = subprocess.run([sys.executable, *init["command"][1:]], env=env, capture_output=True, text=True)
        assert again.stdout.strip() == "MLflow users and models: no change", again.stderr
    finally:
        requests.delete(f"{api}/registered-models/delete", json={"name": model}, auth=mlflow.writer.auth, timeout=10)


def test_the_workstation_records_into_the_in_cluster_instance_once_dagster_runs_there(
    k3s_config: Path, tmp_path: Path
) -> None:
    """Before the `dagster` asset deployed Dagster in the cluster, the workstation's runs go to sqlite in its state
    directory; once its address is recorded, the bootstrap every `platformctl` command runs copies them into the
    cluster's Postgres (here the stack's, behind the fake's port-forward) and points dagster.yaml there."""
    cfg, cluster_state = load_platform(k3s_config)
    state = StateDir(tmp_path / "workstation").ensure()
    for name in ("secrets/credentials.json", "kubeconfig", "endpoints.json"):
        shutil.copy(cluster_state.root / name, state.root / name)
    assert bootstrap_instance(cfg, state, k3s_config, restarts_orchestrator=False) == []
    assert not SECTIONS & set(yaml.safe_load(instance_file(state).read_text()))  # sqlite, in the state directory

    @dg.asset(name="before_dagster_ran_in_the_cluster")
    def before() -> None:
        return None

    with open_instance(cfg, state) as local:
        run_id = dg.materialize([before], instance=local).run_id

    endpoints = json.loads((state.root / "endpoints.json").read_text())
    endpoints["dagster"] = {"service": "dagster", "namespace": cfg.k3s.namespace, "port": 3000}  # as the asset does
    (state.root / "endpoints.json").write_text(json.dumps(endpoints))
    [line] = bootstrap_instance(cfg, state, k3s_config, restarts_orchestrator=False)
    assert line.startswith("instance moved from sqlite to postgres: 1 runs with"), line
    written = yaml.safe_load(instance_file(state).read_text())
    storage, *others = (written[section]["config"]["postgres_db"] for section in sorted(SECTIONS))
    assert others == [storage, storage]  # runs, events and schedules in the one database
    # where the port-forward answers is known only in the process that opens it; the password never in the file
    assert storage["hostname"] == {"env": "DAGSTER_PG_HOST"} and storage["port"] == {"env": "DAGSTER_PG_PORT"}
    assert storage["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    with open_instance(cfg, state) as cluster:
        assert cluster.get_run_by_id(run_id) is not None
    assert bootstrap_instance(cfg, state, k3s_config, restarts_orchestrator=False) == []  # once

    # the cluster's Postgres stops answering (a cluster being rebuilt): the command records here, then copies
    (state.root / "endpoints.json").write_text(json.dumps({**endpoints, "postgres": {"host": "127.0.0.1", "port": 9}}))
    [line] = bootstrap_instance(cfg, state, k3s_config, restarts_orchestrator=False)
    assert line.startswith("instance: the cluster's Postgres does not answer (") and "copied into" in line, line
    assert not SECTIONS & set(yaml.safe_load(instance_file(state).read_text()))
    with open_instance(cfg, state) as local:
        meanwhile = dg.materialize([before], instance=local).run_id
        # and a command killed mid-run: its run was left STARTED
        killed = local.add_run(dg.DagsterRun(job_name="killed_midway", status=dg.DagsterRunStatus.STARTED)).run_id
    (state.root / "endpoints.json").write_text(json.dumps(endpoints))
    [line] = bootstrap_instance(cfg, state, k3s_config, restarts_orchestrator=False)
    assert line.startswith("instance moved from sqlite to postgres: 2 runs with"), line
    with open_instance(cfg, state) as cluster:
        assert cluster.get_run_by_id(meanwhile) is not None and cluster.get_run_by_id(run_id) is not None
        dead = cluster.get_run_by_id(killed)  # failed on arrival: STARTED, it would hold a run-queue slot for good
        assert dead is not None and dead.status == dg.DagsterRunStatus.FAILURE

"""The k3s target's storage assets and function checks against real services at their recorded LoadBalancer
addresses: the session's real Postgres, SeaweedFS and MLflow stand where MetalLB's addresses would point.

In the cluster, `postgres`/`seaweedfs`/`mlflow_server` record `<state>/endpoints.json` once Argo CD has them
Healthy, and the cluster's Secrets carry the credentials generated in the state directory. Here both are given:
the endpoints name the stack's real ports and the credentials are the stack's own, so the k3s definitions' databases,
roles, buckets and checks (an S3 put/get per identity, SQL per role, an MLflow artifact round trip) run for real
through the same address lookup the cluster uses, and `platformctl plan` reads through it too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from platform_assets.definitions import build_definitions
from platform_assets.defs.storage.assets import postgres_accepts_password_login, s3_auth_enforced
from platform_assets.defs.tracking.assets import mlflow_auth_enforced, mlflow_round_trip
from platform_core.results import NO_CHANGE
from platform_core.runs import run_report
from platform_core.state import load_platform
from platformctl.plan import plan
from tests.integration.conftest import Stack
from tests.k8s.scenario_k3s import platform_doc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def k3s_config(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("k3s-lb")
    local = yaml.safe_load(stack.config_path.read_text())
    doc = {**platform_doc(tmp, tmp / "bundle"), **{k: local[k] for k in ("services", "buckets", "databases", "mlflow")}}
    path = tmp / "platform.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = tmp / "state"
    (state / "secrets").mkdir(parents=True)
    shutil.copy(Path(local["state_dir"]) / "secrets" / "credentials.json", state / "secrets" / "credentials.json")
    services = local["services"]
    endpoints = {
        "postgres": services["postgres"]["port"],
        "seaweedfs": services["seaweedfs"]["s3_port"],
        "mlflow_server": services["mlflow"]["port"],
    }
    recorded = {asset: {"host": "127.0.0.1", "port": port} for asset, port in endpoints.items()}
    (state / "endpoints.json").write_text(json.dumps(recorded))
    return path


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

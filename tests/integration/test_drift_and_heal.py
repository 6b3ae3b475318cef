"""Killing a service: its checks fail with a clear message, the sensors alert once, and the next
materialization heals it without losing a row, an object or an MLflow run."""

from __future__ import annotations

import os
import signal
import time
import uuid

import dagster as dg
import pytest
import requests

from platform_core.services.seaweedfs import ADMIN

pytestmark = pytest.mark.integration


def _writer(stack) -> tuple[str, str]:
    """MLflow's writer, as the platform's runs act (anonymous requests get 401)."""
    return stack.resource("mlflow_resource").writer.auth


# service -> (resource key, asset whose checks must fail, words the failure names, an asset downstream of it)
KILLABLE = {
    "postgres": ("postgres_resource", "postgres", "connection", "mlflow_server"),
    "seaweedfs": ("seaweedfs_resource", "seaweedfs", "connect", "buckets/datasets"),
    "mlflow": ("mlflow_resource", "mlflow_server", "connect", "trained_model"),  # across code locations
}


def _kill(stack, service: str) -> int:
    resource = stack.resource(KILLABLE[service][0])
    pid = resource.supervisor.status(service).pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the service's own process group, recorded by the supervisor
    deadline = time.monotonic() + 10
    while resource.supervisor.status(service).running and time.monotonic() < deadline:
        time.sleep(0.1)
    return pid


def _seed_data(stack) -> dict[str, str]:
    """A row, an object and an MLflow run that must survive a crash and a heal."""
    token = uuid.uuid4().hex
    pg = stack.resource("postgres_resource")
    pg.query("ml", "mldata", "create table if not exists survivors(token text)")
    pg.query("ml", "mldata", "insert into survivors values (%s)", (token,))
    stack.resource("seaweedfs_resource").client("ml").put_object(
        Bucket="datasets", Key=f"survivors/{token}", Body=token.encode()
    )
    mlflow_url = stack.resource("mlflow_resource").url
    experiment = requests.post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/create", json={"name": f"it-{token}"}, auth=_writer(stack), timeout=10
    ).json()["experiment_id"]
    run = requests.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=_writer(stack), timeout=10
    ).json()["run"]["info"]["run_id"]
    return {"token": token, "run_id": run}


def _assert_data_survived(stack, seeded: dict[str, str]) -> None:
    token = seeded["token"]
    pg = stack.resource("postgres_resource")
    assert pg.query("ml", "mldata", "select count(*) from survivors where token = %s", (token,)) == [(1,)]
    body = stack.resource("seaweedfs_resource").client("ml").get_object(Bucket="datasets", Key=f"survivors/{token}")
    assert body["Body"].read() == token.encode()
    run = requests.get(
        f"{stack.resource('mlflow_resource').url}/api/2.0/mlflow/runs/get",
        params={"run_id": seeded["run_id"]},
        auth=_writer(stack),
        timeout=10,
    )
    assert run.status_code == 200 and run.json()["run"]["info"]["run_id"] == seeded["run_id"]


@pytest.fixture(scope="module")
def ml_lineage_published(stack) -> None:
    """The ML location's lineage, as its code server publishes it on load: the alert names downstream assets
    across code locations (trained_model below mlflow_server) only from it, whatever tests ran before."""
    from ml_assets.definitions import build_definitions as build_ml_definitions

    build_ml_definitions(stack.config_path)


@pytest.mark.parametrize("service", list(KILLABLE))
@pytest.mark.usefixtures("ml_lineage_published")
def test_killed_service_fails_checks_alerts_once_and_heals(stack, service: str) -> None:
    _, asset, words, below = KILLABLE[service]
    stack.drift_tick()  # settle: whatever earlier tests left is already known
    stack.checks_tick()
    seeded = _seed_data(stack)
    alerts_before = len(stack.alerts())

    pid = _kill(stack, service)
    checks = stack.run_checks([dg.AssetKey(asset)])
    assert checks.failed_checks, f"no check of {asset} failed with {service} (pid {pid}) dead"
    descriptions = _check_descriptions(stack, checks.run_id)
    assert any(words in text.lower() for text in descriptions.values()), descriptions

    summary = stack.drift_tick()
    assert f"{service} is not running" in summary
    fired = len(stack.alerts())
    assert f"{service} is not running" in stack.drift_tick()
    assert len(stack.alerts()) == fired, "a finding that persists must not alert again"
    stack.checks_tick()
    new = stack.alerts()[alerts_before:]
    # One incident, one alert: the failed checks are folded into the service's alert, which names what it affects.
    assert [(a["status"], a["key"]) for a in new] == [("firing", f"service_down:{service}")]
    assert "; downstream: " in new[0]["message"] and below in new[0]["message"]

    healed = stack.materialize()
    assert healed.status == "SUCCESS" and healed.failed_checks == []
    assert healed.changes[asset] == "started (was not running)"
    _assert_data_survived(stack, seeded)

    stack.drift_tick()
    stack.checks_tick()
    after = stack.alerts()[alerts_before:]
    assert [(a["status"], a["key"]) for a in after] == [
        ("firing", f"service_down:{service}"),
        ("resolved", f"service_down:{service}"),
    ]
    assert after[1]["duration_seconds"] >= 0  # the inhibited check failure cleared silently: it never fired


def _check_descriptions(stack, run_id: str) -> dict[str, str]:
    records = stack.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return {e.check_name: e.description or "" for e in evaluations if not e.passed}


def test_orphan_bucket_fires_then_resolves(stack) -> None:
    stack.drift_tick()
    s3 = stack.resource("seaweedfs_resource").client(ADMIN)
    s3.create_bucket(Bucket="stray-bucket")
    try:
        assert "orphan" in stack.drift_tick()
        assert "stray-bucket" in stack.alerts()[-1]["message"]
        assert stack.alerts()[-1]["status"] == "firing"
    finally:
        s3.delete_bucket(Bucket="stray-bucket")
    stack.drift_tick()
    last = stack.alerts()[-1]
    assert (last["key"], last["status"]) == ("orphan_bucket:stray-bucket", "resolved")


def test_missing_role_and_orphan_role_are_found_and_healed(stack) -> None:
    pg = stack.resource("postgres_resource")
    stack.drift_tick()
    pg.query("postgres", "postgres", "create role stray_role login")
    try:
        assert "role stray_role exists" in stack.drift_tick()
        assert any(a["key"] == "orphan_role:stray_role" for a in stack.alerts())
    finally:
        pg.query("postgres", "postgres", "drop role stray_role")
    pg.query("postgres", "postgres", "alter role ml password 'changed-out-of-band'")
    report = stack.materialize()
    assert "reset password of role ml" in report.changes["postgres_databases"]
    assert report.failed_checks == []


def test_identities_file_edited_out_of_band_is_found_and_restored(stack) -> None:
    weed = stack.resource("seaweedfs_resource")
    stack.drift_tick()
    original = weed.identities_file.read_text()
    weed.identities_file.write_text(original.replace('"readonly"', '"intruder"'))
    assert "edited out of band" in stack.drift_tick()
    report = stack.materialize()
    assert report.changes["seaweedfs"].startswith("restarted (s3-identities.json edited out of band")
    assert weed.identities_file.read_text() == original
    assert report.failed_checks == []
    assert "edited out of band" not in stack.drift_tick()

"""The README's main command, end to end, into a temporary state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.definitions import build_definitions as build_ml_definitions
from platform_assets.definitions import build_definitions as build_platform_definitions
from platform_core.results import NO_CHANGE
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV
from tests.e2e.conftest import LEGACY_ASSET, command_runs, platformctl, stack_instance
from tests.stacks import REPO

pytestmark = pytest.mark.e2e


def _main_command(config: Path) -> subprocess.CompletedProcess[str]:
    """`make up`, as the README says, pointed at this test's platform.yaml."""
    env = {**os.environ, CONFIG_ENV: str(config), "PYTHON": sys.executable}
    env.pop(STATE_DIR_ENV, None)
    return subprocess.run(["make", "-C", str(REPO), "up"], env=env, capture_output=True, text=True, timeout=600)


def _all_keys(defs: dg.Definitions) -> tuple[set[str], set[str]]:
    graph = defs.resolve_asset_graph()
    assets = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    # checks of observable assets (prediction_log's last-update check) run from their own sensor, not from `up`
    checks = {
        f"{key.asset_key.to_user_string()}:{key.name}"
        for key in graph.asset_check_keys
        if graph.get(key.asset_key).is_materializable
    }
    return assets, checks


def test_main_command_brings_up_everything_then_changes_nothing(stack_config: Path) -> None:
    first = _main_command(stack_config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "The platform is up" in first.stdout
    # the instance's storage comes first; the sqlite history the state directory had is moved into it
    assert "==> instance storage: postgres started (was not running)" in first.stdout
    assert "instance moved from sqlite to postgres: 1 runs with" in first.stdout
    platform_assets, platform_checks = _all_keys(build_platform_definitions(stack_config))
    ml_assets, ml_checks = _all_keys(build_ml_definitions(stack_config))

    with stack_instance(stack_config) as instance:
        platform_run, ml_run, orchestrator_run = command_runs(instance, 3)
        legacy = instance.fetch_materializations(dg.AssetKey(LEGACY_ASSET), limit=1).records
    assert len(legacy) == 1, "the sqlite instance's history did not reach Postgres"
    assert platform_run.status == "SUCCESS" and platform_run.failed_checks == []
    assert platform_run.changes["postgres"] == NO_CHANGE  # started by the bootstrap, before any run
    assert set(platform_run.changes) | set(orchestrator_run.changes) == platform_assets
    assert set(platform_run.checks) | set(orchestrator_run.checks) == platform_checks
    assert set(orchestrator_run.changes.values()) == {"started (was not running)"}
    assert orchestrator_run.status == "SUCCESS" and orchestrator_run.failed_checks == []
    assert ml_run.status == "SUCCESS" and ml_run.failed_checks == []
    assert set(ml_run.changes) == ml_assets and set(ml_run.checks) == ml_checks  # one run: batch, model, report
    assert "promoted to champion" in ml_run.changes["registered_model"]
    assert ml_run.changes["drift_report"] == "wrote drift/housing-price/day=0000/report.html"  # after the model

    second = _main_command(stack_config)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "instance storage" not in second.stdout and "moved from sqlite" not in second.stdout
    with stack_instance(stack_config) as instance:
        for run in command_runs(instance, 3):
            assert run.status == "SUCCESS" and run.failed_checks == []
            assert set(run.changes.values()) == {NO_CHANGE}, run.changes


def _state_files(state: Path) -> dict[str, int]:
    """Paths and mtimes the platform itself writes. Not what moves on its own: service data and logs, the
    Dagster home (the daemon's runs keep their compute logs there), the alerts the sensors append and the
    watchdog's round records."""
    moving = {"data", "logs", "dagster_home"}
    kept = [p for p in state.rglob("*") if p.is_file() and p.relative_to(state).parts[0] not in moving]
    return {
        str(p.relative_to(state)): p.stat().st_mtime_ns
        for p in kept
        if not p.name.startswith("watchdog-") and p.suffix != ".jsonl"
    }


def test_plan_after_up_changes_nothing_and_says_what_the_next_batches_would_do(stack_config: Path) -> None:
    state = stack_config.parent / "state"
    before = _state_files(state)
    planned = platformctl(stack_config, "plan")
    assert planned.returncode == 2, planned.stderr[-3000:]  # changes to make: the batches not fetched yet
    lines = dict(line.split(": ", 1) for line in planned.stdout.splitlines())
    batches = yaml.safe_load(stack_config.read_text())["ml"]["batches"]
    later = ", ".join(map(str, range(1, batches)))
    assert lines.pop("raw_batches") == f"would fetch days {later}"  # `up` ingests day 0 only
    assert lines.pop("validated_batches") == f"would validate days {later}"
    assert lines.pop("prediction_log").startswith("observed only")
    assert lines.pop("host").startswith("records facts only")
    assert {asset: change for asset, change in lines.items() if change != NO_CHANGE} == {}
    assert {"postgres", "buckets/datasets", "postgres_databases", "trained_model", "deployed_model"} <= set(lines)
    assert _state_files(state) == before  # not even a credential or a cache file

    selected = platformctl(stack_config, "plan", "--select", "deployed_model,nonsense")
    assert selected.returncode == 1 and selected.stdout == ""
    assert "platformctl plan: --select: no asset named nonsense (known: host, " in selected.stderr


def _served_and_champion(config: Path) -> tuple[str, str, float]:
    from ml_assets.model.tracking import ModelTracker
    from ml_assets.resources import build_ml_resources
    from platform_core.state import load_platform

    cfg, state = load_platform(config)
    resources = build_ml_resources(cfg, state, config)
    served = resources["inference_resource"].model_info()
    champion = ModelTracker.of(resources["mlflow_resource"]).champion()
    price = resources["inference_resource"].predict(LISTING)
    return str(served["version"]), champion.version, price


LISTING = {
    "bed": 3,
    "bath": 2,
    "acre_lot": 0.25,
    "house_size": 1600,
    "brokered_by": 16000.0,
    "status": "sold",
    "city": "Ames",
    "state": "Iowa",
    "zip_code": 50010.0,
    "prev_sold_date": "2009-06-01",
}


def test_a_better_batch_retrains_promotes_and_deploys(stack_config: Path) -> None:
    before_served, before_champion, _ = _served_and_champion(stack_config)
    fed = platformctl(stack_config, "ingest", "1")
    assert fed.returncode == 0, fed.stdout[-3000:] + fed.stderr[-3000:]
    with stack_instance(stack_config) as instance:
        model_run = command_runs(instance, 1)[0]
    # Twice the data scores better on the same holdout rows (deterministic: same data, same seed).
    assert "promoted to champion" in model_run.changes["registered_model"], model_run.changes
    served, champion, _ = _served_and_champion(stack_config)
    assert served == champion != before_champion == before_served
    assert model_run.changes["deployed_model"] == f"reloaded v{before_served} -> v{champion}"


def test_poisoned_batch_is_refused_and_the_champion_and_api_stay(stack_config: Path) -> None:
    from ml_assets.data.service import DataApiResource
    from platform_core.state import load_platform

    _, state = load_platform(stack_config)
    data_api = DataApiResource(config_path=str(stack_config), state_dir=str(state.root))
    before = _served_and_champion(stack_config)
    data_api.set_drift("nulls", 3.0)
    try:
        fed = platformctl(stack_config, "ingest", "2")
    finally:
        data_api.set_drift("none")
    assert fed.returncode != 0
    assert "raw_batch_is_valid" in fed.stdout and "FAILED" in fed.stdout
    log = (state.logs / "ingest-day2-1-ml_assets.log").read_text()
    assert "house_size" in log, "the refusal must name the column"
    assert _served_and_champion(stack_config) == before


def test_killing_the_inference_service_is_reported_by_the_ml_drift_sensor(stack_config: Path) -> None:
    defs = build_ml_definitions(stack_config)
    inference = defs.resources["inference_resource"]
    pid = inference.supervisor.status("inference").pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    sensor = defs.resolve_sensor_def("ml_services_drift_sensor")
    with stack_instance(stack_config) as instance:
        context = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
        verdict = sensor(context)
    assert "inference is down" in verdict.skip_message
    assert any(
        a["key"] == "service_down:inference" and a["subject"] == "inference_service"
        for a in defs.resources["alerts"].history()
    )


def _inventory(config: Path) -> dict[str, object]:
    """What a credential change must not lose: S3 objects per bucket, MLflow runs and versions, the champion,
    and the rows of the tracking database."""
    from mlflow import MlflowClient

    from ml_assets.resources import build_ml_resources
    from platform_core.services.postgres import SUPERUSER
    from platform_core.services.seaweedfs import ADMIN
    from platform_core.state import load_platform

    cfg, state = load_platform(config)
    resources = build_ml_resources(cfg, state, config)
    s3 = resources["seaweedfs_resource"].client(ADMIN)
    pages = s3.get_paginator("list_objects_v2")
    objects = {b.name: sum(p.get("KeyCount", 0) for p in pages.paginate(Bucket=b.name)) for b in cfg.buckets}
    mlflow = MlflowClient(resources["mlflow_resource"].url)
    name = cfg.ml.model_name
    rows = resources["postgres_resource"].query(SUPERUSER, cfg.mlflow.database, "select count(*) from runs")
    with resources["mlflow_resource"].reader.acting():  # MLflow's read-only identity sees everything
        experiments = [e.experiment_id for e in mlflow.search_experiments()]
        return {
            "objects": objects,
            "runs": len(mlflow.search_runs(experiments, max_results=5000)),
            "versions": sorted(v.version for v in mlflow.search_model_versions(f"name='{name}'")),
            "champion": mlflow.get_model_version_by_alias(name, "champion").version,
            "run_rows": rows[0][0],
        }


def _pids(config: Path) -> dict[str, int | None]:
    from platform_core.supervisor import Supervisor

    state = config.parent / "state"
    supervisor = Supervisor(state / "run", state / "logs")
    return {name: supervisor.status(name).pid for name in ("postgres", "seaweedfs", "mlflow", "inference")}


def test_a_lost_or_stale_credentials_file_is_refused_and_rotation_heals_with_nothing_lost(stack_config: Path) -> None:
    import json

    healed = platformctl(stack_config, "up")  # the tests above left postgres and inference killed
    assert healed.returncode == 0, healed.stdout[-3000:] + healed.stderr[-3000:]
    secrets = stack_config.parent / "state" / "secrets" / "credentials.json"
    before, pids = _inventory(stack_config), _pids(stack_config)
    original = json.loads(secrets.read_text())
    secrets.unlink()  # a careless clean-up
    lost = platformctl(stack_config, "up")
    assert lost.returncode == 2 and lost.stdout == "", lost.stdout[-2000:]
    (line,) = lost.stderr.splitlines()
    assert "credentials.json is missing: nothing was started or changed" in line and "rotate-credentials" in line
    stale = {**original, "postgres": {**original["postgres"], "postgres": "an-old-backup"}}
    secrets.write_text(json.dumps(stale))  # a restore from an old backup
    refused = platformctl(stack_config, "plan")
    assert refused.returncode == 1 and "does not hold the credentials" in refused.stderr
    assert "postgres/postgres" in refused.stderr and "an-old-backup" not in refused.stderr
    assert _pids(stack_config) == pids and secrets.read_text() == json.dumps(stale)  # nothing touched
    stopped = platformctl(stack_config, "down")  # stopping needs no credential: it reads only the pid records
    assert stopped.returncode == 0 and "postgres: stopped" in stopped.stdout, stopped.stderr
    assert secrets.read_text() == json.dumps(stale)

    rotated = platformctl(stack_config, "rotate-credentials")
    assert rotated.returncode == 0, rotated.stdout[-3000:] + rotated.stderr[-3000:]
    assert "new password for postgres, set through single-user mode" in rotated.stdout
    fresh = json.loads(secrets.read_text())
    assert set(fresh) == set(original) and all(
        fresh[section][name] != value for section, names in original.items() for name, value in names.items()
    )
    after = _inventory(stack_config)
    assert {k: after[k] for k in ("runs", "versions", "champion")} == {
        k: before[k] for k in ("runs", "versions", "champion")
    }
    # nothing lost; the restarts add only what the platform writes itself (the inference service flushes its
    # prediction log when it stops, the MLflow round-trip check records a deleted run)
    assert all(after["objects"][bucket] >= count for bucket, count in before["objects"].items())
    assert after["run_rows"] >= before["run_rows"]
    assert platformctl(stack_config, "up").returncode == 0  # and the rotated stack is steady again

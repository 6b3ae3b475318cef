"""The README's main command, end to end, into a temporary state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.definitions import build_definitions as build_ml_definitions
from platform_assets.definitions import build_definitions as build_platform_definitions
from platform_assets.defs.monitoring.infra_drift import infra_drift_sensor
from platform_core.results import NO_CHANGE
from platform_core.runs import RunReport, run_report
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV
from tests.stacks import REPO, write_stack_config
from tests.webhook import Receiver

pytestmark = pytest.mark.e2e
WEBHOOK_PASSWORD = "Hook-Passw0rd-e2e"
WEBHOOK_TOKEN = "xoxb4e2eToken0123456789abcDEF"


def _main_command(config: Path) -> subprocess.CompletedProcess[str]:
    """`make up`, as the README says, pointed at this test's platform.yaml."""
    env = {**os.environ, CONFIG_ENV: str(config), "PYTHON": sys.executable}
    env.pop(STATE_DIR_ENV, None)
    return subprocess.run(["make", "-C", str(REPO), "up"], env=env, capture_output=True, text=True, timeout=600)


def _runs_by_job(instance: dg.DagsterInstance, count: int) -> list[RunReport]:
    return [run_report(instance, run.run_id) for run in reversed(instance.get_runs(limit=count))]


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


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The webhook the stack's alerts are posted to."""
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def stack_config(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver):
    # A webhook URL that is itself a credential (userinfo and a token), as Slack's and most receivers' are.
    hook = receiver.url.replace("http://", f"http://alerts:{WEBHOOK_PASSWORD}@") + f"?token={WEBHOOK_TOKEN}"
    alerts = {"webhook_url": hook, "log_file": "alerts.jsonl", "retries": 1, "backoff_seconds": 0.1}
    config = write_stack_config(tmp_path_factory.mktemp("e2e"), alerts=alerts)
    yield config
    subprocess.run([sys.executable, "-m", "platformctl.cli", "--config", str(config), "down"], timeout=120, check=False)


def test_main_command_brings_up_everything_then_changes_nothing(stack_config: Path) -> None:
    first = _main_command(stack_config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "The platform is up" in first.stdout
    home = stack_config.parent / "state" / "dagster_home"
    platform_assets, platform_checks = _all_keys(build_platform_definitions(stack_config))
    ml_assets, ml_checks = _all_keys(build_ml_definitions(stack_config))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        platform_run, *ml_runs = _runs_by_job(instance, 4)
    assert platform_run.status == "SUCCESS" and platform_run.failed_checks == []
    assert set(platform_run.changes) == platform_assets and set(platform_run.checks) == platform_checks
    assert platform_run.changes["postgres"] == "started (was not running)"
    assert all(run.status == "SUCCESS" and run.failed_checks == [] for run in ml_runs)
    assert set().union(*(run.changes for run in ml_runs)) == ml_assets
    assert set().union(*(run.checks for run in ml_runs)) == ml_checks
    assert "promoted to champion" in ml_runs[1].changes["registered_model"]
    assert ml_runs[2].changes == {"drift_report": "wrote drift/housing-price/day=0000/report.html"}

    second = _main_command(stack_config)
    assert second.returncode == 0, second.stdout[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in _runs_by_job(instance, 4):
            assert run.status == "SUCCESS" and run.failed_checks == []
            assert set(run.changes.values()) == {NO_CHANGE}, run.changes


def _platformctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platformctl.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _state_files(state: Path) -> dict[str, int]:
    """Paths and mtimes the platform itself writes (service data and logs move on their own); in the Dagster
    instance only which files exist (reading its databases may touch them)."""
    kept = [p for p in state.rglob("*") if p.is_file() and p.relative_to(state).parts[0] not in {"data", "logs"}]
    return {str(p.relative_to(state)): 0 if "dagster_home" in p.parts else p.stat().st_mtime_ns for p in kept}


def test_plan_after_up_changes_nothing_and_says_what_the_next_batches_would_do(stack_config: Path) -> None:
    state = stack_config.parent / "state"
    before = _state_files(state)
    planned = _platformctl(stack_config, "plan")
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

    selected = _platformctl(stack_config, "plan", "--select", "deployed_model,nonsense")
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
    fed = _platformctl(stack_config, "ingest", "1")
    assert fed.returncode == 0, fed.stdout[-3000:] + fed.stderr[-3000:]
    home = stack_config.parent / "state" / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        model_run = _runs_by_job(instance, 1)[0]
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
        fed = _platformctl(stack_config, "ingest", "2")
    finally:
        data_api.set_drift("none")
    assert fed.returncode != 0
    assert "raw_batch_is_valid" in fed.stdout and "FAILED" in fed.stdout
    log = (state.logs / "ingest-day2-1-ml_assets.log").read_text()
    assert "house_size" in log, "the refusal must name the column"
    assert _served_and_champion(stack_config) == before


def _wait_for(what: str, found: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(2)
    raise AssertionError(f"no {what} within {timeout:.0f}s")


def test_under_the_daemon_injected_drift_gives_one_alert_and_one_retraining(
    stack_config: Path, receiver: Receiver
) -> None:
    """Issue 4's "done when", with the real dagster-daemon running the sensors as `make ui` does."""
    from ml_assets.data.service import DataApiResource
    from platform_core.state import load_platform
    from platformctl.cli import dagster_env

    _, state = load_platform(stack_config)
    env = {**dagster_env(state), CONFIG_ENV: str(stack_config), STATE_DIR_ENV: str(state.root)}
    data_api = DataApiResource(config_path=str(stack_config), state_dir=str(state.root))
    alerts = build_ml_definitions(stack_config).resources["alerts"]
    daemon_log = (state.logs / "daemon-e2e.log").open("w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        env=env, cwd=REPO, stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        data_api.set_drift("shift", 1.0)
        ingest = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "ml_assets.definitions",
             "--select", "group:ml_data or key:drift_report", "--partition", "3"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout[-2000:] + ingest.stderr[-2000:]
        fired = _wait_for(
            "drift alert",
            lambda: [a for a in alerts.history() if a["key"] == "data_drift:day=3" and a["status"] == "firing"],
            timeout=150,
        )
        assert len(fired) == 1 and "day 3" in fired[0]["title"]
        assert [b["key"] for b in receiver.bodies].count("data_drift:day=3") == 1
        home = str(state.dagster_home)

        def retrained() -> list[dg.DagsterRun]:
            with dg.DagsterInstance.from_config(home) as instance:
                runs = instance.get_runs(dg.RunsFilter(job_name="retrain_and_deploy"))
                return [r for r in runs if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]

        (run,) = _wait_for("finished retraining run", retrained, timeout=300)  # one: the cooldown holds others
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("mlops-platform/reason", "").startswith("data_drift:day=")
    finally:
        data_api.set_drift("none")
        os.killpg(daemon.pid, signal.SIGTERM)  # the daemon and the code servers it started, by our own PID
        daemon.wait(timeout=60)
        daemon_log.close()


def test_killing_a_service_is_reported_by_the_drift_sensor(stack_config: Path) -> None:
    defs = build_platform_definitions(stack_config)
    postgres = defs.resources["postgres_resource"]
    pid = postgres.supervisor.status("postgres").pid
    assert pid is not None, "the main command left postgres down"
    os.kill(pid, signal.SIGKILL)
    home = stack_config.parent / "state" / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        context = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
        verdict = infra_drift_sensor(context)
    assert "postgres is down" in verdict.skip_message
    alerts = defs.resources["alerts"].history()
    fired = [a for a in alerts if a["status"] == "firing" and a["source"] == "infra_drift_sensor"]
    assert [a["key"] for a in fired] == ["service_down:postgres"]
    assert "downstream: " in fired[0]["message"] and "mlflow_server" in fired[0]["message"]


def test_killing_the_inference_service_is_reported_by_the_ml_drift_sensor(stack_config: Path) -> None:
    defs = build_ml_definitions(stack_config)
    inference = defs.resources["inference_resource"]
    pid = inference.supervisor.status("inference").pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    home = stack_config.parent / "state" / "dagster_home"
    sensor = defs.resolve_sensor_def("ml_services_drift_sensor")
    with dg.DagsterInstance.from_config(str(home)) as instance:
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
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    rows = resources["postgres_resource"].query(SUPERUSER, cfg.mlflow.database, "select count(*) from runs")
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

    healed = _platformctl(stack_config, "up")  # the tests above left postgres and inference killed
    assert healed.returncode == 0, healed.stdout[-3000:] + healed.stderr[-3000:]
    secrets = stack_config.parent / "state" / "secrets" / "credentials.json"
    before, pids = _inventory(stack_config), _pids(stack_config)
    original = json.loads(secrets.read_text())
    secrets.unlink()  # a careless clean-up
    lost = _platformctl(stack_config, "up")
    assert lost.returncode == 2 and lost.stdout == "", lost.stdout[-2000:]
    (line,) = lost.stderr.splitlines()
    assert "credentials.json is missing: nothing was started or changed" in line and "rotate-credentials" in line
    stale = {**original, "postgres": {**original["postgres"], "postgres": "an-old-backup"}}
    secrets.write_text(json.dumps(stale))  # a restore from an old backup
    refused = _platformctl(stack_config, "plan")
    assert refused.returncode == 1 and "does not hold the credentials" in refused.stderr
    assert "postgres/postgres" in refused.stderr and "an-old-backup" not in refused.stderr
    assert _pids(stack_config) == pids and secrets.read_text() == json.dumps(stale)  # nothing touched
    stopped = _platformctl(stack_config, "down")  # stopping needs no credential: it reads only the pid records
    assert stopped.returncode == 0 and "postgres: stopped" in stopped.stdout, stopped.stderr
    assert secrets.read_text() == json.dumps(stale)

    rotated = _platformctl(stack_config, "rotate-credentials")
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
    assert _platformctl(stack_config, "up").returncode == 0  # and the rotated stack is steady again


def test_no_secret_reaches_a_log_an_alert_or_the_run_history(stack_config: Path, receiver: Receiver) -> None:
    """Last: after everything above (up, plan, batches, a refused batch, the daemon's drift alert, killed
    services), with one more alert whose delivery fails, so the failure is logged too."""
    import logging

    from platform_core.alerting.alerts import Alert
    from platform_core.state import load_platform
    from tests.secret_scan import generated_secrets, leaks, readable_places

    _, state = load_platform(stack_config)
    handler = logging.FileHandler(state.logs / "alerts-e2e.log")
    logging.getLogger("platform.alerts").addHandler(handler)
    receiver.always_status = 500
    try:
        alerts = build_platform_definitions(stack_config).resources["alerts"]
        assert (
            alerts.send(Alert("e2e:undelivered", "firing", "e2e", "delivery fails", "e2e", "host", time.time()))
            is False
        )
    finally:
        receiver.always_status = None
        logging.getLogger("platform.alerts").removeHandler(handler)
        handler.close()
    assert "did not accept alert e2e:undelivered" in (state.logs / "alerts-e2e.log").read_text()
    secrets = generated_secrets(state) | {WEBHOOK_PASSWORD, WEBHOOK_TOKEN}
    with dg.DagsterInstance.from_config(str(state.dagster_home)) as instance:
        places = readable_places(state, instance)
        for defs in (build_platform_definitions(stack_config), build_ml_definitions(stack_config)):
            for key in defs.resolve_asset_graph().get_all_asset_keys():
                records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=50).records
                places[f"metadata of {key.to_user_string()}"] = "".join(
                    str(r.asset_materialization.metadata) for r in records
                )
            places["resource config the UI shows"] = str({k: repr(v) for k, v in defs.resources.items()})
    assert len(places) > 10 and any("alerts.jsonl" in where for where in places)
    assert leaks(places, secrets) == []

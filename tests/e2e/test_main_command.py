"""The README's main command, end to end, into a temporary state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions as build_ml_definitions
from platform_assets.definitions import build_definitions as build_platform_definitions
from platform_assets.drift.sensors import infra_drift_sensor
from platform_assets.runs import RunReport, run_report
from platform_assets.services.results import NO_CHANGE
from platform_assets.settings import CONFIG_ENV, STATE_DIR_ENV
from tests.stacks import REPO, write_stack_config

pytestmark = pytest.mark.e2e


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
    checks = {f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys}
    return assets, checks


@pytest.fixture(scope="module")
def stack_config(tmp_path_factory: pytest.TempPathFactory):
    config = write_stack_config(tmp_path_factory.mktemp("e2e"))
    yield config
    subprocess.run(
        [sys.executable, "-m", "platform_assets.cli", "--config", str(config), "down"], timeout=120, check=False
    )


def test_main_command_brings_up_everything_then_changes_nothing(stack_config: Path) -> None:
    first = _main_command(stack_config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "The platform is up" in first.stdout
    home = stack_config.parent / "state" / "dagster_home"
    platform_defs = build_platform_definitions(stack_config)
    ml_defs = build_ml_definitions(stack_config)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        platform_run, ml_run = _runs_by_job(instance, 2)
        for run, defs in ((platform_run, platform_defs), (ml_run, ml_defs)):
            assets, checks = _all_keys(defs)
            assert run.status == "SUCCESS"
            assert set(run.changes) == assets
            assert set(run.checks) == checks and run.failed_checks == []
        assert platform_run.changes["postgres"] == "started (was not running)"

    second = _main_command(stack_config)
    assert second.returncode == 0, second.stdout[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = _runs_by_job(instance, 2)
        for run in runs:
            assert run.status == "SUCCESS" and run.failed_checks == []
            assert set(run.changes.values()) == {NO_CHANGE}, run.changes


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
    assert [a["key"] for a in alerts if a["status"] == "firing"] == ["service_down:postgres"]

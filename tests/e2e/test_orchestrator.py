"""Issue 12's "done when", on the e2e stack: after `make up` nobody keeps a terminal open, yet Dagster's daemon
(a supervised service) runs every sensor, the watchdog restarts what the daemon itself stands on, and a
`down`/`up` resumes the sensors where their cursors were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import psutil
import pytest

from ml_assets.definitions import build_definitions as build_ml_definitions
from platform_assets.definitions import build_definitions as build_platform_definitions
from platform_core.orchestrator.services import LOCATIONS, WATCHED_DAEMONS, DagsterResource
from platform_core.supervisor import Supervisor
from tests.e2e.conftest import platformctl, stack_instance, wait_for
from tests.stacks import REPO
from tests.webhook import Receiver

pytestmark = pytest.mark.e2e
SENSOR_INTERVAL = 30  # DRIFT_INTERVAL_SECONDS of every alerting sensor


def _dagster(config: Path) -> DagsterResource:
    return build_platform_definitions(config).resources["dagster_resource"]


def _firing(receiver: Receiver) -> Counter[str]:
    return Counter(body["key"] for body in receiver.bodies if body["status"] == "firing")


def test_the_orchestrator_runs_as_services_of_the_stack(stack_config: Path) -> None:
    dagster = _dagster(stack_config)
    supervisor = dagster.supervisor
    for name in ("dagster_code_platform", "dagster_code_ml", "dagster_webserver", "dagster_daemon", "watchdog"):
        assert supervisor.status(name).running, f"{name} is not running after make up"
    # both load the locations from the shared code servers: neither spawns servers of its own (the daemon would
    # spawn fresh ones every minute)
    for name in ("dagster_webserver", "dagster_daemon"):
        children = psutil.Process(supervisor.status(name).pid or 0).children(recursive=True)
        assert not [c.pid for c in children if "api" in c.cmdline() and "grpc" in c.cmdline()], name
    assert "grpc_server" in dagster.workspace_file.read_text()
    # no terminal holds them: each leads its own session, as every supervised service does
    assert all(os.getsid(supervisor.status(n).pid or 0) == supervisor.status(n).pid for n in ("dagster_daemon",))
    data = dagster.graphql()
    entries = {e["name"]: e["locationOrLoadError"]["__typename"] for e in data["workspaceOrError"]["locationEntries"]}
    assert entries == dict.fromkeys(LOCATIONS, "RepositoryLocation")
    assert dagster.daemon_healthy()
    status = platformctl(stack_config, "status")
    assert "dagster-daemon up (SENSOR heartbeat" in status.stdout, status.stdout
    assert platformctl(stack_config, "ui").stdout.strip() == f"Dagster UI: {dagster.url}"
    info = platformctl(stack_config, "dagster", "instance", "info")  # any dagster command, on this instance
    assert info.returncode == 0 and "run_monitoring" in info.stdout, info.stderr[-2000:]


def test_a_fresh_stack_raises_no_false_alarm(stack_config: Path, receiver: Receiver) -> None:
    """Every sensor has ticked at least twice since the daemon started (with the stack whole), and said nothing
    but what the tests before this one caused on purpose (a poisoned batch's failed check, a killed service, a
    lost and then a stale credentials file)."""
    dagster = _dagster(stack_config)
    started = dagster.supervisor.status("dagster_daemon").started_at or 0.0
    time.sleep(max(0.0, started + 2 * SENSOR_INTERVAL + 5 - time.time()))
    with stack_instance(stack_config) as instance:
        sensor_beat = instance.get_daemon_heartbeats()["SENSOR"]
    assert sensor_beat.errors in (None, []), sensor_beat.errors
    caused = ("check_failed:raw_batches", "check_failed:validated_batches", "service_down:inference")
    caused += ("credentials_mismatch",)
    unexpected = [key for key in _firing(receiver) if not key.startswith(caused)]
    assert unexpected == [], unexpected


def test_kill_9_of_postgres_alerts_within_two_sensor_intervals_and_heals(
    stack_config: Path, receiver: Receiver
) -> None:
    """The instance lives in Postgres, so no sensor can tick while it is down: the watchdog says so and restarts
    it; the daemon then carries on by itself."""
    dagster = _dagster(stack_config)
    supervisor = dagster.supervisor
    pid = supervisor.status("postgres").pid
    assert pid is not None
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for("postgres alert", lambda: _firing(receiver)["watchdog:postgres"], timeout=2 * SENSOR_INTERVAL, every=0.5)
    assert time.monotonic() - killed <= 2 * SENSOR_INTERVAL
    resolved = lambda: [b for b in receiver.bodies if b["key"] == "watchdog:postgres" and b["status"] == "resolved"]  # noqa: E731
    wait_for("postgres resolution", resolved, timeout=60)
    assert supervisor.status("postgres").pid not in (None, pid)
    wait_for("fresh daemon heartbeats", dagster.daemon_healthy, timeout=2 * SENSOR_INTERVAL + 30)
    assert _firing(receiver)["watchdog:postgres"] == 1


def test_kill_9_of_the_daemon_is_alerted_and_healed_by_the_watchdog(stack_config: Path, receiver: Receiver) -> None:
    """Who watches the watcher: the daemon cannot report its own death; the watchdog, which does not depend on
    it, restarts it and says so."""
    dagster = _dagster(stack_config)
    pid = dagster.supervisor.status("dagster_daemon").pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the daemon and the code servers it started, by its own process group
    wait_for("daemon alert", lambda: _firing(receiver)["watchdog:dagster_daemon"], timeout=2 * SENSOR_INTERVAL)
    wait_for("a new daemon with fresh heartbeats", dagster.daemon_healthy, timeout=3 * SENSOR_INTERVAL)
    assert dagster.supervisor.status("dagster_daemon").pid not in (None, pid)
    status = platformctl(stack_config, "status")
    assert "dagster-daemon up" in status.stdout, status.stdout


def test_injected_drift_alerts_once_and_retrains_with_no_dagster_dev(stack_config: Path, receiver: Receiver) -> None:
    from ml_assets.data.service import DataApiResource
    from platform_core.state import load_platform
    from platformctl.cli import dagster_env

    cfg, state = load_platform(stack_config)
    env = dagster_env(state, cfg, stack_config)
    data_api = DataApiResource(config_path=str(stack_config), state_dir=str(state.root))
    alerts = build_ml_definitions(stack_config).resources["alerts"]
    try:
        data_api.set_drift("shift", 1.0)
        ingest = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "ml_assets.definitions",
             "--select", "group:ml_data or key:drift_report", "--partition", "3"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout[-2000:] + ingest.stderr[-2000:]
        fired = wait_for(
            "drift alert",
            lambda: [a for a in alerts.history() if a["key"] == "data_drift:day=3" and a["status"] == "firing"],
            timeout=150,
        )
        assert len(fired) == 1 and "day 3" in fired[0]["title"]  # type: ignore[arg-type,index]
        assert _firing(receiver)["data_drift:day=3"] == 1

        def retrained() -> list[dg.DagsterRun]:
            with stack_instance(stack_config) as instance:
                runs = instance.get_runs(dg.RunsFilter(job_name="retrain_and_deploy"))
                return [r for r in runs if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]

        (run,) = wait_for("finished retraining run", retrained, timeout=300)  # type: ignore[misc]  # one: cooldown
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("mlops-platform/reason", "").startswith("data_drift:day=")
    finally:
        data_api.set_drift("none")


def test_down_then_up_resumes_the_sensors_where_their_cursors_were(stack_config: Path, receiver: Receiver) -> None:
    before = _firing(receiver)
    assert before, "the tests above fired alerts"
    down = platformctl(stack_config, "down")
    # the watchdog first (it would restart the rest), the daemon before the Postgres it stands on
    order = [line.split(":")[0] for line in down.stdout.splitlines()]
    assert order[:3] == ["watchdog", "dagster_daemon", "dagster_webserver"] and order[-1] == "postgres", order
    assert "watchdog: stopped" in down.stdout and "postgres: stopped" in down.stdout
    supervisor = Supervisor(stack_config.parent / "state" / "run", stack_config.parent / "state" / "logs")
    assert not any(supervisor.status(n).running for n in ("watchdog", "dagster_daemon", "postgres"))
    up = platformctl(stack_config, "up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    dagster = _dagster(stack_config)
    started = dagster.supervisor.status("dagster_daemon").started_at or 0.0
    time.sleep(max(0.0, started + 2 * SENSOR_INTERVAL + 5 - time.time()))  # two ticks of every sensor
    again = {key: count for key, count in _firing(receiver).items() if key in before and count > before[key]}
    assert again == {}, f"alerted twice across down/up: {again}"
    with stack_instance(stack_config) as instance:
        beats = instance.get_daemon_heartbeats()
    assert all(beats[name].timestamp >= started for name in WATCHED_DAEMONS)

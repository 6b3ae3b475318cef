"""`platformctl status` says whether anything evaluates the alerting sensors: the dagster-daemon's heartbeats in
the stack's instance, so a daemon that is down is reported, not silent."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
from dagster._daemon.types import DaemonHeartbeat  # no public way to write a heartbeat: the daemon's own type

from platform_core.runs import daemon_line, recorded_instance
from platform_core.state import StateDir


def _beat(instance: dg.DagsterInstance, daemon: str, age: float, now: float) -> None:
    instance.add_daemon_heartbeat(DaemonHeartbeat(now - age, daemon, "test-daemon", None))


def test_no_daemon_ever_is_said_in_one_line() -> None:
    with dg.instance_for_test() as instance:
        line = daemon_line(instance, time.time())
    assert line.startswith("sensors") and "no dagster-daemon has run" in line and "\n" not in line
    assert "no dagster-daemon has run" in daemon_line(None, time.time())


def test_fresh_heartbeats_are_up_and_old_or_missing_ones_are_down() -> None:
    now = time.time()
    with dg.instance_for_test() as instance:
        _beat(instance, "SENSOR", 5, now)
        _beat(instance, "SCHEDULER", 12, now)
        assert daemon_line(instance, now) == (
            "sensors    dagster-daemon up (SENSOR heartbeat 5s ago, SCHEDULER heartbeat 12s ago)"
        )
        assert "DOWN" in daemon_line(instance, now + 600)  # ten minutes without a beat
    with dg.instance_for_test() as instance:
        _beat(instance, "SENSOR", 5, now)  # the scheduler daemon never beat
        assert "DOWN (SENSOR heartbeat 5s ago)" in daemon_line(instance, now)


def test_a_stack_without_recorded_runs_opens_no_instance(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    assert recorded_instance(state) is None
    assert not (tmp_path / "state").exists()  # looking created nothing

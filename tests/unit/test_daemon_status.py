"""`platformctl status` says whether anything evaluates the alerting sensors: the dagster-daemon's heartbeats in
the stack's instance, so a daemon that is down is reported, not silent."""

from __future__ import annotations

import time
from pathlib import Path

from platform_core.config import PlatformConfig
from platform_core.runs import daemon_line, recorded_instance
from platform_core.state import StateDir


def test_no_daemon_ever_and_an_unreadable_instance_are_said_in_one_line() -> None:
    line = daemon_line({}, time.time())
    assert line.startswith("sensors") and "no dagster-daemon has run" in line and "\n" not in line
    unreadable = daemon_line(None, time.time())
    assert "cannot be read (is postgres up?)" in unreadable and "watchdog" in unreadable


def test_fresh_heartbeats_are_up_and_old_or_missing_ones_are_down() -> None:
    now = time.time()
    beats = {"SENSOR": now - 5, "SCHEDULER": now - 12}
    up = "sensors    dagster-daemon up (SENSOR heartbeat 5s ago, SCHEDULER heartbeat 12s ago)"
    assert daemon_line(beats, now) == up
    assert "DOWN" in daemon_line(beats, now + 600)  # ten minutes without a beat
    assert "DOWN (SENSOR heartbeat 5s ago)" in daemon_line({"SENSOR": now - 5}, now)  # the scheduler never beat


def test_a_stack_never_brought_up_opens_no_instance(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    with recorded_instance(PlatformConfig(), state) as instance:
        assert instance is None
    assert not (tmp_path / "state").exists()  # looking created nothing

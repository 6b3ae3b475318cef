"""`Supervisor.ensure_together`: every service to start is spawned before the first is waited for (the Dagster
webserver and daemon start this way), with the results and records `ensure` would leave."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.test_supervisor import Harness, free_port, http_ok


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.cleanup()


def test_services_start_together_and_each_waits_for_its_health(harness: Harness) -> None:
    first_port, second_port = free_port(), free_port()
    # the first counts as healthy only once the second answers: one at a time, its wait could never end
    first = replace(
        harness.http_spec("first", first_port, health=lambda: http_ok(first_port) and http_ok(second_port)),
        start_timeout=5.0,
    )
    second = harness.http_spec("second", second_port)
    started = harness.sup.ensure_together([first, second])
    for result in started:
        harness.remember(result.pid)
    assert [result.action for result in started] == ["started", "started"]
    assert all(harness.record(name)["ready"] for name in ("first", "second"))
    assert [harness.sup.status(name).pid for name in ("first", "second")] == [result.pid for result in started]

    again = harness.sup.ensure_together([first, second])
    assert [(r.action, r.pid) for r in again] == [("unchanged", started[0].pid), ("unchanged", started[1].pid)]


def test_only_what_changed_restarts(harness: Harness) -> None:
    first_port, second_port = free_port(), free_port()
    first, second = harness.http_spec("first", first_port), harness.http_spec("second", second_port)
    started = harness.sup.ensure_together([first, second])
    for result in started:
        harness.remember(result.pid)
    changed = replace(second, env={"CHANGED": "1"})
    again = harness.sup.ensure_together([first, changed])
    harness.remember(again[1].pid)
    assert [r.action for r in again] == ["unchanged", "restarted"]
    assert again[0].pid == started[0].pid and again[1].pid != started[1].pid

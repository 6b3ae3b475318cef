"""The freshness alert sensor on states recorded by Dagster's own freshness daemon code (time moved with
dagster's freeze_time, so a 5-minute window passes in no time)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import InProcessTestWorkspaceLoadTarget, freeze_time, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.freshness import FreshnessDaemon

from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.freshness_alerts import freshness_alert_sensor
from tests.unit.freshness_defs import defs, upstream_table

DEFS_FILE = Path(__file__).with_name("freshness_defs.py")


class Clock:
    def __init__(self, instance: dg.DagsterInstance, workspace: WorkspaceProcessContext, alerts: AlertsResource):
        self.instance, self.workspace, self.alerts = instance, workspace, alerts
        self.offset = timedelta(0)
        self.cursor: str | None = None

    def tick(self, minutes: float = 0) -> list[dict]:
        """Move time on, let the daemon's freshness evaluation record states, then run one sensor tick."""
        self.offset += timedelta(minutes=minutes)
        before = len(self.alerts.history())
        with freeze_time(datetime.now(UTC) + self.offset):
            asyncio.run(FreshnessDaemon()._evaluate_assets(self.workspace))
            context = dg.build_sensor_context(
                instance=self.instance, cursor=self.cursor, resources={"alerts": self.alerts}, definitions=defs
            )
            freshness_alert_sensor(context)
        self.cursor = context.cursor
        return self.alerts.history()[before:]


@pytest.fixture
def clock(tmp_path: Path) -> Iterator[Clock]:
    with instance_for_test() as instance:
        origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(DEFS_FILE), attribute="defs"))
        with WorkspaceProcessContext(instance, InProcessTestWorkspaceLoadTarget(origin)) as workspace:
            yield Clock(instance, workspace, AlertsResource(log_file=str(tmp_path / "alerts.jsonl")))


def test_stale_assets_alert_once_downstream_names_its_cause_and_recovery_resolves(clock: Clock) -> None:
    dg.materialize(defs.assets, instance=clock.instance)
    assert clock.tick() == []  # fresh

    fired = clock.tick(minutes=6)  # past the 5-minute window
    assert [(a["status"], a["key"]) for a in fired] == [
        ("firing", "stale:upstream_table"),
        ("firing", "stale:downstream_report"),
    ]
    assert "no update within 5 min; last materialized" in fired[0]["message"]
    assert "← upstream_table: upstream_table is stale since" in fired[1]["message"]
    assert clock.tick(minutes=1) == []  # still stale: no repeat

    with freeze_time(datetime.now(UTC) + clock.offset):
        dg.materialize([upstream_table], instance=clock.instance)
    recovered = clock.tick()
    assert [(a["status"], a["key"]) for a in recovered] == [("resolved", "stale:upstream_table")]
    assert recovered[0]["duration_seconds"] >= 0  # sensors use the wall clock, not the frozen one


def test_never_materialized_assets_are_not_stale_alerts(clock: Clock) -> None:
    assert clock.tick(minutes=30) == []  # no data yet is "unknown", not stale

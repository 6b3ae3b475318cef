"""Reading results back from the Dagster instance: what a run materialized, changed and checked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from platform_core.config import PlatformConfig
from platform_core.redact import redact
from platform_core.state import StateDir

if TYPE_CHECKING:
    from dagster_shared.error import SerializableErrorInfo


@dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    changes: dict[str, str]  # asset key -> the "change" metadata of its materialization
    checks: dict[str, bool]  # "asset:check" -> passed
    failures: dict[str, str]  # "asset:check" -> the failed check's description, "step" -> its error

    @property
    def failed_checks(self) -> list[str]:
        return [name for name, passed in self.checks.items() if not passed]


def run_report(instance: dg.DagsterInstance, run_id: str) -> RunReport:
    run = instance.get_run_by_id(run_id)
    changes: dict[str, str] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is None:
            continue
        change = materialization.metadata.get("change")
        changes[materialization.asset_key.to_user_string()] = str(change.value) if change else "?"
    checks: dict[str, bool] = {}
    failures: dict[str, str] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = record.event_log_entry.asset_check_evaluation
        if evaluation is None:
            continue
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        checks[name] = evaluation.passed
        if not evaluation.passed:
            failures[name] = redact(evaluation.description or "")
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.get_dagster_event()
        failures[event.step_key or "run"] = root_cause_line(event.step_failure_data.error)
    return RunReport(run_id, run.status.value if run else "UNKNOWN", changes, checks, failures)


def root_cause_line(error: SerializableErrorInfo | None) -> str:
    """The first line of the step's own error: Dagster wraps it in `DagsterExecutionStepExecutionError: Error
    occurred while executing op ...`, which names no field. Its own causes stay behind it (it chose its words)."""
    if error is None:
        return "step failed"
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    lines = error.message.strip().splitlines()
    return redact(lines[0]) if lines else error.cls_name or "step failed"


@contextmanager
def recorded_instance(cfg: PlatformConfig, state: StateDir) -> Iterator[dg.DagsterInstance | None]:
    """The stack's Dagster instance, or None when there is none to read: never set up here (opening one would
    create it), or its Postgres is down."""
    from platform_core.orchestrator.instance import instance_file, load_instance, storage_errors

    if not instance_file(state).exists() or not state.secrets_file.exists():
        yield None
        return
    if cfg.target == "local" and not _accepts(cfg.services.postgres.port):
        yield None  # Postgres is down: say so at once (dagster-postgres would retry for ~12 s)
        return
    try:
        instance = load_instance(cfg, state)
    except storage_errors():
        yield None
        return
    try:
        yield instance
    finally:
        instance.dispose()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def daemon_line(beats: dict[str, float] | None, now: float, watched: tuple[str, ...] | None = None) -> str:
    """Whether anything evaluates the sensors now: the dagster-daemon's newest heartbeat, per watched daemon
    (None: the instance cannot be read; `watched`: WATCHED_DAEMONS unless given)."""
    from platform_core.orchestrator.services import WATCHED_DAEMONS, heartbeat_ages

    if beats is None:
        return "sensors    the Dagster instance cannot be read (is postgres up?): nothing alerts but the watchdog"
    ages, stale = heartbeat_ages(beats, now, watched or WATCHED_DAEMONS)
    if not ages:
        return "sensors    no dagster-daemon has run on this stack's instance: nothing alerts (start it: make up)"
    shown = ", ".join(f"{name} heartbeat {age:.0f}s ago" for name, age in ages.items())
    if stale:
        return f"sensors    dagster-daemon DOWN ({shown}): nothing alerts until it runs again (make up)"
    return f"sensors    dagster-daemon up ({shown})"


# Runs the daemon launches on its own (sensors, schedules, backfills) carry one of these tags; a run of a command
# (`dagster asset materialize`) carries none.
AUTOMATION_TAGS = {"dagster/sensor_name", "dagster/schedule_name", "dagster/backfill"}


def report_lines(report: RunReport) -> list[str]:
    """What a run changed and how its checks went, a line each, then each failure's own line."""
    lines = [f"run {report.run_id[:8]}: {report.status}"]
    lines += [f"{key}: {change}" for key, change in sorted(report.changes.items())]
    passed = sum(report.checks.values())
    lines.append(
        f"checks: {passed}/{len(report.checks)} passed"
        + (f"; FAILED: {', '.join(report.failed_checks)}" if report.failed_checks else "")
    )
    lines += [f"  {name}: {description}" for name, description in report.failures.items()]
    return lines

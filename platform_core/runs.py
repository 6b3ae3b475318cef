"""Reading results back from the Dagster instance: what a run materialized, changed and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

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


def recorded_instance(state: StateDir) -> dg.DagsterInstance | None:
    """The stack's Dagster instance, only once it has recorded runs (opening one creates its databases)."""
    home = state.dagster_home
    recorded = (home / "dagster.yaml").exists() and (home / "history" / "runs.db").exists()
    return dg.DagsterInstance.from_config(str(home)) if recorded else None


WATCHED_DAEMONS = ("SENSOR", "SCHEDULER")  # what evaluates the alerting sensors and the health schedules
HEARTBEAT_STALE_SECONDS = 90  # the daemon beats every 30 s: three missed beats mean it is gone


def daemon_line(instance: dg.DagsterInstance | None, now: float) -> str:
    """Whether anything evaluates the sensors now: the dagster-daemon's newest heartbeat, per watched daemon."""
    beats = instance.get_daemon_heartbeats() if instance is not None else {}
    ages = {name: now - beats[name].timestamp for name in WATCHED_DAEMONS if name in beats}
    if not ages:
        return "sensors    no dagster-daemon has run on this stack's instance: nothing alerts (start one: make ui)"
    shown = ", ".join(f"{name} heartbeat {age:.0f}s ago" for name, age in ages.items())
    stale = len(ages) < len(WATCHED_DAEMONS) or max(ages.values()) > HEARTBEAT_STALE_SECONDS
    if stale:
        return f"sensors    dagster-daemon DOWN ({shown}): nothing alerts until it runs again (make ui)"
    return f"sensors    dagster-daemon up ({shown})"


def newest_run_id() -> str | None:
    """The newest run in the instance that DAGSTER_HOME points at."""
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        return runs[0].run_id if runs else None


def newest_run_report(after: str | None = None) -> RunReport | None:
    """The newest run's report, or None when there is none newer than the run ``after`` (the command failed
    before it started one, e.g. while loading definitions)."""
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        if not runs or runs[0].run_id == after:
            return None
        return run_report(instance, runs[0].run_id)


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

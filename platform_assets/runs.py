"""Reading results back from the Dagster instance: what a run materialized, changed and checked."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


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
        materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
        change = materialization.metadata.get("change")
        changes[materialization.asset_key.to_user_string()] = change.value if change else "?"
    checks: dict[str, bool] = {}
    failures: dict[str, str] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        checks[name] = evaluation.passed
        if not evaluation.passed:
            failures[name] = evaluation.description or ""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        error = event.step_failure_data.error
        failures[event.step_key or "run"] = error.message.strip() if error else "step failed"
    return RunReport(run_id, run.status.value if run else "UNKNOWN", changes, checks, failures)


def latest_run_report() -> list[str]:
    """Lines describing the newest run in the instance that DAGSTER_HOME points at."""
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return ["no run recorded"]
        report = run_report(instance, runs[0].run_id)
    lines = [f"run {report.run_id[:8]}: {report.status}"]
    lines += [f"{key}: {change}" for key, change in sorted(report.changes.items())]
    passed = sum(report.checks.values())
    lines.append(
        f"checks: {passed}/{len(report.checks)} passed"
        + (f"; FAILED: {', '.join(report.failed_checks)}" if report.failed_checks else "")
    )
    lines += [f"  {name}: {description}" for name, description in report.failures.items()]
    return lines

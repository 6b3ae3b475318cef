"""The body every alerting sensor shares, and the sensor both code locations run on their own checks.

- `alert_on_findings`: one alert per finding that appeared or cleared since the cursor, each naming its cause.
- `check_failure_sensor`: failed ERROR-severity asset checks become alerts, and a later pass resolves them.
"""

import time
from typing import Any

import dagster as dg

from platform_core.alerting.alerts import Alert, AlertsResource
from platform_core.alerting.causes import CauseFinder
from platform_core.alerting.findings import Finding, track
from platform_core.alerting.lineage import Lineage, graph_lineage

DRIFT_INTERVAL_SECONDS = 30


def alert_on_findings(
    context: dg.SensorEvaluationContext, findings: list[Finding], alerts: AlertsResource, source: str
) -> dg.SkipReason:
    """One alert per finding that appeared or cleared since the cursor; the cursor keeps the rest."""
    sent, cursor = track(
        context.cursor,
        findings,
        time.time(),
        source=source,
        causes=CauseFinder.load(alerts, sensor_lineage(context)),
    )
    for alert in sent:
        alerts.send(alert)
    context.update_cursor(cursor)
    return dg.SkipReason(_summary(findings, sent))


def location_graph(context: dg.SensorEvaluationContext) -> Any:
    """The asset graph of the sensor's own code location (Dagster exports no name for its type)."""
    if context.repository_def is None:
        raise dg.DagsterInvariantViolationError("this sensor needs its code location's definitions")
    return context.repository_def.asset_graph


def sensor_lineage(context: dg.SensorEvaluationContext) -> Lineage | None:
    """The sensor's own code location's lineage (None when a test builds the context without definitions)."""
    repository = context.repository_def
    if repository is None:
        return None
    return graph_lineage(repository.asset_graph)


def _summary(findings: list[Finding], sent: list[Alert]) -> str:
    if not findings:
        return f"no drift; {len(sent)} alert(s) resolved" if sent else "no drift"
    listed = "; ".join(f"{f.title} ({f.subject}): {f.message}" for f in findings)
    return f"{len(findings)} finding(s), {len(sent)} new alert(s): {listed}"


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns failed ERROR asset checks into alerts, and their next pass into a resolution.",
)
def check_failure_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    # The latest evaluation of each check of this code location; works on any instance storage.
    check_keys = list(location_graph(context).asset_check_keys)
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    # a planned or running check has an AssetCheckEvaluationPlanned, with no verdict yet
    evaluations = [r.evaluation for r in latest.values() if isinstance(r.evaluation, dg.AssetCheckEvaluation)]
    return alert_on_findings(context, failing_checks(evaluations), alerts, "check_failure_sensor")


def failing_checks(evaluations: list[dg.AssetCheckEvaluation]) -> list[Finding]:
    """Checks whose latest evaluation failed at ERROR severity (a WARN failure is shown in the UI only)."""
    return [
        Finding(
            key=f"check_failed:{e.asset_key.to_user_string()}:{e.check_name}",
            subject=e.asset_key.to_user_string(),
            title=f"check {e.check_name} on {e.asset_key.to_user_string()} failed",
            message=e.description or "",
        )
        for e in evaluations
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]

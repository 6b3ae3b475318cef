"""Sensors that watch the live platform and speak through the `alerts` resource.

- `infra_drift_sensor`: desired vs live each tick (service down, config changed out of band, bucket / role /
  database missing, orphans); one alert when a finding appears, one when it clears.
- `check_failure_sensor`: failed ERROR-severity asset checks become alerts, and a later pass resolves them.
"""

import json
import time

import dagster as dg

from platform_assets.alerts import Alert, AlertsResource
from platform_assets.drift.findings import Finding, track
from platform_assets.drift.local import local_findings
from platform_assets.storage.postgres import PostgresResource
from platform_assets.storage.seaweedfs import SeaweedFSResource
from platform_assets.tracking.mlflow_server import MlflowResource

DRIFT_INTERVAL_SECONDS = 30


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Compares live services, buckets, roles and databases with platform.yaml; alerts on drift.",
)
def infra_drift_sensor(
    context: dg.SensorEvaluationContext,
    postgres_resource: PostgresResource,
    seaweedfs_resource: SeaweedFSResource,
    mlflow_resource: MlflowResource,
    alerts: AlertsResource,
) -> dg.SkipReason:
    findings = local_findings(postgres_resource, seaweedfs_resource, mlflow_resource)
    return alert_on_findings(context, findings, alerts, "infra_drift_sensor")


def alert_on_findings(
    context: dg.SensorEvaluationContext, findings: list[Finding], alerts: AlertsResource, source: str
) -> dg.SkipReason:
    """One alert per finding that appeared or cleared since the cursor; the cursor keeps the rest."""
    sent, cursor = track(context.cursor, findings, time.time(), source=source)
    for alert in sent:
        alerts.send(alert)
    context.update_cursor(cursor)
    return dg.SkipReason(_summary(findings, sent))


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
    failing: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    check_keys = list(context.repository_def.asset_graph.asset_check_keys)
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    sent = 0
    for check_key, record in sorted(latest.items(), key=lambda item: item[1].id):
        evaluation = record.evaluation
        if evaluation is None or record.event is None:
            continue  # planned or still running
        key = f"check_failed:{check_key.asset_key.to_user_string()}:{check_key.name}"
        alert = _check_transition(failing, key, evaluation, record.event.timestamp)
        if alert is not None:
            alerts.send(alert)
            sent += 1
    context.update_cursor(json.dumps(failing, sort_keys=True))
    return dg.SkipReason(f"{len(latest)} check(s) read, {sent} alert(s) sent; failing: {sorted(failing) or 'none'}")


def _check_transition(
    failing: dict[str, dict], key: str, evaluation: dg.AssetCheckEvaluation, when: float
) -> Alert | None:
    subject = evaluation.asset_key.to_user_string()
    title = f"check {evaluation.check_name} on {subject}"
    description = evaluation.description or ""
    if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
        if key in failing:
            return None
        failing[key] = {"onset": when, "message": description}
        return Alert(
            key=key,
            status="firing",
            title=f"{title} failed",
            message=description,
            source="check_failure_sensor",
            subject=subject,
            onset=when,
        )
    if key in failing:  # it passed, or fails only at WARN severity now: no longer an error
        seen = failing.pop(key)
        return Alert(
            key=key,
            status="resolved",
            title=f"{title} passes again" if evaluation.passed else f"{title} is down to a warning",
            message=seen["message"],
            source="check_failure_sensor",
            subject=subject,
            onset=seen["onset"],
            resolved_at=when,
        )
    return None

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
CHECK_BATCH = 500


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
    sent, cursor = track(context.cursor, findings, time.time(), source="infra_drift_sensor")
    for alert in sent:
        alerts.send(alert)
    context.update_cursor(cursor)
    return dg.SkipReason(_summary(findings, sent))


def _summary(findings: list[Finding], sent: list[Alert]) -> str:
    if not findings:
        return f"no drift; {len(sent)} alert(s) resolved" if sent else "no drift"
    listed = "; ".join(f"{f.subject}: {f.message}" for f in findings)
    return f"{len(findings)} finding(s), {len(sent)} new alert(s): {listed}"


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns failed ERROR asset checks into alerts, and their next pass into a resolution.",
)
def check_failure_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    state = json.loads(context.cursor) if context.cursor else {"after": None, "failing": {}}
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=state["after"]),
        ascending=True,
        limit=CHECK_BATCH,
    )
    sent = 0
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        key = f"check_failed:{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        alert = _check_transition(state["failing"], key, evaluation, record.timestamp)
        if alert is not None:
            alerts.send(alert)
            sent += 1
        state["after"] = record.storage_id
    context.update_cursor(json.dumps(state, sort_keys=True))
    failing = sorted(state["failing"])
    return dg.SkipReason(f"{len(records)} evaluation(s) read, {sent} alert(s) sent; failing: {failing or 'none'}")


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
    if evaluation.passed and key in failing:
        seen = failing.pop(key)
        return Alert(
            key=key,
            status="resolved",
            title=f"{title} passes again",
            message=seen["message"],
            source="check_failure_sensor",
            subject=subject,
            onset=seen["onset"],
            resolved_at=when,
        )
    return None

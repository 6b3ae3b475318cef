"""`freshness_alert_sensor`: an asset that turns stale alerts once (naming the upstream cause, if any) and
once more when it is fresh again.

Staleness is read from the instance, never recomputed here: the Dagster daemon's freshness evaluation records a
state per asset with a `FreshnessPolicy` (materializable assets), and `build_last_update_freshness_checks`
records check results for observable assets, which policies do not cover.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState  # not exported; the daemon's own states

from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.findings import Finding
from platform_core.alerting.sensors import DRIFT_INTERVAL_SECONDS, alert_on_findings, location_graph

LAST_UPDATE_CHECK = "freshness_check"  # the name build_last_update_freshness_checks gives its checks


def _window(policy: object) -> str:
    fail = getattr(policy, "fail_window", None)
    seconds = fail.to_timedelta().total_seconds() if fail is not None and hasattr(fail, "to_timedelta") else None
    return f"{seconds / 60:g} min" if seconds else "its window"


def _last_update(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    event = instance.get_latest_materialization_event(key)
    if event is None:
        return "never materialized"
    return "last materialized " + datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def stale_by_policy(context: dg.SensorEvaluationContext) -> list[Finding]:
    graph = location_graph(context)
    policies = {key: graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}
    policies = {key: policy for key, policy in policies.items() if policy is not None}
    states = context.instance.get_freshness_state_records(list(policies))
    return [
        Finding(
            key=f"stale:{key.to_user_string()}",
            subject=key.to_user_string(),
            title=f"{key.to_user_string()} is stale",
            message=f"no update within {_window(policies[key])}; {_last_update(context.instance, key)}",
            inhibitable=False,
        )
        for key, record in sorted(states.items(), key=lambda item: item[0].to_user_string())
        if record.freshness_state == FreshnessState.FAIL
    ]


def stale_by_check(context: dg.SensorEvaluationContext) -> list[Finding]:
    keys = [k for k in location_graph(context).asset_check_keys if k.name == LAST_UPDATE_CHECK]
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return [
        Finding(
            key=f"stale:{key.asset_key.to_user_string()}",
            subject=key.asset_key.to_user_string(),
            title=f"{key.asset_key.to_user_string()} is stale",
            message=record.evaluation.description or "its last-update freshness check failed",
            inhibitable=False,
        )
        for key, record in latest.items()
        if isinstance(record.evaluation, dg.AssetCheckEvaluation) and not record.evaluation.passed
    ]


@dg.sensor(
    minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when an asset goes stale (freshness policy or last-update check) and when it recovers.",
)
def freshness_alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    findings = stale_by_policy(context) + stale_by_check(context)
    return alert_on_findings(context, findings, alerts, "freshness_alert_sensor")

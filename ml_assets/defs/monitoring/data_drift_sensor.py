"""`data_drift_sensor`: batches in, drift reports out; dataset drift becomes one alert and one retraining.

Each tick it (1) requests a drift report for every batch whose newest report is missing, older than the batch,
or made against an earlier champion while drifting or before any champion existed; (2) turns partitions whose
newest report says "drift" into findings: one alert when one appears (with a retraining request unless a recent
one is still cooling down) and one when it clears. All of it lives in the cursor, so restarts repeat nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.defs.monitoring.report import Reference, latest_reference
from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.causes import CauseFinder
from platform_core.alerting.findings import Finding, track
from platform_core.alerting.sensors import DRIFT_INTERVAL_SECONDS, sensor_lineage

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

DRIFT_REPORT = dg.AssetKey("drift_report")
RAW_BATCHES = dg.AssetKey("raw_batches")
PAGE = 200  # materializations read per asset per tick


@dataclass
class DriftCursor:
    raw_id: int = 0  # newest raw_batches storage id read
    report_id: int = 0  # newest drift_report storage id read
    raw: dict[str, int] = field(default_factory=dict)  # partition -> storage id of its newest batch
    reports: dict[str, dict] = field(default_factory=dict)  # partition -> newest report's id, verdict, reference
    findings: str | None = None  # `track`'s own cursor
    last_retrain: float = 0.0
    retrain_pending: str | None = None  # a drift held back by the cooldown, retrained for when it ends

    @classmethod
    def parse(cls, text: str | None) -> DriftCursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _read_new(context: dg.SensorEvaluationContext, key: dg.AssetKey, after: int) -> list[dg.EventLogRecord]:
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
    )
    return [r for r in result.records if r.partition_key is not None]


def _absorb(context: dg.SensorEvaluationContext, cursor: DriftCursor) -> None:
    for record in _read_new(context, RAW_BATCHES, cursor.raw_id):
        cursor.raw[str(record.partition_key)] = record.storage_id
        cursor.raw_id = record.storage_id
    for record in _read_new(context, DRIFT_REPORT, cursor.report_id):
        materialization = record.asset_materialization
        md = {k: v.value for k, v in materialization.metadata.items()} if materialization else {}
        cursor.reports[str(record.partition_key)] = {
            "id": record.storage_id,
            "verdict": str(md.get("dataset_verdict")),
            "reference": str(md.get("reference_version", "none")),
            "drifted": str(md.get("drifted_columns", "")),
            "uri": str(md.get("report_uri", "")),  # not the presigned link: alerts travel to chat rooms
            "run_id": record.run_id,
        }
        cursor.report_id = record.storage_id


def _needs_report(partition: str, raw_id: int, cursor: DriftCursor, ref: Reference) -> bool:
    report = cursor.reports.get(partition)
    if report is None or report["id"] < raw_id:
        return True
    outdated = report["reference"] != ref.version
    return outdated and report["verdict"] in ("drift", "no reference")


def _report_requests(cursor: DriftCursor, ref: Reference | None) -> list[dg.RunRequest]:
    if ref is None:
        return []  # nothing to compare against yet; ingest runs record "no reference" meanwhile
    return [
        dg.RunRequest(
            job_name="drift_report_job",
            partition_key=partition,
            run_key=f"drift_report:{partition}:{raw_id}:v{ref.version}",
            tags={"mlops-platform/reason": "new batch or new champion"},
        )
        for partition, raw_id in sorted(cursor.raw.items(), key=lambda item: int(item[0]))
        if _needs_report(partition, raw_id, cursor, ref)
    ]


def drift_findings(cursor: DriftCursor) -> list[Finding]:
    return [
        Finding(
            key=f"data_drift:day={partition}",
            subject="drift_report",
            title=f"data drift in batch day {partition}",
            message=f"columns {report['drifted']} drifted from champion v{report['reference']}'s training data; "
            f"report: {report['uri']}",
            remedy="self-healable",
            inhibitable=False,  # drift in the data is news even while a service upstream is down
            severity="warning",
        )
        for partition, report in sorted(cursor.reports.items(), key=lambda item: int(item[0]))
        if report["verdict"] == "drift"
    ]


def _retrain(
    cursor: DriftCursor, alert_key: str, cooldown_seconds: float, now: float
) -> tuple[dg.RunRequest | None, str]:
    if now - cursor.last_retrain < cooldown_seconds:
        until = time.strftime("%H:%M:%S", time.gmtime(cursor.last_retrain + cooldown_seconds))
        cursor.retrain_pending = alert_key
        return None, f"retraining held back: cooldown until {until} UTC, then requested if it still drifts"
    cursor.last_retrain, cursor.retrain_pending = now, None
    request = dg.RunRequest(
        job_name="retrain_and_deploy",
        run_key=f"retrain:{alert_key}:{int(now)}",
        tags={"mlops-platform/reason": alert_key},
    )
    return request, "retraining requested"


def build_data_drift_sensor(jobs: list[UnresolvedAssetJobDefinition]) -> dg.SensorDefinition:
    """The sensor, targeting the jobs it requests (drift_report_job, retrain_and_deploy)."""

    @dg.sensor(
        name="data_drift_sensor",
        minimum_interval_seconds=DRIFT_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        jobs=jobs,
        description="Requests a drift report for each new batch; on dataset drift alerts once and requests "
        "retraining (with a cooldown).",
    )
    def data_drift_sensor(
        context: dg.SensorEvaluationContext, alerts: AlertsResource, datasets: DatasetsResource
    ) -> dg.SensorResult:
        return evaluate(context, alerts, datasets)

    return data_drift_sensor


def evaluate(
    context: dg.SensorEvaluationContext, alerts: AlertsResource, datasets: DatasetsResource
) -> dg.SensorResult:
    cursor = DriftCursor.parse(context.cursor)
    _absorb(context, cursor)
    requests = _report_requests(cursor, latest_reference(context.instance))
    now = time.time()
    causes = CauseFinder.load(alerts, sensor_lineage(context))
    sent, cursor.findings = track(cursor.findings, drift_findings(cursor), now, "data_drift_sensor", causes)
    cooldown = datasets.cfg.ml.retrain_cooldown_minutes * 60
    open_drift = {f.key for f in drift_findings(cursor)}
    if cursor.retrain_pending and cursor.retrain_pending not in open_drift:
        cursor.retrain_pending = None  # the drift that waited has cleared: nothing to retrain for
    if cursor.retrain_pending and now - cursor.last_retrain >= cooldown:
        retrain, _ = _retrain(cursor, cursor.retrain_pending, cooldown, now)
        requests += [retrain] if retrain else []
    for alert in sent:
        if alert.status == "firing":
            retrain, note = _retrain(cursor, alert.key, cooldown, now)
            requests += [retrain] if retrain else []
            alert = replace(alert, message=f"{alert.message}; {note}")
        alerts.send(alert)
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

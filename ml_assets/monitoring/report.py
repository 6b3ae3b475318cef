"""`drift_report`, one partition per batch: the batch against the champion's reference profile, and, since
batches carry the true price, the champion's error on labels it never saw."""

import hashlib
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.data.resources import DatasetsResource
from ml_assets.drift.engine import DriftReport, detect_drift
from ml_assets.drift.profile_io import profile_from_bytes
from ml_assets.monitoring.html import render_report
from ml_assets.monitoring.reference import GROUP, OWNERS, reference_profile
from ml_assets.monitoring.resources import ReportsResource
from ml_assets.schema import TARGET
from ml_assets.tracking import ModelTracker
from ml_assets.training import evaluate
from platform_assets.services.results import NO_CHANGE
from platform_assets.tracking.mlflow_server import MlflowResource

LABEL_CHECK = "champion_holds_up_on_new_labels"
DRIFT_CHECK = "no_dataset_drift"


@dataclass(frozen=True)
class Reference:
    key: str
    version: str
    days: list[int]
    holdout_rmse_log: float


def latest_reference(instance: dg.DagsterInstance) -> Reference | None:
    event = instance.get_latest_materialization_event(reference_profile.key)
    if event is None or event.asset_materialization is None:
        return None
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    days = [int(d) for d in str(md["training_days"]).split(", ") if d]
    return Reference(str(md["key"]), str(md["champion_version"]), days, float(md["holdout_rmse_log"]))


def label_check(
    day: int, batch: pd.DataFrame, ref: Reference, tracker: ModelTracker, tolerance: float
) -> dg.AssetCheckResult:
    """The champion's RMSE(log) on this batch's true prices against its holdout RMSE(log)."""
    if day in ref.days:
        return dg.AssetCheckResult(
            check_name=LABEL_CHECK,
            passed=True,
            description=f"day {day} is in champion v{ref.version}'s training data: no unseen labels to judge",
        )
    labelled = batch[pd.to_numeric(batch[TARGET], errors="coerce") > 0]
    if labelled.empty:
        return dg.AssetCheckResult(check_name=LABEL_CHECK, passed=True, description=f"day {day}: no labels yet")
    prices = tracker.predict(ref.version, labelled.drop(columns=[TARGET]))
    metrics = evaluate(np.clip(prices, 1, None), labelled[TARGET].to_numpy(dtype=float))
    limit = ref.holdout_rmse_log * (1 + tolerance)
    return dg.AssetCheckResult(
        check_name=LABEL_CHECK,
        passed=metrics.rmse_log <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"champion v{ref.version} on day {day}: RMSE(log) {metrics.rmse_log:.4f} vs holdout "
        f"{ref.holdout_rmse_log:.4f} (limit {limit:.4f}, +{tolerance:.0%}), {metrics.rows} labelled rows",
        metadata={"rmse_log": metrics.rmse_log, "holdout_rmse_log": ref.holdout_rmse_log, "rows": metrics.rows},
    )


def drift_check(report: DriftReport) -> dg.AssetCheckResult:
    drifted = [c.column for c in report.columns if c.drifted]
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not report.drifted,
        severity=dg.AssetCheckSeverity.WARN,  # the data drift sensor alerts and retrains; this marks it in the UI
        description=f"{report.verdict}: {report.n_drifted}/{len(report.columns)} columns drifted"
        + (f" ({', '.join(drifted)})" if drifted else ""),
    )


def _report_metadata(report: DriftReport, reports: ReportsResource, key: str, written: bool) -> dict[str, object]:
    drifted = [c.column for c in report.columns if c.drifted]
    return {
        "change": f"wrote {key}" if written else NO_CHANGE,
        "dataset_verdict": report.verdict,
        "dataset_drift": report.drifted,
        "drifted_columns": ", ".join(drifted) or "none",
        "share_drifted": report.share_drifted,
        "columns": dg.MetadataValue.md(report.to_markdown()),
        "report_url": dg.MetadataValue.url(reports.link(key)),
        "report_uri": reports.uri(key),
    }


def build_drift_report(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"html", "s3"},
        owners=OWNERS,
        deps=[dg.AssetKey("raw_batches"), reference_profile],
        check_specs=[
            dg.AssetCheckSpec(LABEL_CHECK, asset="drift_report", description="Champion error on new labels."),
            dg.AssetCheckSpec(DRIFT_CHECK, asset="drift_report", description="Batch vs champion training data."),
        ],
        description="Per-column drift tests of a raw batch against the champion's training data, as an HTML "
        "report in the reports bucket; the champion's error on the batch's labels.",
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        datasets: DatasetsResource,
        reports: ReportsResource,
        mlflow_resource: MlflowResource,
    ):
        day = int(context.partition_key)
        ml = datasets.cfg.ml
        batch = datasets.store().get(datasets.raw_key(day))  # raw: a batch validation refused is still reported
        ref = latest_reference(context.instance)
        if ref is None or (body := reports.get(ref.key)) is None:
            yield dg.MaterializeResult(metadata={"dataset_verdict": "no reference", "reference_version": "none"})
            note = "no champion reference yet; the data drift sensor re-runs this once there is one"
            yield dg.AssetCheckResult(check_name=LABEL_CHECK, passed=True, description=note)
            yield dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=True, description=note)
            return
        profile = profile_from_bytes(body)
        report = detect_drift(profile, batch, drift_share=ml.drift_share, mode=ml.drift_mode)
        html = render_report(f"Drift: day {day} vs champion v{ref.version}", report, profile, batch)
        key = f"drift/{ml.model_name}/day={day:04d}/report.html"
        body_html = html.encode()
        written = reports.put(key, body_html, "text/html; charset=utf-8")
        path = reports.local_copy(key, body_html)
        yield dg.MaterializeResult(
            metadata={
                **_report_metadata(report, reports, key, written),
                "report_path": dg.MetadataValue.path(str(path)),
                "reference_version": ref.version,
                "rows": len(batch),
            },
            data_version=dg.DataVersion(hashlib.sha256(body_html).hexdigest()[:16]),
        )
        tracker = ModelTracker.of(mlflow_resource)
        yield label_check(day, batch, ref, tracker, ml.degradation_tolerance)
        yield drift_check(report)

    return drift_report

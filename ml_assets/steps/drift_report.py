"""`drift_report`: a raw batch against the champion's reference profile as an HTML report in the reports bucket,
and, since batches carry the true price, the champion's error on labels it never saw.

Both checks are evaluated here, where the batch and the champion are at hand, and travel back with the result;
the orchestrator turns them into check results (with their descriptions, which Pipes' own check report lacks).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.data_drift.engine import DriftReport, detect_drift
from ml_assets.data_drift.html import render_report
from ml_assets.data_drift.profile_io import profile_from_bytes
from ml_assets.model.tracking import ModelTracker
from ml_assets.schema import TARGET
from ml_assets.steps.base import CheckOutcome, Step, StepInputs, StepResult, typed
from ml_assets.steps.train import evaluate
from platform_core.cluster.secrets import MLFLOW_READER_SECRET, REPORTS_SECRET, TRAINING_SECRET
from platform_core.results import NO_CHANGE

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

LABEL_CHECK = "champion_holds_up_on_new_labels"
DRIFT_CHECK = "no_dataset_drift"
NO_REFERENCE = "no champion reference yet; the data drift sensor re-runs this once there is one"


def no_reference(note: str = NO_REFERENCE) -> StepResult:
    """Nothing to compare with yet: both checks pass, saying why."""
    return StepResult(
        {"dataset_verdict": "no reference", "reference_version": "none"},
        checks=[CheckOutcome(LABEL_CHECK, True, note), CheckOutcome(DRIFT_CHECK, True, note)],
    )


def label_check(
    day: int,
    batch: pd.DataFrame,
    version: str,
    days: list[int],
    holdout_rmse_log: float,
    tracker: ModelTracker,
    tolerance: float,
) -> CheckOutcome:
    """The champion's RMSE(log) on this batch's true prices against its holdout RMSE(log)."""

    import pandas as pd

    if day in days:
        return CheckOutcome(
            LABEL_CHECK, True, f"day {day} is in champion v{version}'s training data: no unseen labels to judge"
        )
    labelled = batch[pd.to_numeric(batch[TARGET], errors="coerce") > 0]
    if labelled.empty:
        return CheckOutcome(LABEL_CHECK, True, f"day {day}: no labels yet")
    prices = tracker.predict(version, labelled.drop(columns=[TARGET]))
    metrics = evaluate(np.clip(prices, 1, None), labelled[TARGET].to_numpy(dtype=float))
    limit = holdout_rmse_log * (1 + tolerance)
    return CheckOutcome(
        LABEL_CHECK,
        passed=metrics.rmse_log <= limit,
        description=f"champion v{version} on day {day}: RMSE(log) {metrics.rmse_log:.4f} vs holdout "
        f"{holdout_rmse_log:.4f} (limit {limit:.4f}, +{tolerance:.0%}), {metrics.rows} labelled rows",
        metadata={"rmse_log": metrics.rmse_log, "holdout_rmse_log": holdout_rmse_log, "rows": metrics.rows},
    )


def drift_check(report: DriftReport) -> CheckOutcome:
    drifted = [c.column for c in report.columns if c.drifted]
    return CheckOutcome(
        DRIFT_CHECK,
        passed=not report.drifted,
        severity="WARN",  # the data drift sensor alerts and retrains; this marks it in the UI
        description=f"{report.verdict}: {report.n_drifted}/{len(report.columns)} columns drifted"
        + (f" ({', '.join(drifted)})" if drifted else ""),
    )


def report_metadata(report: DriftReport, uri: str, written: bool, key: str) -> dict[str, object]:
    drifted = [c.column for c in report.columns if c.drifted]
    return {
        "change": f"wrote {key}" if written else NO_CHANGE,
        "dataset_verdict": report.verdict,
        "dataset_drift": bool(report.drifted),
        "drifted_columns": ", ".join(drifted) or "none",
        "share_drifted": float(report.share_drifted),
        "columns": typed("md", report.to_markdown()),
        "report_uri": uri,
    }


def drift(inputs: StepInputs) -> StepResult:
    day, version = inputs.integer("day"), inputs.text("reference_version")
    body = inputs.reports.get(inputs.text("reference_key"))
    if body is None:
        return no_reference(f"reference profile {inputs.reports.uri(inputs.text('reference_key'))} is missing")
    batch = inputs.datasets.get(inputs.text("raw_key"))  # raw: a batch validation refused is still reported
    profile = profile_from_bytes(body)
    report = detect_drift(profile, batch, drift_share=inputs.number("drift_share"), mode=inputs.text("drift_mode"))
    html = render_report(f"Drift: day {day} vs champion v{version}", report, profile, batch).encode()
    key = inputs.text("report_key")
    digest = hashlib.sha256(html).hexdigest()
    written = inputs.reports.put(key, html, "text/html; charset=utf-8", digest)
    label = label_check(
        day,
        batch,
        version,
        inputs.integers("reference_days"),
        inputs.number("reference_rmse_log"),
        inputs.tracker,
        inputs.number("degradation_tolerance"),
    )
    return StepResult(
        {
            **report_metadata(report, inputs.reports.uri(key), written, key),
            "reference_version": version,
            "rows": len(batch),
            "report_sha256": digest,
        },
        data_version=digest[:16],
        checks=[label, drift_check(report)],
    )


DRIFT = Step(
    "drift_report",
    drift,
    (
        "day",
        "raw_key",
        "report_key",
        "datasets_bucket",
        "reports_bucket",
        "s3_endpoint",
        "tracking_uri",
        "model_name",
        "reference_key",
        "reference_version",
        "reference_days",
        "reference_rmse_log",
        "drift_share",
        "drift_mode",
        "degradation_tolerance",
    ),
    secrets=(TRAINING_SECRET, REPORTS_SECRET, MLFLOW_READER_SECRET),
)

"""`drift_report`, one partition per batch: the batch against the champion's reference profile, and, since
batches carry the true price, the champion's error on labels it never saw.

The work (ml_assets/steps/drift_report.py) runs where the step runner says: in this process, or in a pod in the k3s
target. Here stays what needs the Dagster instance or only this machine: which reference to compare with, the
presigned link to the report (signing needs no network) and its local copy.
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data_drift.reports import ReportsResource
from ml_assets.defs.monitoring.reference import GROUP, reference_profile
from ml_assets.step_runner import StepRunner, check_results, materialize_result
from ml_assets.steps.base import StepResult
from ml_assets.steps.drift_report import DRIFT, DRIFT_CHECK, LABEL_CHECK, no_reference
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, Looking, decides
from platform_core.results import NO_CHANGE, latest_metadata
from platform_core.source_digest import code_digest

INPUTS_KEY = "drift_inputs"  # metadata: drift_inputs() of the report
CHECKS_KEY = "checks"  # metadata: the report's check outcomes


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
    return Reference(str(md["key"]), str(md["champion_version"]), days, float(str(md["holdout_rmse_log"])))


def report_key(model_name: str, day: int) -> str:
    return f"drift/{model_name}/day={day:04d}/report.html"


def drift_params(datasets: DatasetsResource, ref: Reference, day: int) -> dict[str, object]:
    ml = datasets.cfg.ml
    return {
        "day": day,
        "raw_key": datasets.raw_key(day),  # raw: a batch validation refused is still reported
        "report_key": report_key(ml.model_name, day),
        "datasets_bucket": ml.datasets_bucket,
        "reports_bucket": ml.reports_bucket,
        "model_name": ml.model_name,
        "reference_key": ref.key,
        "reference_version": ref.version,
        "reference_days": ref.days,
        "reference_rmse_log": ref.holdout_rmse_log,
        "drift_share": ml.drift_share,
        "drift_mode": ml.drift_mode,
        "degradation_tolerance": ml.degradation_tolerance,
    }


def report_links(reports: ReportsResource, key: str, result: StepResult) -> dict[str, object]:
    """A browser link to the private object, and a local copy (fetched only when it differs from the report)."""
    path = reports.local_path(key)
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest()[:16] != result.data_version:
        body = reports.get(key)
        if body is None:
            raise dg.Failure(f"{reports.uri(key)}: the drift report the step wrote is missing")
        path = reports.local_copy(key, body)
    return {"report_url": dg.MetadataValue.url(reports.link(key)), "report_path": dg.MetadataValue.path(str(path))}


def drift_inputs(datasets: DatasetsResource, batch_hash: str, reference_version: str) -> str:
    """What a report and its two checks are a function of: the stored batch, the champion it is compared with,
    the drift settings and the code that judges (the report's own key is the day's)."""
    ml = datasets.cfg.ml
    parts = [batch_hash, reference_version, ml.drift_share, ml.drift_mode, ml.degradation_tolerance, code_digest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@decides("drift_report", reads=("seaweedfs",), partitioned=True, unknown=UNKNOWN_YET)
def drift_report_change(
    datasets: DatasetsResource,
    reports: ReportsResource,
    partition: str,
    previous: dict[str, object],
    latest: Callable[[str], dict[str, object]],
) -> str:
    """A stored batch gets a report against the current reference (the champion's profile; "none" before the
    first). One made from the same inputs (drift_inputs), still in the bucket as written, would come out the
    same, checks included."""
    day = int(partition)
    batch_hash = datasets.store().stored_hash(datasets.raw_key(day))
    if not batch_hash:
        return NO_CHANGE  # no batch for that day yet: nothing to report on
    reference = str(latest(reference_profile.key.to_user_string()).get("champion_version", "none"))
    same = previous.get(INPUTS_KEY) == drift_inputs(datasets, batch_hash, reference) and CHECKS_KEY in previous
    key = report_key(datasets.cfg.ml.model_name, day)
    return NO_CHANGE if same and reports.store().digest(key) == previous.get("report_sha256") else "would report"


def reused_report(previous: dict[str, dg.MetadataValue]) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The latest report of the partition again, as "no change", with the check results it was judged with."""
    yield dg.MaterializeResult(
        metadata={**previous, "change": dg.MetadataValue.text(NO_CHANGE)},
        data_version=dg.DataVersion(str(previous["report_sha256"].value)[:16]),
    )
    checks: list[dict[str, Any]] = previous[CHECKS_KEY].value  # type: ignore[assignment]  # checks_metadata's list
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check["name"],
            passed=check["passed"],
            severity=dg.AssetCheckSeverity(check["severity"]),
            description=f"{check['description']} (unchanged: same batch, champion, settings and code)",
            metadata=check["metadata"],
        )


def checks_metadata(result: StepResult) -> dict[str, dg.MetadataValue]:
    """The check outcomes beside the report, so a pass with the same inputs can give them again."""
    return {CHECKS_KEY: dg.MetadataValue.json([asdict(check) for check in result.checks])}


def build_drift_report(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"html", "s3"},
        owners=ML_OWNERS,
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
        step_runner: StepRunner,
    ):
        day = int(context.partition_key)
        ref = latest_reference(context.instance)
        if ref is None:  # nothing to compare with: no step, no pod
            result = no_reference()
            yield materialize_result(result)
            yield from check_results(result)
            return
        previous = latest_metadata(context.instance, context.asset_key, context.partition_key)
        plain, latest = {k: v.value for k, v in previous.items()}, Looking({}, context.instance).previous
        if drift_report_change(datasets, reports, context.partition_key, plain, latest) == NO_CHANGE:
            yield from reused_report(previous)  # no batch read, no tests run, no model loaded
            return
        result = step_runner.run_step(context, DRIFT, drift_params(datasets, ref, day))
        key = report_key(datasets.cfg.ml.model_name, day)
        batch_hash = datasets.store().stored_hash(datasets.raw_key(day)) or ""
        yield materialize_result(
            result,
            **(report_links(reports, key, result) if result.data_version else {}),
            **checks_metadata(result),
            **{INPUTS_KEY: dg.MetadataValue.text(drift_inputs(datasets, batch_hash, ref.version))},
        )
        yield from check_results(result)

    return drift_report

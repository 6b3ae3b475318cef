"""`drift_report`, one partition per batch: the batch against the champion's reference profile, and, since
batches carry the true price, the champion's error on labels it never saw.

The work (ml_assets/steps/drift_report.py) runs where the step runner says: in this process, or in a pod in the k3s
target. Here stays what needs the Dagster instance or only this machine: which reference to compare with, the
presigned link to the report (signing needs no network) and its local copy.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data_drift.reports import ReportsResource
from ml_assets.defs.monitoring.reference import GROUP, reference_profile
from ml_assets.step_runner import StepRunner, check_results, materialize_result
from ml_assets.steps.base import StepResult
from ml_assets.steps.drift_report import DRIFT, DRIFT_CHECK, LABEL_CHECK, no_reference
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE


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


@decides("drift_report", reads=("seaweedfs",), partitioned=True, unknown=UNKNOWN_YET)
def drift_report_change(
    datasets: DatasetsResource, partition: str, previous: dict[str, object], latest: Callable[[str], dict[str, object]]
) -> str:
    """A stored batch gets a report against the current reference (the champion's profile; "none" before the
    first); one already made against that reference would come out the same."""
    if not datasets.store().stored_hash(datasets.raw_key(int(partition))):
        return NO_CHANGE  # no batch for that day yet: nothing to report on
    reference = str(latest(reference_profile.key.to_user_string()).get("champion_version", "none"))
    return NO_CHANGE if previous and str(previous.get("reference_version")) == reference else "would report"


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
        else:
            result = step_runner.run_step(context, DRIFT, drift_params(datasets, ref, day))
            key = report_key(datasets.cfg.ml.model_name, day)
            yield materialize_result(result, **(report_links(reports, key, result) if result.data_version else {}))
        yield from check_results(result)

    return drift_report

"""`drift_report`, one partition per batch: the batch against the champion's reference profile, and, since
batches carry the true price, the champion's error on labels it never saw.

The work (ml_assets/steps/drift_report.py) runs where the step runner says: in this process, or in a pod in the k3s
target. Here stays what needs the Dagster instance or only this machine: which reference to compare with, the
presigned link to the report (signing needs no network) and its local copy.
"""

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
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
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE, latest_metadata
from platform_core.source_digest import runtime_digest

INPUTS_KEY = "drift_inputs"  # metadata: drift_inputs() of the report
CHECKS_KEY = "checks"  # metadata: the report's check outcomes
UNCHANGED = "(unchanged: same batch, champion, settings and code)"


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
    return reference_of({k: v.value for k, v in event.asset_materialization.metadata.items()})


def reference_of(md: Mapping[str, object]) -> Reference | None:
    """The reference a reference_profile materialization's metadata describes (None: none made yet)."""
    if "key" not in md:
        return None
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


def report_links(reports: ReportsResource, key: str, data_version: str) -> dict[str, dg.MetadataValue]:
    """A browser link to the private object (signed now: it expires), and a local copy (fetched only when it
    differs from the report)."""
    path = reports.local_path(key)
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest()[:16] != data_version:
        body = reports.get(key)
        if body is None:
            raise dg.Failure(f"{reports.uri(key)}: the drift report the step wrote is missing")
        path = reports.local_copy(key, body)
    return {"report_url": dg.MetadataValue.url(reports.link(key)), "report_path": dg.MetadataValue.path(str(path))}


def drift_inputs(datasets: DatasetsResource, reports: ReportsResource, batch_hash: str, ref: Reference) -> str:
    """What a report and its two checks are a function of: the stored batch, the champion it is compared with
    and that champion's stored profile, the drift settings, and what judges (the code, the libraries the tests and
    the label check run on, and in the k3s target the step's image). The report's own key is the day's."""
    cfg = datasets.cfg
    ml = cfg.ml
    image = cfg.k3s.training.image if cfg.target == "k3s" else None
    profile = reports.store().digest(ref.key)
    parts = [batch_hash, ref.version, profile, ml.drift_share, ml.drift_mode, ml.degradation_tolerance, image]
    judges = runtime_digest(("numpy", "scipy", "pandas", "scikit-learn", "mlflow"))
    return hashlib.sha256(json.dumps([*parts, judges]).encode()).hexdigest()[:16]


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
    ref = reference_of(latest(reference_profile.key.to_user_string()))
    if ref is None:  # no champion yet: the asset records "no reference" (no step), once
        return NO_CHANGE if previous.get("reference_version") == "none" else "would report"
    inputs = drift_inputs(datasets, reports, batch_hash, ref)
    return NO_CHANGE if reusable(datasets, reports, day, inputs, previous) else "would report"


def reusable(
    datasets: DatasetsResource, reports: ReportsResource, day: int, inputs: str, previous: Mapping[str, object]
) -> bool:
    """The partition's last report was made from these inputs (drift_inputs) and is in the bucket as written."""
    written = previous.get("report_sha256")
    if not written or CHECKS_KEY not in previous or previous.get(INPUTS_KEY) != inputs:
        return False
    return reports.store().digest(report_key(datasets.cfg.ml.model_name, day)) == written


def reused_report(
    previous: dict[str, dg.MetadataValue], version: str, links: dict[str, dg.MetadataValue]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The latest report of the partition again, as "no change" (with a link signed now), with the check results
    it was judged with."""
    yield dg.MaterializeResult(
        metadata={**previous, **links, "change": dg.MetadataValue.text(NO_CHANGE)},
        data_version=dg.DataVersion(version),
    )
    checks: list[dict[str, Any]] = previous[CHECKS_KEY].value  # type: ignore[assignment]  # checks_metadata's list
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check["name"],
            passed=check["passed"],
            severity=dg.AssetCheckSeverity(check["severity"]),
            description=f"{check['description']} {UNCHANGED}",
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
        key = report_key(datasets.cfg.ml.model_name, day)
        previous = latest_metadata(context.instance, context.asset_key, context.partition_key)
        plain = {k: v.value for k, v in previous.items()}
        batch_hash = datasets.store().stored_hash(datasets.raw_key(day))
        inputs = drift_inputs(datasets, reports, batch_hash, ref) if batch_hash else None  # before the step reads
        if inputs and reusable(datasets, reports, day, inputs, plain):
            # no batch read, no tests run, no model loaded (the decision `plan` shows: drift_report_change)
            version = str(plain["report_sha256"])[:16]
            yield from reused_report(previous, version, report_links(reports, key, version))
            return
        result = step_runner.run_step(context, DRIFT, drift_params(datasets, ref, day))
        made = {}  # a report written: what it was made from, and its checks, for a later pass to reuse
        if result.data_version and inputs:
            made = {**report_links(reports, key, result.data_version), **checks_metadata(result), INPUTS_KEY: inputs}
        yield materialize_result(result, **made)
        yield from check_results(result)

    return drift_report

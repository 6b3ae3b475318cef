"""`reference_profile`: what drift tests need from the champion's training data, precomputed once per champion."""

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data_drift.reports import ReportsResource
from ml_assets.defs.model.registry import registered_model
from ml_assets.defs.model.training import features
from ml_assets.model.tracking import ModelTracker
from ml_assets.schema import DRIFT_COLUMNS
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE, check_errors_fail
from platform_core.services.mlflow import MlflowResource

if TYPE_CHECKING:  # pandas and the drift engine's numpy load where a profile is made or read, not with the definitions
    import pandas as pd

    from ml_assets.data_drift.engine import ReferenceProfile

GROUP = "ml_monitoring"


@dataclass(frozen=True)
class Champion:
    """The champion as monitoring sees it: which version, trained on which days, with what holdout error."""

    version: str
    days: list[int]
    holdout_rmse_log: float


def current_champion(tracker: ModelTracker) -> Champion:
    champion = tracker.champion()
    if champion is None:
        raise dg.Failure("no champion yet: materialize registered_model first")
    params, metrics = tracker.run_summary(champion.run_id)
    days = [int(day) for day in ast.literal_eval(params.get("days", "[]"))]
    return Champion(champion.version, days, float(metrics["rmse_log"]))


def profile_key(model_name: str, version: str) -> str:
    return f"reference/{model_name}/v{version}.npz"


def training_rows(table: "pd.DataFrame", days: list[int]) -> "pd.DataFrame":
    """The rows the champion was fitted on: its training days, without the holdout."""
    return table[table["day"].isin(days) & ~table["holdout"]]


def _columns_table(profile: "ReferenceProfile") -> str:
    lines = ["| column | kind | distinct | nulls |", "|---|---|---|---|"]
    lines += [f"| {c.name} | {c.kind} | {c.n_unique} | {c.nulls} |" for c in profile.columns.values()]
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    kinds={"numpy", "s3"},
    owners=ML_OWNERS,
    deps=[registered_model, features, dg.AssetKey(["buckets", "reports"])],
    description="Sorted values and category counts of the champion's training rows: the drift reference.",
)
def reference_profile(
    datasets: DatasetsResource, reports: ReportsResource, mlflow_resource: MlflowResource
) -> dg.MaterializeResult:
    from ml_assets.data_drift.engine import ReferenceProfile
    from ml_assets.data_drift.profile_io import profile_digest, profile_to_bytes

    tracker = ModelTracker.of(mlflow_resource)
    champion = current_champion(tracker)
    rows = training_rows(datasets.store().get(datasets.features_key), champion.days)
    if rows.empty:
        raise dg.Failure(f"features hold no training rows of champion v{champion.version}'s days {champion.days}")
    profile = ReferenceProfile.from_frame(rows, DRIFT_COLUMNS)
    digest = profile_digest(profile)
    key = profile_key(tracker.model_name, champion.version)
    written = reports.put(key, profile_to_bytes(profile), "application/octet-stream", digest=digest)
    return dg.MaterializeResult(
        metadata={
            "change": f"profiled champion v{champion.version}" if written else NO_CHANGE,
            "champion_version": champion.version,
            "training_days": ", ".join(map(str, champion.days)),
            "holdout_rmse_log": champion.holdout_rmse_log,
            "rows": profile.rows,
            "uri": reports.uri(key),
            "key": key,
            "profile_digest": digest,
            "columns": dg.MetadataValue.md(_columns_table(profile)),
        },
        data_version=dg.DataVersion(digest),
    )


@decides("reference_profile", reads=("mlflow_server",), unknown=UNKNOWN_YET)
def reference_profile_change(mlflow_resource: MlflowResource, previous: dict[str, object]) -> str:
    """The champion against the one last profiled (the profile's write is a no-op on an equal digest)."""
    champion = ModelTracker.of(mlflow_resource).champion()
    if champion is None:
        return "blocked: no champion yet"
    if str(previous.get("champion_version")) == champion.version:
        return NO_CHANGE
    return f"would profile champion v{champion.version}'s training rows as the drift reference"


@dg.asset_check(
    asset=reference_profile,
    blocking=True,
    description="The stored profile loads, covers the watched columns and belongs to the current champion.",
)
@check_errors_fail
def reference_matches_champion(
    context: dg.AssetCheckExecutionContext, reports: ReportsResource, mlflow_resource: MlflowResource
) -> dg.AssetCheckResult:
    from ml_assets.data_drift.profile_io import profile_digest, profile_from_bytes

    event = context.instance.get_latest_materialization_event(reference_profile.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, description="reference_profile was never materialized")
    metadata = event.asset_materialization.metadata
    body = reports.get(str(metadata["key"].value))
    if body is None:
        return dg.AssetCheckResult(passed=False, description=f"{metadata['uri'].value} is missing from S3")
    profile = profile_from_bytes(body)
    champion = ModelTracker.of(mlflow_resource).champion()
    problems = [f"column {c} not profiled" for c in DRIFT_COLUMNS if c not in profile.columns]
    if profile_digest(profile) != metadata["profile_digest"].value:
        problems.append("stored profile differs from the materialized one")
    if champion is None or champion.version != str(metadata["champion_version"].value):
        problems.append(f"profiled v{metadata['champion_version'].value}, champion is {champion and champion.version}")
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems)
        or f"v{metadata['champion_version'].value}: {profile.rows} rows, {len(profile.columns)} columns",
    )

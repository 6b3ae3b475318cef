"""The registered model: every trained candidate becomes a registry version; `champion` moves only to a better one."""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.defs.model.training import GROUP, trained_model
from ml_assets.model.tracking import CHAMPION, ModelTracker, Version
from ml_assets.schema import TARGET
from ml_assets.steps.train import Metrics, evaluate, listing_columns
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE, check_errors_fail
from platform_core.services.mlflow import MlflowResource

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide_promotion(
    challenger: Metrics, champion: Metrics | None, quality_floor_r2: float, min_improvement: float
) -> Decision:
    """The first model must reach the quality floor; later ones must beat the champion's holdout RMSE
    (in log price) by `min_improvement` on the same rows."""
    if champion is None:
        if challenger.r2_log >= quality_floor_r2:
            return Decision(True, f"first model: R² {challenger.r2_log:.3f} >= floor {quality_floor_r2}")
        return Decision(False, f"first model: R² {challenger.r2_log:.3f} below floor {quality_floor_r2}")
    bar = champion.rmse_log * (1 - min_improvement)
    if challenger.rmse_log < bar:
        return Decision(
            True,
            f"RMSE(log) {challenger.rmse_log:.4f} < champion's {champion.rmse_log:.4f}"
            + (f" - {min_improvement:.0%}" if min_improvement else ""),
        )
    return Decision(
        False,
        f"RMSE(log) {challenger.rmse_log:.4f} does not beat champion's {champion.rmse_log:.4f}"
        + (f" - {min_improvement:.0%}" if min_improvement else ""),
    )


@decides("registered_model", reads=("seaweedfs", "mlflow_server"), unknown=UNKNOWN_YET)
def registered_model_change(mlflow_resource: MlflowResource, latest: Callable[[str], dict[str, object]]) -> str:
    """The latest trained run has a registry version, or it would be registered and scored against the champion
    (registering is idempotent; the alias moves only for a better model)."""
    run_id = latest(trained_model.key.to_user_string()).get("run_id")
    if run_id is None:
        return "blocked: trained_model has never been materialized"
    tracker = ModelTracker.of(mlflow_resource)
    champion = tracker.champion()
    changes = [] if tracker.version_of_run(str(run_id)) is not None else [f"would register run {run_id}"]
    if champion is not None and tracker.approved_digest(champion.version) is None:
        changes.append(f"would record v{champion.version}'s artifact digest")
    return "; ".join(changes) or NO_CHANGE


def _latest_training_run(context: dg.AssetExecutionContext) -> tuple[str, str]:
    event = context.instance.get_latest_materialization_event(trained_model.key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure("trained_model has never been materialized")
    metadata = event.asset_materialization.metadata
    return str(metadata["run_id"].value), str(metadata["model_uri"].value)


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    owners=ML_OWNERS,
    deps=[trained_model],
    description="The trained model as a registry version; alias `champion` moves to it only if it is better.",
)
def registered_model(
    context: dg.AssetExecutionContext, datasets: DatasetsResource, mlflow_resource: MlflowResource
) -> dg.MaterializeResult:
    cfg = mlflow_resource.cfg
    tracker = ModelTracker.of(mlflow_resource)
    run_id, model_uri = _latest_training_run(context)
    version, created = tracker.register(run_id, model_uri)
    champion = tracker.champion()
    # a champion from before approvals were recorded: its files as they are now become the approved ones, whatever
    # this run registers (else the service refuses it at its next start)
    backfill = _approve_unapproved(tracker, champion)
    if champion is not None and champion.version == version.version:
        return _result(
            backfill or ("no change" if not created else f"registered v{version.version}"),
            tracker,
            version,
            Decision(False, f"v{version.version} is already the champion"),
            None,
            None,
        )
    holdout = _holdout(datasets)
    truth = holdout[TARGET].to_numpy()
    features = listing_columns(holdout)
    challenger_metrics = evaluate(tracker.predict(version.version, features), truth)
    champion_metrics = evaluate(tracker.predict(champion.version, features), truth) if champion else None
    decision = decide_promotion(challenger_metrics, champion_metrics, cfg.ml.quality_floor_r2, cfg.ml.min_improvement)
    if decision.promote:
        tracker.approve(version.version)  # before the alias moves: the service loads only approved files
        tracker.set_champion(version.version)
    tracker.tag(version.version, {"decision": decision.reason, "holdout_rmse_log": challenger_metrics.rmse_log})
    change = (
        f"v{version.version} promoted to {CHAMPION}"
        if decision.promote
        else f"v{version.version} registered, champion stays"
        if created
        else NO_CHANGE
    )
    if backfill:
        change = backfill if change == NO_CHANGE else f"{change}; {backfill}"
    return _result(change, tracker, version, decision, challenger_metrics, champion_metrics)


def _approve_unapproved(tracker: ModelTracker, champion: Version | None) -> str:
    """Approve a champion that carries no approved digest yet; what was done, or ""."""
    if champion is None or tracker.approved_digest(champion.version) is not None:
        return ""
    tracker.approve(champion.version)
    return f"recorded v{champion.version}'s artifact digest"


def _holdout(datasets: DatasetsResource) -> "pd.DataFrame":
    table = datasets.store().get(datasets.features_key)
    return table[table["holdout"]]


def _result(
    change: str,
    tracker: ModelTracker,
    version: Version,
    decision: Decision,
    challenger: Metrics | None,
    champion: Metrics | None,
) -> dg.MaterializeResult:
    current = tracker.champion()
    metadata: dict[str, Any] = {
        "change": change,
        "model": tracker.model_name,
        "version": version.version,
        "champion_version": current.version if current else "none",
        "artifact_sha256": (tracker.approved_digest(current.version) or "none") if current else "none",
        "decision": decision.reason,
        "registry_url": dg.MetadataValue.url(f"{tracker.url}/#/models/{tracker.model_name}"),
    }
    for label, metrics in (("challenger", challenger), ("champion", champion)):
        if metrics is not None:
            metadata.update({f"{label}_{k}": v for k, v in asdict(metrics).items()})
    return dg.MaterializeResult(
        metadata=metadata, data_version=dg.DataVersion(f"{version.version}:{metadata['champion_version']}")
    )


@dg.asset_check(
    asset=registered_model,
    blocking=True,
    description="Alias `champion` resolves to approved files that score the holdout above the quality floor.",
)
@check_errors_fail
def champion_resolves_and_scores(datasets: DatasetsResource, mlflow_resource: MlflowResource) -> dg.AssetCheckResult:
    tracker = ModelTracker.of(mlflow_resource)
    champion = tracker.champion()
    if champion is None:
        return dg.AssetCheckResult(passed=False, description="no version carries the champion alias yet")
    holdout = _holdout(datasets)
    prices = tracker.approved_predictions(champion.version, listing_columns(holdout), mlflow_resource.state.scores)
    metrics = evaluate(prices, holdout[TARGET].to_numpy())
    floor = mlflow_resource.cfg.ml.quality_floor_r2
    return dg.AssetCheckResult(
        passed=all(math.isfinite(price) for price in prices) and metrics.r2_log >= floor,
        description=f"champion v{champion.version}: holdout R²(log) {metrics.r2_log:.3f} (floor {floor}), "
        f"RMSE ${metrics.rmse:,.0f} on {metrics.rows} rows",
        metadata={"champion_version": champion.version, "r2_log": metrics.r2_log},
    )

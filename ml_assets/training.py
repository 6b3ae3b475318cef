"""The training table and the trained model, tracked in MLflow."""

import dagster as dg
import pandas as pd

from ml_assets.data.resources import DatasetsResource
from ml_assets.step_runner import StepRunner
from ml_assets.train_step import (
    HOLDOUT_KEY_COLUMNS,
    OUTLIER_IQR,
    Metrics,
    drop_price_outliers,
    evaluate,
    holdout_mask,
    listing_columns,
)
from platform_core.catalog import ML_OWNERS
from platform_core.results import NO_CHANGE
from platform_core.services.mlflow import MlflowResource

# The pure pieces live in train_step (the training pod imports them without Dagster); importable from here as before.
__all__ = [
    "GROUP",
    "HOLDOUT_KEY_COLUMNS",
    "OUTLIER_IQR",
    "Metrics",
    "drop_price_outliers",
    "evaluate",
    "features",
    "holdout_mask",
    "listing_columns",
    "trained_model",
]

GROUP = "ml_model"


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    owners=ML_OWNERS,
    deps=[dg.AssetKey("validated_batches")],
    description="Every validated batch so far, price outliers dropped, with a stable holdout flag.",
)
def features(datasets: DatasetsResource) -> dg.MaterializeResult:
    store = datasets.store()
    table, days, rows_in = features_table(datasets)
    stored = store.put(datasets.features_key, table)
    return dg.MaterializeResult(
        metadata={
            "change": f"rebuilt from days {days}" if stored.written else NO_CHANGE,
            "uri": store.uri(stored.key),
            "days": ", ".join(map(str, days)),
            "rows": len(table),
            "holdout_rows": int(table["holdout"].sum()),
            "outliers_dropped": rows_in - len(table),
            "content_hash": stored.content_hash,
        },
        data_version=dg.DataVersion(stored.content_hash),
    )


def features_table(datasets: DatasetsResource) -> tuple[pd.DataFrame, list[int], int]:
    """The training table from every validated batch (read only): table, its days, rows before outliers."""
    store, cfg = datasets.store(), datasets.cfg
    days = datasets.validated_days()
    if not days:
        raise dg.Failure("no validated batch yet: materialize raw_batches and validated_batches for a day first")
    frames = [store.get(datasets.validated_key(day)).assign(day=day) for day in days]
    table = drop_price_outliers(pd.concat(frames, ignore_index=True))
    table["holdout"] = holdout_mask(table, cfg.ml.holdout_percent)
    return table, days, sum(map(len, frames))


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow", "scikitlearn"},
    owners=ML_OWNERS,
    deps=[features, dg.AssetKey("mlflow_server")],  # it logs its run to the tracking server
    description="HistGradientBoosting on log price, logged to MLflow with params, metrics and signature.",
)
def trained_model(
    context: dg.AssetExecutionContext,
    datasets: DatasetsResource,
    mlflow_resource: MlflowResource,
    step_runner: StepRunner,
) -> dg.MaterializeResult:
    # in-process (target local) or in a pod through Pipes (target k3s): build_ml_resources picks the runner
    return step_runner.run(context, datasets, mlflow_resource)

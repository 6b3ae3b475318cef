"""The training table and the trained model, tracked in MLflow."""

from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.store import frame_hash
from ml_assets.model.tracking import ModelTracker
from ml_assets.step_runner import StepRunner, materialize_result
from ml_assets.steps.train import TRAIN, drop_price_outliers, holdout_mask
from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE, previous_metadata
from platform_core.services.mlflow import MlflowResource

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

CARRIED_KEYS = ("run_id", "run_url", "model_uri", "features_hash")  # what a "no change" pass shows again
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


@decides("features", reads=("seaweedfs",), unknown=UNKNOWN_YET)
def features_change(datasets: DatasetsResource) -> str:
    """The table every validated batch makes now against the stored one (`TableStore.holds`, as `put` decides)."""
    table, days, _ = features_table(datasets)
    if datasets.store().holds(datasets.features_key, table):
        return NO_CHANGE
    return f"would rebuild {datasets.features_key} from validated days {', '.join(map(str, days))}"


def features_table(datasets: DatasetsResource) -> "tuple[pd.DataFrame, list[int], int]":
    """The training table from every validated batch (read only): table, its days, rows before outliers."""

    import pandas as pd

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
    previous = previous_metadata(context)
    if trained_model_change(datasets, mlflow_resource, previous) == NO_CHANGE:  # before any work or pod
        return dg.MaterializeResult(
            metadata={**_carried(previous), "change": NO_CHANGE}, data_version=dg.DataVersion(str(previous["run_id"]))
        )
    cfg = datasets.cfg
    params = {
        "features_key": datasets.features_key,
        "datasets_bucket": cfg.ml.datasets_bucket,
        "experiment": cfg.mlflow.experiment,
        "model_name": cfg.ml.model_name,
    }
    # in-process (target local) or in a pod through Pipes (target k3s): build_ml_resources picks the runner
    return materialize_result(step_runner.run_step(context, TRAIN, params))


@decides("trained_model", reads=("seaweedfs", "mlflow_server"), unknown=UNKNOWN_YET)
def trained_model_change(
    datasets: DatasetsResource, mlflow_resource: MlflowResource, previous: dict[str, object]
) -> str:
    """No change when the stored features table is the one the previous run trained on and that run still exists."""
    table_hash = frame_hash(datasets.store().get(datasets.features_key))
    tracker = ModelTracker.of(mlflow_resource)
    if previous.get("features_hash") == table_hash and tracker.run_exists(str(previous.get("run_id"))):
        return NO_CHANGE
    where = "in a pod (dagster-k8s Pipes)" if datasets.cfg.target == "k3s" else "in process"
    return f"would train on features {table_hash[:12]} {where} and log the run to MLflow"


def _carried(previous: dict[str, object]) -> dict[str, Any]:
    carried = {k: previous[k] for k in CARRIED_KEYS if k in previous}
    carried["run_url"] = dg.MetadataValue.url(str(carried.get("run_url", "")))
    return {**carried, **{k: v for k, v in previous.items() if k.startswith("holdout_")}}

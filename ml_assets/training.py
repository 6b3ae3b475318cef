"""The training table and the trained model, tracked in MLflow."""

from dataclasses import asdict, dataclass

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.store import frame_hash
from ml_assets.model import HousePriceModel
from ml_assets.schema import TARGET
from ml_assets.tracking import ModelTracker
from platform_assets.services.results import NO_CHANGE, previous_metadata
from platform_assets.tracking.mlflow_server import MlflowResource

GROUP = "ml_model"
OWNERS = ["team:ml"]
HOLDOUT_KEY_COLUMNS = ["street", "zip_code", "house_size", "bed", "bath"]
OUTLIER_IQR = 3.0  # in log-price: drops data-entry errors, keeps genuinely expensive houses


@dataclass(frozen=True)
class Metrics:
    rmse_log: float
    r2_log: float
    rmse: float
    mae: float
    rows: int


def listing_columns(table: pd.DataFrame) -> pd.DataFrame:
    """What a model sees of a training-table row: the listing without its price and bookkeeping columns."""
    return table.drop(columns=[TARGET, "holdout", "day"])


def holdout_mask(frame: pd.DataFrame, percent: int) -> np.ndarray:
    """A row is in the holdout by a stable hash of what identifies a listing, so it stays there as batches
    accumulate and every candidate model is scored on the same rows."""
    hashes = pd.util.hash_pandas_object(frame[HOLDOUT_KEY_COLUMNS], index=False).to_numpy()
    return (hashes % 100) < percent


def drop_price_outliers(frame: pd.DataFrame) -> pd.DataFrame:
    log_price = np.log(frame[TARGET].clip(lower=1))
    q1, q3 = np.percentile(log_price, [25, 75])
    spread = OUTLIER_IQR * (q3 - q1)
    return frame[(log_price >= q1 - spread) & (log_price <= q3 + spread)].reset_index(drop=True)


def evaluate(prices: np.ndarray, truth: np.ndarray) -> Metrics:
    log_error = np.log(prices) - np.log(truth)
    log_truth = np.log(truth)
    r2 = 1 - float(np.sum(log_error**2) / np.sum((log_truth - log_truth.mean()) ** 2))
    return Metrics(
        rmse_log=float(np.sqrt(np.mean(log_error**2))),
        r2_log=r2,
        rmse=float(np.sqrt(np.mean((prices - truth) ** 2))),
        mae=float(np.mean(np.abs(prices - truth))),
        rows=len(truth),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    owners=OWNERS,
    deps=[dg.AssetKey("validated_batches")],
    description="Every validated batch so far, price outliers dropped, with a stable holdout flag.",
)
def features(datasets: DatasetsResource) -> dg.MaterializeResult:
    store, cfg = datasets.store(), datasets.cfg
    days = datasets.validated_days()
    if not days:
        raise dg.Failure("no validated batch yet: materialize raw_batches and validated_batches for a day first")
    frames = [store.get(datasets.validated_key(day)).assign(day=day) for day in days]
    table = drop_price_outliers(pd.concat(frames, ignore_index=True))
    table["holdout"] = holdout_mask(table, cfg.ml.holdout_percent)
    stored = store.put(datasets.features_key, table)
    return dg.MaterializeResult(
        metadata={
            "change": f"rebuilt from days {days}" if stored.written else NO_CHANGE,
            "uri": store.uri(stored.key),
            "days": ", ".join(map(str, days)),
            "rows": len(table),
            "holdout_rows": int(table["holdout"].sum()),
            "outliers_dropped": sum(map(len, frames)) - len(table),
            "content_hash": stored.content_hash,
        },
        data_version=dg.DataVersion(stored.content_hash),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow", "scikitlearn"},
    owners=OWNERS,
    deps=[features, dg.AssetKey("mlflow_server")],  # it logs its run to the tracking server
    description="HistGradientBoosting on log price, logged to MLflow with params, metrics and signature.",
)
def trained_model(
    context: dg.AssetExecutionContext, datasets: DatasetsResource, mlflow_resource: MlflowResource
) -> dg.MaterializeResult:
    table = datasets.store().get(datasets.features_key)
    table_hash = frame_hash(table)
    previous = previous_metadata(context)
    tracker = ModelTracker.of(mlflow_resource)
    if previous.get("features_hash") == table_hash and tracker.run_exists(str(previous.get("run_id"))):
        return dg.MaterializeResult(
            metadata={**_carried(previous), "change": NO_CHANGE}, data_version=dg.DataVersion(str(previous["run_id"]))
        )
    train, holdout = table[~table["holdout"]], table[table["holdout"]]
    model = HousePriceModel.train(train, train[TARGET].to_numpy())
    metrics = evaluate(model.predict(None, holdout), holdout[TARGET].to_numpy())
    logged = tracker.log_model_run(
        model,
        params={
            "rows_train": len(train),
            "rows_holdout": len(holdout),
            "days": sorted(int(day) for day in table["day"].unique()),
            "features_hash": table_hash,
            **model.hyperparameters(),
        },
        metrics=asdict(metrics),
        example=listing_columns(holdout).head(3),
    )
    return dg.MaterializeResult(
        metadata={
            "change": f"trained run {logged.run_id}",
            "run_id": logged.run_id,
            "run_url": dg.MetadataValue.url(logged.run_url),
            "model_uri": logged.model_uri,
            "features_hash": table_hash,
            **{f"holdout_{k}": v for k, v in asdict(metrics).items()},
        },
        data_version=dg.DataVersion(logged.run_id),
    )


def _carried(previous: dict[str, object]) -> dict[str, object]:
    keep = ("run_id", "run_url", "model_uri", "features_hash")
    carried = {k: previous[k] for k in keep if k in previous}
    carried["run_url"] = dg.MetadataValue.url(str(carried.get("run_url", "")))
    return {**carried, **{k: v for k, v in previous.items() if k.startswith("holdout_")}}

"""`trained_model`'s step: train on the features table and log the run to MLflow, free of Dagster, so it runs
in-process (local target) and inside the training pod (k3s).

`train_and_log` returns plain metadata values (the run URL as a string); each runner wraps them in its own way
(`dg.MetadataValue.url` in-process, a typed Pipes value from the pod).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ml_assets.data.store import frame_hash
from ml_assets.model.tracking import ModelTracker
from ml_assets.schema import TARGET
from ml_assets.steps.base import Step, StepInputs, StepResult, typed
from platform_core.cluster.secrets import MLFLOW_WRITER_SECRET, TRAINING_SECRET

if TYPE_CHECKING:  # pandas and numpy load where a frame is made or read, not with the code location's definitions
    import numpy as np
    import pandas as pd

HOLDOUT_KEY_COLUMNS = ["street", "zip_code", "house_size", "bed", "bath"]
OUTLIER_IQR = 3.0  # in log-price: drops data-entry errors, keeps genuinely expensive houses
URL_KEYS = ("run_url",)  # metadata shown as links


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

    import pandas as pd

    hashes = pd.util.hash_pandas_object(frame[HOLDOUT_KEY_COLUMNS], index=False).to_numpy()
    return (hashes % 100) < percent


def drop_price_outliers(frame: pd.DataFrame) -> pd.DataFrame:
    import numpy as np

    log_price = np.log(frame[TARGET].clip(lower=1))
    q1, q3 = np.percentile(log_price, [25, 75])
    spread = OUTLIER_IQR * (q3 - q1)
    return frame[(log_price >= q1 - spread) & (log_price <= q3 + spread)].reset_index(drop=True)


def evaluate(prices: np.ndarray, truth: np.ndarray) -> Metrics:
    import numpy as np

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


def train_and_log(table: pd.DataFrame, tracker: ModelTracker) -> dict[str, object]:
    """Train on the non-holdout rows, score on the holdout, log the run; the materialization's metadata."""
    table_hash = frame_hash(table)
    train, holdout = table[~table["holdout"]], table[table["holdout"]]
    from ml_assets.model.estimator import HousePriceModel  # sklearn and mlflow: not at the location's load

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
    return {
        "change": f"trained run {logged.run_id}",
        "run_id": logged.run_id,
        "run_url": logged.run_url,
        "model_uri": logged.model_uri,
        "features_hash": table_hash,
        **{f"holdout_{k}": v for k, v in asdict(metrics).items()},
    }


def train(inputs: StepInputs) -> StepResult:
    table = inputs.datasets.get(inputs.text("features_key"))
    metadata = train_and_log(table, inputs.tracker)
    shown = {k: typed("url", v) if k in URL_KEYS else v for k, v in metadata.items()}
    return StepResult(shown, data_version=str(metadata["run_id"]))


TRAIN = Step(
    "trained_model",
    train,
    ("features_key", "datasets_bucket", "s3_endpoint", "tracking_uri", "experiment", "model_name"),
    secrets=(TRAINING_SECRET, MLFLOW_WRITER_SECRET),
)

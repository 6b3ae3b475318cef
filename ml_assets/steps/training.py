"""`trained_model`: train on the features table, log the run to MLflow (see ml_assets.train_step)."""

from __future__ import annotations

from ml_assets.steps.base import Step, StepInputs, StepResult, typed
from ml_assets.train_step import URL_KEYS, train_and_log


def train(inputs: StepInputs) -> StepResult:
    table = inputs.datasets.get(inputs.text("features_key"))
    metadata = train_and_log(table, inputs.tracker)
    shown = {k: typed("url", v) if k in URL_KEYS else v for k, v in metadata.items()}
    return StepResult(shown, data_version=str(metadata["run_id"]))


TRAIN = Step(
    "trained_model",
    train,
    ("features_key", "datasets_bucket", "s3_endpoint", "tracking_uri", "experiment", "model_name"),
)

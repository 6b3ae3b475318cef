"""The house-price model as MLflow stores it: a pyfunc that takes raw listings and returns prices.

`mlflow models serve` and the registry use `predict` (a DataFrame in). The inference service unwraps the same
object and calls `predict_columns` (columns in, numpy all the way, a bounded thread pool), which skips pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import ThreadpoolController

from ml_assets.model.compiled_trees import CompiledForest
from ml_assets.model.features import FEATURES, FeatureEncoder

# Inspecting the loaded BLAS/OpenMP libraries costs ~1 ms; do it once, not per prediction.
_THREADPOOLS = ThreadpoolController()
# sklearn's predict catches up with the compiled trees near 2,000 rows on two threads (7.0 vs 9.9 ms at 1,000)
COMPILED_MAX_ROWS = 2000
# What MLflow would infer the model needs by loading it in a subprocess and pruning the imports (~3.5 s of every
# training run; tests/unit/test_model_logic.py holds the two lists equal). MLflow pins mlflow itself.
RUNTIME_DISTRIBUTIONS = ("cloudpickle", "mlops-platform", "numpy", "pandas", "scikit-learn", "scipy")


def pip_requirements() -> list[str]:
    """The model's requirements.txt: each distribution its pickle needs, pinned to the one that trained it."""
    return [f"{name}=={version(name)}" for name in RUNTIME_DISTRIBUTIONS]


class HousePriceModel(PythonModel):
    """Log-price gradient boosting on listing features; predictions in dollars."""

    def __init__(
        self, encoder: FeatureEncoder, estimator: HistGradientBoostingRegressor, baseline: np.ndarray, threads: int = 1
    ) -> None:
        self.encoder = encoder
        self.estimator = estimator
        self.baseline = baseline  # per-feature reference values for explanations (training medians)
        self.threads = threads

    @classmethod
    def train(cls, frame: pd.DataFrame, target: np.ndarray, seed: int = 0) -> HousePriceModel:
        encoder = FeatureEncoder.fit(frame)
        features = encoder.transform_frame(frame)
        estimator = HistGradientBoostingRegressor(
            max_iter=300,
            learning_rate=0.06,
            max_leaf_nodes=31,
            min_samples_leaf=10,
            l2_regularization=1.0,
            categorical_features=encoder.categorical_mask,
            random_state=seed,
        )
        with _THREADPOOLS.limit(limits=2):
            estimator.fit(features, np.log(target))
        return cls(encoder, estimator, _typical_values(features, encoder.categorical_mask))

    def hyperparameters(self) -> dict[str, object]:
        keys = ("max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")
        return {key: getattr(self.estimator, key) for key in keys}

    # -- MLflow pyfunc ------------------------------------------------------------------------------------
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        return self._predict_matrix(self.encoder.transform_frame(model_input))

    # -- fast path ----------------------------------------------------------------------------------------
    def predict_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        return self._predict_features(self.encoder.transform_records(records))

    def predict_columns(self, columns: Mapping[str, Sequence[object]]) -> np.ndarray:
        """The serving path: listings field by field (as the service logs them) to numpy, and for small batches
        the compiled trees (bit-identical to sklearn's predict, without its ~3 ms of per-call set-up)."""
        return self._predict_features(self.encoder.transform_columns(columns))

    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        if len(features) > COMPILED_MAX_ROWS:
            return self._predict_matrix(features)
        return np.exp(self._compiled().predict(features))

    def _compiled(self) -> CompiledForest:
        compiled = self.__dict__.get("_forest")
        if compiled is None:  # built on first use after loading; never pickled with the model
            compiled = self.__dict__["_forest"] = CompiledForest.from_estimator(self.estimator)
        return compiled

    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key != "_forest"}

    def _predict_matrix(self, features: np.ndarray) -> np.ndarray:
        with _THREADPOOLS.limit(limits=self.threads):
            return np.exp(self.estimator.predict(features))

    def explain_record(self, record: Mapping[str, object]) -> dict[str, object]:
        """Per-feature contributions by occlusion: how the log price moves when a feature takes its typical value.

        Contributions are in log-price units and as a percentage of the predicted price.
        """
        row = self.encoder.transform_records([record])[0]
        variants = np.repeat(row[None, :], len(FEATURES) + 1, axis=0)
        for i in range(len(FEATURES)):
            variants[i + 1, i] = self.baseline[i]
        logs = self._compiled().predict(variants)
        contributions = {name: float(logs[0] - logs[i + 1]) for i, name in enumerate(FEATURES)}
        ranked = dict(sorted(contributions.items(), key=lambda kv: -abs(kv[1])))
        return {
            "prediction": float(np.exp(logs[0])),
            "contributions_log": ranked,
            "contributions_percent": {k: round(100 * float(np.exp(v) - 1), 2) for k, v in ranked.items()},
            "method": "occlusion to the training median of each feature",
        }


def _typical_values(features: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Median of each numeric feature, most frequent code of each categorical one."""
    typical = np.nanmedian(features, axis=0)
    for i in np.flatnonzero(categorical):
        codes = features[:, i][~np.isnan(features[:, i])]
        typical[i] = np.bincount(codes.astype(int)).argmax() if codes.size else np.nan
    return typical

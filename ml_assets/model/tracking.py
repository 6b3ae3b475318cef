"""The pipeline's use of MLflow: runs, the model registry and the `champion` alias, on the platform's server.

mlflow (and through the model, sklearn) is imported where it is used, not when the code location loads: the
sensors and the UI reload the definitions, and those imports are most of a second.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import numpy as np

from ml_assets.model.approval import DIGEST_TAG, download_version, tree_digest
from platform_core.services.mlflow import MlflowResource
from platform_core.services.mlflow_auth import MlflowIdentity

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.pyfunc import PyFuncModel

    from ml_assets.model.estimator import HousePriceModel

CHAMPION = "champion"
P = ParamSpec("P")
R = TypeVar("R")


def _as_identity(method: Callable[P, R]) -> Callable[P, R]:
    """Every MLflow call of the tracker is made as its identity (MLflow's client reads it from the environment)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        identity = getattr(args[0], "identity", None)
        with identity.acting() if identity is not None else nullcontext():
            return method(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    run_url: str
    model_uri: str


@dataclass(frozen=True)
class Version:
    version: str
    run_id: str


class ModelTracker:
    def __init__(self, url: str, experiment: str, model_name: str, identity: MlflowIdentity | None = None) -> None:
        self.url = url
        self.experiment = experiment
        self.model_name = model_name
        self.identity = identity  # None: whoever the environment names (MLFLOW_TRACKING_USERNAME)

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    @classmethod
    def of(cls, resource: MlflowResource) -> ModelTracker:
        cfg = resource.cfg
        return cls(resource.url, cfg.mlflow.experiment, cfg.ml.model_name, resource.writer)

    @_as_identity
    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    @_as_identity
    def log_model_run(
        self, model: HousePriceModel, params: Mapping[str, object], metrics: Mapping[str, float], example: pd.DataFrame
    ) -> LoggedRun:
        import mlflow
        from mlflow.models import infer_signature

        mlflow.set_tracking_uri(self.url)
        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(dict(metrics))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                input_example=example,
                signature=infer_signature(example, model.predict(None, example)),
            )
        url = f"{self.url}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
        return LoggedRun(run.info.run_id, url, info.model_uri)

    @_as_identity
    def run_summary(self, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """A run's params and metrics, e.g. the training days and holdout errors of the champion's run."""
        data = self.client.get_run(run_id).data
        return dict(data.params), dict(data.metrics)

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        return found.experiment_id if found else self.client.create_experiment(self.experiment)

    # -- registry -----------------------------------------------------------------------------------------
    @_as_identity
    def version_of_run(self, run_id: str) -> Version | None:
        for found in self.client.search_model_versions(f"name='{self.model_name}' and run_id='{run_id}'"):
            return Version(str(found.version), str(found.run_id))
        return None

    @_as_identity
    def register(self, run_id: str, model_uri: str) -> tuple[Version, bool]:
        """The registry version of this run, created if missing; (version, created now)."""
        existing = self.version_of_run(run_id)
        if existing:
            return existing, False
        import mlflow

        mlflow.set_tracking_uri(self.url)
        mlflow.set_registry_uri(self.url)
        created = mlflow.register_model(model_uri, self.model_name)  # resolves MLflow 3's models:/m-<id> URIs
        return Version(created.version, run_id), True

    @_as_identity
    def champion(self) -> Version | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException:
            return None
        return Version(str(found.version), str(found.run_id))

    @_as_identity
    def set_champion(self, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)

    @_as_identity
    def stored_digest(self, version: str) -> str:
        """sha256 of the version's files as the artifact store holds them now."""
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            return tree_digest(download_version(self.url, self.model_name, version, Path(tmp)))

    @_as_identity
    def approved_digest(self, version: str) -> str | None:
        """The digest the promotion gate recorded for the version (None: never approved)."""
        tags = self.client.get_model_version(self.model_name, version).tags
        return tags.get(DIGEST_TAG)

    @_as_identity
    def approve(self, version: str) -> str:
        """Record the digest of the version's files as approved: what the inference service will load."""
        digest = self.stored_digest(version)
        self.tag(version, {DIGEST_TAG: digest})
        return digest

    @_as_identity
    def tag(self, version: str, tags: Mapping[str, object]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, str(value))

    @_as_identity
    def predict(self, version: str, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(_load(self.url, self.model_name, version).predict(frame), dtype=float)


@lru_cache(maxsize=8)
def _load(url: str, name: str, version: str) -> PyFuncModel:
    """A registered version never changes, so one load per process is enough."""
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

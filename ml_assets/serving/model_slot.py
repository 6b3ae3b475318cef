"""The served model and its hot swap.

Requests read `ModelSlot.current` once and keep that reference to the end, so a reload only has to replace one
attribute: requests in flight finish on the old model, new ones get the new model, none ever waits for a load.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ml_assets.model.approval import download_version, verified
from ml_assets.model.estimator import HousePriceModel
from ml_assets.serving.settings import ServingSettings


class NoChampionError(LookupError):
    """The registry has no version under the alias (yet): a normal state before the first training."""


@dataclass(frozen=True)
class LoadedModel:
    model: HousePriceModel
    name: str
    version: str
    alias: str
    run_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def info(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "loaded_at": self.loaded_at,
        }


@dataclass(frozen=True)
class ReloadResult:
    previous: LoadedModel | None
    current: LoadedModel

    @property
    def changed(self) -> bool:
        return self.previous is None or self.previous.version != self.current.version


class ModelSlot:
    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.current: LoadedModel | None = None
        self._reload_lock = threading.Lock()  # two concurrent reloads would download the same model twice
        self._client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        # pyfunc.load_model resolves models:/ URIs through the process-wide URIs only
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)

    def reload(self) -> ReloadResult:
        """Load the version the alias points at now, unless it is the one already served."""
        name, alias = self.settings.model_name, self.settings.alias
        with self._reload_lock:
            previous = self.current
            try:
                version = self._client.get_model_version_by_alias(name, alias)
            except MlflowException as err:
                if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or (
                    err.error_code == "PERMISSION_DENIED" and not self._model_exists(name)
                ):
                    raise NoChampionError(f"model {name!r} has no version with alias {alias!r}") from err
                raise
            if previous is not None and previous.version == version.version:
                return ReloadResult(previous, previous)
            loaded = self._load(version.version, version.run_id, dict(version.tags))
            self.current = loaded  # the swap: one reference assignment, atomic under the GIL
            return ReloadResult(previous, loaded)

    def _model_exists(self, name: str) -> bool:
        """MLflow's auth app answers a read-only user 403, not 404, for a model that does not exist (it cannot
        resolve the model's workspace); a search, which the reader may run, tells the two apart."""
        return bool(self._client.search_registered_models(filter_string=f"name = '{name}'", max_results=1))

    def _load(self, version: str, run_id: str | None, tags: dict[str, str]) -> LoadedModel:
        name = self.settings.model_name
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            # By number, not by alias: the alias may move between resolving it and downloading the model. The
            # files hashed are the files loaded: what the promotion gate approved, or nothing (ModelRejected).
            local = download_version(self.settings.tracking_uri, name, version, Path(tmp))
            verified(local, name, version, tags)
            pyfunc = mlflow.pyfunc.load_model(str(local))
        model = pyfunc.unwrap_python_model()
        if not callable(getattr(model, "predict_columns", None)):
            raise TypeError(f"model {name} v{version} is a {type(model).__name__}, not a HousePriceModel")
        model.threads = self.settings.threads
        model.predict_columns({"house_size": [None]})  # one listing, nothing known: warm up (and prove it predicts)
        metrics = self._client.get_run(run_id).data.metrics if run_id else {}
        return LoadedModel(model, name, version, self.settings.alias, run_id, dict(metrics))

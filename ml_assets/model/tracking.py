"""The pipeline's use of MLflow: runs, the model registry and the `champion` alias, on the platform's server.

mlflow (and through the model, sklearn) is imported where it is used, not when the code location loads: the
sensors and the UI reload the definitions, and those imports are most of a second.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from ml_assets.model.approval import DIGEST_TAG, approved, download_version, tree_digest
from platform_core.services.mlflow import MlflowResource
from platform_core.services.mlflow_auth import MlflowIdentity
from platform_core.services.mlflow_rest import DOES_NOT_EXIST, NO_SUCH_ALIAS, MlflowRest
from platform_core.source_digest import runtime_digest

if TYPE_CHECKING:  # numpy too: the definitions import this module, only the scoring reads arrays
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.pyfunc import PyFuncModel

    from ml_assets.model.estimator import HousePriceModel

CHAMPION = "champion"
RECENT_SECONDS = 60.0  # how long a version's downloaded-and-hashed digest stands for its files (_recent_digest)
_RECENT_DIGESTS: dict[tuple[str, str, str], tuple[float, str]] = {}
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
        """For what writes (a run, a model, a version) and the reads on those paths; the other reads: `rest`."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    @cached_property
    def rest(self) -> MlflowRest:
        """MLflow's REST API for the reads of every pass, without the client's import (services/mlflow_rest.py)."""
        return MlflowRest(self.url, self.identity.auth if self.identity else None)

    @classmethod
    def of(cls, resource: MlflowResource) -> ModelTracker:
        cfg = resource.cfg
        return cls(resource.url, cfg.mlflow.experiment, cfg.ml.model_name, resource.writer)

    def run_exists(self, run_id: str) -> bool:
        found = self.rest.get("runs/get", run_id=run_id)
        return found is not None and found["run"]["info"]["lifecycle_stage"] == "active"

    @_as_identity
    def log_model_run(
        self, model: HousePriceModel, params: Mapping[str, object], metrics: Mapping[str, float], example: pd.DataFrame
    ) -> LoggedRun:
        import mlflow
        from mlflow.models import infer_signature

        from ml_assets.model.estimator import pip_requirements

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
                pip_requirements=pip_requirements(),
            )
        url = f"{self.url}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
        return LoggedRun(run.info.run_id, url, info.model_uri)

    def run_summary(self, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """A run's params and metrics (the latest value of each), e.g. the training days and holdout errors of the
        champion's run."""
        found = self.rest.get("runs/get", run_id=run_id)
        if found is None:
            raise LookupError(f"MLflow run {run_id} does not exist")
        data = found["run"].get("data", {})
        params = {p["key"]: p["value"] for p in data.get("params", [])}
        return params, {m["key"]: float(m["value"]) for m in data.get("metrics", [])}

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        return found.experiment_id if found else self.client.create_experiment(self.experiment)

    # -- registry -----------------------------------------------------------------------------------------
    def version_of_run(self, run_id: str) -> Version | None:
        query = f"name='{self.model_name}' and run_id='{run_id}'"
        for found in (self.rest.get("model-versions/search", filter=query) or {}).get("model_versions", []):
            return Version(str(found["version"]), str(found["run_id"]))
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

    def champion(self) -> Version | None:
        absent = (DOES_NOT_EXIST, NO_SUCH_ALIAS)  # no such model yet, or no version carries the alias
        found = self.rest.get("registered-models/alias", absent, name=self.model_name, alias=CHAMPION)
        return Version(str(found["model_version"]["version"]), str(found["model_version"]["run_id"])) if found else None

    @_as_identity
    def set_champion(self, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)

    @_as_identity
    def stored_digest(self, version: str) -> str:
        """sha256 of the version's files as the artifact store holds them now."""
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            return self._hashed(version, download_version(self.url, self.model_name, version, Path(tmp)))

    def _hashed(self, version: str, root: Path) -> str:
        digest = tree_digest(root)
        _RECENT_DIGESTS[(self.url, self.model_name, version)] = (time.monotonic(), digest)
        return digest

    def _recent_digest(self, version: str) -> str | None:
        """What `stored_digest` (or a load) found at most RECENT_SECONDS ago in this process, if anything: the
        scoring checks of a pass reuse the download the gate or `champion_files_approved` (always a fresh one)
        just made. For that long a swap of the stored files goes unseen by them, not by that check."""
        seen = _RECENT_DIGESTS.get((self.url, self.model_name, version))
        return seen[1] if seen is not None and time.monotonic() - seen[0] < RECENT_SECONDS else None

    @_as_identity
    def approved_digest(self, version: str) -> str | None:
        """The digest the promotion gate recorded for the version (None: never approved)."""
        return self.version_tags(version).get(DIGEST_TAG)

    def version_tags(self, version: str) -> dict[str, str]:
        found = self.rest.get("model-versions/get", name=self.model_name, version=version)
        if found is None:
            raise LookupError(f"model {self.model_name} v{version} is not in the registry")
        return {tag["key"]: tag["value"] for tag in found["model_version"].get("tags", [])}

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
        import numpy as np

        return np.asarray(_load(self.url, self.model_name, version).predict(frame), dtype=float)

    @_as_identity
    def approved_predictions(self, version: str, frame: pd.DataFrame, memo_dir: Path) -> np.ndarray:
        """The version's predictions for `frame` from its approved files only (ModelRejected for any other files).
        Loading the model is most of a check's second (sklearn's import, the unpickling), and the same files on
        the same rows predict the same: a table they scored before is answered from `memo_dir`, kept by the files'
        digest, the code and libraries that score them (`_scoring_code`) and the rows' content, once the files'
        digest is known (downloaded and hashed now, or within RECENT_SECONDS: `_recent_digest`)."""
        import numpy as np

        from ml_assets.data.store import frame_hash

        tags, rows = self.version_tags(version), frame_hash(frame)
        recent = self._recent_digest(version)
        if recent is not None:
            remembered = _remembered(memo_dir, approved(recent, self.model_name, version, tags), rows, len(frame))
            if remembered is not None:
                return remembered
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:  # what is loaded is hashed as loaded
            root = download_version(self.url, self.model_name, version, Path(tmp))
            digest = approved(self._hashed(version, root), self.model_name, version, tags)
            remembered = _remembered(memo_dir, digest, rows, len(frame))
            if remembered is not None:
                return remembered
            prices = np.asarray(_load_files(self.url, root).predict(frame), dtype=float)
        _remember(memo_dir, digest, rows, prices)
        return prices


def _memo(memo_dir: Path, digest: str, rows: str) -> Path:
    return memo_dir / f"{digest[:32]}-{_scoring_code()}-{rows}.npy"


def _remembered(memo_dir: Path, digest: str, rows: str, count: int) -> np.ndarray | None:
    import numpy as np

    with contextlib.suppress(OSError, ValueError):  # none yet, or unreadable: score again
        remembered = np.asarray(np.load(_memo(memo_dir, digest, rows)), dtype=float)
        if remembered.shape == (count,):
            return remembered
    return None


def _remember(memo_dir: Path, digest: str, rows: str, prices: np.ndarray) -> None:
    import numpy as np

    memo = _memo(memo_dir, digest, rows)
    with contextlib.suppress(OSError):  # a read-only state directory only costs the next check a load
        memo_dir.mkdir(parents=True, exist_ok=True)
        partial = memo.with_suffix(f".{os.getpid()}.tmp")
        with partial.open("wb") as handle:
            np.save(handle, prices)
        partial.replace(memo)
        prefix = memo.name.rsplit("-", 1)[0]  # kept: the tables these files scored under this code, no other
        for stale in memo_dir.glob("*.npy"):
            if not stale.name.startswith(prefix):
                stale.unlink(missing_ok=True)


def _scoring_code() -> str:
    """What else decides a prediction besides the files and the rows: the model's class is pickled by reference,
    so the pipeline's code and the libraries it runs on (an upgrade may change a prediction)."""
    return runtime_digest(("scikit-learn", "numpy", "mlflow", "pandas"))


def _load_files(url: str, root: Path) -> PyFuncModel:
    import mlflow

    # MLflow 3 looks the model up in the tracking store even from local files: the platform's, never the default
    # (a sqlite mlflow.db in whatever directory the process stands in)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return mlflow.pyfunc.load_model(str(root))


@lru_cache(maxsize=8)
def _load(url: str, name: str, version: str) -> PyFuncModel:
    """A registered version never changes, so one load per process is enough."""
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")

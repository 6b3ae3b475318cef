"""What every step shares, free of Dagster's orchestration side: its declaration, its inputs and its result.

A step's work is one plain function of `StepInputs` returning a `StepResult`. The in-process runner (target local)
and the pod entrypoint `python -m ml_assets.pipes_step <step>` (target k3s) both call it, with the same extras
(what to do and where services answer: never a secret, since Pipes logs them) and the same environment variables
(the S3 keys, which the pod gets from Secrets through envFrom). The result travels back as JSON and becomes the
same Dagster events in both targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from ml_assets.data.blobs import BlobStore
from ml_assets.data.source import SOURCE_SETTINGS, BatchSourceResource
from ml_assets.data.store import TableStore
from ml_assets.model.tracking import ModelTracker
from platform_core.cluster.secrets import MLFLOW_IDENTITY_ENV, REPORTS_SECRET, SECRET_ENV, TRAINING_SECRET
from platform_core.services.mlflow_auth import MlflowIdentity
from platform_core.services.seaweedfs import s3_client

if TYPE_CHECKING:  # botocore where a client is made (s3_client): the definitions import this module
    from botocore.client import BaseClient

Severity = Literal["ERROR", "WARN"]


class StepRefused(Exception):
    """The step looked at its input and will not go on (e.g. an invalid batch): a one-line reason, not a crash."""


def typed(kind: Literal["md", "url", "table_schema"], value: object) -> dict[str, object]:
    """A metadata value that is not plain text or a number, in the shape Dagster Pipes uses for it."""
    return {"type": kind, "raw_value": value}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    severity: Severity = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """The materialization's metadata (plain values or `typed` ones), its data version, and any check outcomes."""

    metadata: dict[str, object]
    data_version: str | None = None
    checks: list[CheckOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepResult:
        version = data.get("data_version")
        return cls(
            metadata=dict(data["metadata"]),
            data_version=None if version is None else str(version),
            checks=[CheckOutcome(**check) for check in data.get("checks") or []],
        )


@dataclass(frozen=True)
class Step:
    name: str  # the asset's name, and the pod entrypoint's argument
    work: Callable[[StepInputs], StepResult]
    # every extra `work` reads: s3_endpoint, tracking_uri and source_url come from the runner (they depend on where
    # the step runs), the rest from the asset
    extras: tuple[str, ...]
    secrets: tuple[str, ...] = (TRAINING_SECRET,)  # Secrets whose variables `work` needs

    def missing_extra(self, extras: Mapping[str, object]) -> str | None:
        return next((name for name in self.extras if extras.get(name) in (None, "")), None)


def _s3(endpoint: str, access: str, secret: str) -> BaseClient:
    return s3_client(endpoint, access, secret, timeout=10, read_timeout=60, attempts=3)  # tables take a while


class StepInputs:
    """A step's extras and environment, checked before anything is read or written; each error names its input."""

    def __init__(self, step: Step, extras: Mapping[str, object], environ: Mapping[str, str]) -> None:
        missing = step.missing_extra(extras)
        if missing:
            raise ValueError(f"pipes extra {missing!r} is missing or empty")
        for secret in step.secrets:
            for name in SECRET_ENV[secret]:
                if not environ.get(name):
                    raise ValueError(f"environment variable {name} is not set (it comes from the Secret {secret})")
        self.step = step
        self._extras = dict(extras)
        self._environ = {name: environ[name] for secret in step.secrets for name in SECRET_ENV[secret]}

    def _value(self, name: str) -> object:
        if name not in self.step.extras:  # keeps each step's declaration (and so the pod's extras) complete
            raise KeyError(f"step {self.step.name} reads extra {name!r} it does not declare")
        return self._extras[name]

    def text(self, name: str) -> str:
        value = self._value(name)
        if not isinstance(value, str):
            raise ValueError(f"pipes extra {name!r}: {value!r} is not a string")
        return value

    def integer(self, name: str) -> int:
        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pipes extra {name!r}: {value!r} is not an integer")
        return value

    def number(self, name: str) -> float:
        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"pipes extra {name!r}: {value!r} is not a number")
        return float(value)

    def integers(self, name: str) -> list[int]:
        value = self._value(name)
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"pipes extra {name!r}: {value!r} is not a list of integers")
        return list(value)

    def _client(self, secret: str) -> BaseClient:
        access, key = (self._environ[name] for name in SECRET_ENV[secret])
        return _s3(self.text("s3_endpoint"), access, key)

    @cached_property
    def datasets(self) -> TableStore:
        return TableStore(self._client(TRAINING_SECRET), self.text("datasets_bucket"))

    @cached_property
    def reports(self) -> BlobStore:
        return BlobStore(self._client(REPORTS_SECRET), self.text("reports_bucket"))

    @cached_property
    def tracker(self) -> ModelTracker:
        # only training logs runs, so only it names an experiment
        experiment = self.text("experiment") if "experiment" in self.step.extras else ""
        user, password = (self._environ.get(name) for name in MLFLOW_IDENTITY_ENV)
        if not (user and password):
            raise KeyError(f"step {self.step.name} uses MLflow but declares no MLflow identity Secret")
        return ModelTracker(
            self.text("tracking_uri"), experiment, self.text("model_name"), MlflowIdentity(user, password)
        )

    @cached_property
    def source(self) -> BatchSourceResource:
        settings: dict[str, Any] = {name: self._value(name) for name in SOURCE_SETTINGS}  # the resource checks them
        return BatchSourceResource(base_url=self.text("source_url"), **settings)

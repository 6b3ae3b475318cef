"""The ML location's part of `platformctl plan`: what materializing each ML asset would change, by reading what
is there (S3 tables, the MLflow registry, the served model, the Dagster instance) and writing nothing.

Each answer repeats the asset's own "no change" test: a stored table with the same content hash, a trained run for
the same features hash, the champion already served, the reference already profiled for that champion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.store import frame_hash
from ml_assets.defs.model.training import features_table
from ml_assets.model.tracking import ModelTracker, Version
from ml_assets.serving.resource import InferenceResource
from platform_core.results import NO_CHANGE, first_line
from platform_core.services.mlflow import MlflowResource


@dataclass
class MlPlan:
    resources: dict[str, object]
    instance: dg.DagsterInstance | None  # None: no run recorded yet
    up: set[str]  # the services that answer now (platformctl.plan.reachable)

    @property
    def datasets(self) -> DatasetsResource:
        return self.resources["datasets"]  # type: ignore[return-value]

    @cached_property
    def tracker(self) -> ModelTracker:
        return ModelTracker.of(self.resources["mlflow_resource"])  # type: ignore[arg-type]

    @cached_property
    def champion(self) -> Version | None:
        return self.tracker.champion()

    @cached_property
    def features_hash(self) -> str:
        return frame_hash(features_table(self.datasets)[0])

    def latest(self, asset: str) -> dict[str, object]:
        """The metadata of the asset's latest materialization, {} if none."""
        event = self.instance.get_latest_materialization_event(dg.AssetKey(asset)) if self.instance else None
        if event is None or event.asset_materialization is None:
            return {}
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def days(self, stage: str) -> set[int]:
        return set(self.datasets.stored_days(stage))


def _days(days: list[int]) -> str:
    return ", ".join(map(str, days))


def _missing(plan: MlPlan, have: set[int], verb: str) -> str:
    missing = sorted(set(range(plan.datasets.cfg.ml.batches)) - have)
    return f"would {verb} days {_days(missing)}" if missing else NO_CHANGE


def plan_experiment(plan: MlPlan) -> str:
    mlflow: MlflowResource = plan.resources["mlflow_resource"]  # type: ignore[assignment]
    name = mlflow.cfg.mlflow.experiment
    return NO_CHANGE if mlflow.get_experiment(name) else f"would create the experiment {name}"


def plan_features(plan: MlPlan) -> str:
    stored = plan.datasets.store().stored_hash(plan.datasets.features_key)
    if stored == plan.features_hash:
        return NO_CHANGE
    return f"would rebuild {plan.datasets.features_key} from validated days {_days(plan.datasets.validated_days())}"


def plan_trained_model(plan: MlPlan) -> str:
    previous = plan.latest("trained_model")
    if previous.get("features_hash") == plan.features_hash and plan.tracker.run_exists(str(previous.get("run_id"))):
        return NO_CHANGE
    where = "in a pod (dagster-k8s Pipes)" if plan.datasets.cfg.target == "k3s" else "in process"
    return f"would train on features {plan.features_hash[:12]} {where} and log the run to MLflow"


def plan_registered_model(plan: MlPlan) -> str:
    if plan_trained_model(plan) != NO_CHANGE:
        return "would register the new run; the champion alias moves only if it scores better"
    run_id = str(plan.latest("trained_model").get("run_id"))
    version = plan.tracker.version_of_run(run_id)
    if version is None:
        return f"would register run {run_id} and compare it with the champion"
    return NO_CHANGE


def plan_deployed_model(plan: MlPlan) -> str:
    if plan.champion is None:
        return "blocked: no champion yet (registered_model promotes one)"
    inference: InferenceResource = plan.resources["inference_resource"]  # type: ignore[assignment]
    try:
        served = inference.model_info()
    except Exception:  # not up yet: the inference service asset starts it first
        served = None
    if served and str(served.get("version")) == plan.champion.version:
        return NO_CHANGE
    return f"would load champion v{plan.champion.version} (serving: v{served.get('version') if served else 'none'})"


def plan_reference(plan: MlPlan) -> str:
    if plan.champion is None:
        return "blocked: no champion yet"
    if str(plan.latest("reference_profile").get("champion_version")) == plan.champion.version:
        return NO_CHANGE
    return f"would profile champion v{plan.champion.version}'s training rows as the drift reference"


def plan_drift_reports(plan: MlPlan) -> str:
    done = plan.instance.get_materialized_partitions(dg.AssetKey("drift_report")) if plan.instance else set()
    todo = sorted(plan.days("raw") - {int(day) for day in done})
    return f"would report days {_days(todo)} against the reference" if todo else NO_CHANGE


# What each answer reads through; while one of them is down the asset can only be said to run after it.
READS = {
    "ml_experiment": ["mlflow_server"],
    "raw_batches": ["seaweedfs"],
    "validated_batches": ["seaweedfs"],
    "drift_report": ["seaweedfs"],
    "features": ["seaweedfs"],
    "trained_model": ["seaweedfs", "mlflow_server"],
    "registered_model": ["seaweedfs", "mlflow_server"],
    "deployed_model": ["mlflow_server"],
    "reference_profile": ["mlflow_server"],
}

PLANNERS: dict[str, Callable[[MlPlan], str]] = {
    "ml_experiment": plan_experiment,
    "raw_batches": lambda plan: _missing(plan, plan.days("raw"), "fetch"),
    "validated_batches": lambda plan: _missing(plan, plan.days("validated"), "validate"),
    "drift_report": plan_drift_reports,
    "features": plan_features,
    "trained_model": plan_trained_model,
    "registered_model": plan_registered_model,
    "deployed_model": plan_deployed_model,
    "reference_profile": plan_reference,
    "prediction_log": lambda plan: "observed only: the inference service writes it",
}


def ml_plan(plan: MlPlan, wanted: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    for asset, planner in PLANNERS.items():
        if not wanted(asset):
            continue
        down = [service for service in READS.get(asset, []) if service not in plan.up]
        if down:
            yield asset, f"would run once {' and '.join(down)} {'is' if len(down) == 1 else 'are'} up"
            continue
        try:
            yield asset, planner(plan)
        except Exception as err:  # what blocks one asset (a service not up yet) does not hide the others
            yield asset, f"cannot tell yet: {first_line(err)}"

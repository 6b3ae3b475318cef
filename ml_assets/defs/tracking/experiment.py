"""The ML location's foothold on the platform: the MLflow experiment the model pipeline logs into."""

import dagster as dg

from platform_core.catalog import ML_OWNERS
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.results import NO_CHANGE, check_errors_fail
from platform_core.services.mlflow import MlflowResource

# Upstreams live in the platform code location; lineage crosses locations through these keys.
MLFLOW_SERVER = dg.AssetKey("mlflow_server")
GROUP = "ml_tracking"


@decides("ml_experiment", reads=("mlflow_server",), unknown=UNKNOWN_YET)
def experiment_change(mlflow_resource: MlflowResource) -> str:
    """The cases `MlflowResource.ensure_experiment` acts on: missing (created), deleted (restored), active."""
    name = mlflow_resource.cfg.mlflow.experiment
    experiment = mlflow_resource.get_experiment(name)
    if experiment is None:
        return f"would create the experiment {name}"
    return NO_CHANGE if experiment["lifecycle_stage"] == "active" else f"would restore the experiment {name}"


def build_experiment_asset(datasets_bucket: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        group_name=GROUP,
        kinds={"mlflow"},
        owners=ML_OWNERS,
        deps=[MLFLOW_SERVER, datasets_bucket],
        description="The MLflow experiment of the model pipeline (platform.yaml mlflow.experiment).",
    )
    def ml_experiment(mlflow_resource: MlflowResource) -> dg.MaterializeResult:
        experiment_id, created = mlflow_resource.ensure_experiment(mlflow_resource.cfg.mlflow.experiment)
        return dg.MaterializeResult(
            metadata={
                "change": "created" if created else NO_CHANGE,
                "experiment": mlflow_resource.cfg.mlflow.experiment,
                "experiment_id": experiment_id,
                "url": dg.MetadataValue.url(f"{mlflow_resource.url}/#/experiments/{experiment_id}"),
            },
            data_version=dg.DataVersion(experiment_id),
        )

    return ml_experiment


@dg.asset_check(
    asset=dg.AssetKey("ml_experiment"),
    blocking=True,
    description="The experiment resolves by name through the MLflow REST API and is active.",
)
@check_errors_fail
def experiment_resolves(mlflow_resource: MlflowResource) -> dg.AssetCheckResult:
    name = mlflow_resource.cfg.mlflow.experiment
    experiment = mlflow_resource.get_experiment(name)
    active = experiment is not None and experiment["lifecycle_stage"] == "active"
    return dg.AssetCheckResult(
        passed=active,
        description=f"experiment {name}: "
        + (f"id {experiment['experiment_id']}, {experiment['lifecycle_stage']}" if experiment else "not found"),
    )

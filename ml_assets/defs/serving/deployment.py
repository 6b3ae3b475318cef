"""Serving: the inference service process, and the champion deployed into it."""

import time
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np

from ml_assets.data.resources import DatasetsResource
from ml_assets.defs.model.registry import registered_model
from ml_assets.model.tracking import ModelTracker
from ml_assets.serving.resource import InferenceResource
from ml_assets.steps.train import listing_columns
from platform_core.alerting.service_drift import service_change
from platform_core.catalog import ML_OWNERS
from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.config import PlatformConfig
from platform_core.decisions import UNKNOWN_YET, decides
from platform_core.host.resource import HostResource
from platform_core.results import NO_CHANGE, check_errors_fail, loopback_only, service_result
from platform_core.services.mlflow import MlflowResource

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    pass

GROUP = "serving"
PREDICTION_LOG = dg.AssetKey("prediction_log")  # observed (defs/serving/observe.py), written by the service
PROBE_ROWS = 5
TOLERANCE = 1e-6  # relative: the service and the registry run the same model on the same features


@dg.asset(
    group_name=GROUP,
    kinds={"fastapi"},
    owners=ML_OWNERS,
    deps=[dg.AssetKey("mlflow_server"), dg.AssetKey(["buckets", "predictions"])],
    description="The FastAPI inference service (predict, explain, metrics, a web page), supervised locally.",
)
def inference_service(inference_resource: InferenceResource) -> dg.MaterializeResult:
    result = inference_resource.ensure_server()
    return service_result(
        inference_resource.supervisor,
        "inference",
        result,
        {
            "url": dg.MetadataValue.url(inference_resource.url),
            "docs": dg.MetadataValue.url(f"{inference_resource.url}/docs"),
        },
    )


@decides("inference_service", target="local")
def inference_service_change(inference_resource: InferenceResource, host_resource: HostResource) -> str:
    return service_change(inference_resource, host_resource)


@dg.asset_check(asset=inference_service, blocking=True, description="The inference service listens on 127.0.0.1 only.")
@check_errors_fail
def inference_loopback_only(inference_resource: InferenceResource) -> dg.AssetCheckResult:
    return loopback_only(inference_resource.supervisor, "inference")


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow", "fastapi"},
    owners=ML_OWNERS,
    deps=[registered_model, dg.AssetKey("inference_service")],  # local process or Argo CD-deployed
    description="The champion, loaded by the running inference service (a reload drops no request).",
)
def deployed_model(
    context: dg.AssetExecutionContext, inference_resource: InferenceResource, mlflow_resource: MlflowResource
) -> dg.MaterializeResult:
    champion = ModelTracker.of(mlflow_resource).champion()
    if champion is None:
        raise dg.Failure("no model carries the champion alias yet: nothing to deploy")
    if deployed_model_change(inference_resource, mlflow_resource) == NO_CHANGE:
        change = NO_CHANGE
    else:
        reload = inference_resource.reload()
        previous = reload.get("previous_version")
        change = f"loaded v{reload['version']}" if previous is None else f"reloaded v{previous} -> v{reload['version']}"
    if not context.instance.fetch_observations(PREDICTION_LOG, limit=1).records:
        # A brand-new log has had no chance to be written: the deployment is its last update, so its last-update
        # check starts its window now instead of failing on the first tick ("never observed") of a fresh stack.
        started: dict[str, Any] = {
            "dagster/last_updated_timestamp": dg.MetadataValue.timestamp(time.time()),
            "files": 0,
        }
        context.log_event(dg.AssetObservation(asset_key=PREDICTION_LOG, metadata=started))
    return dg.MaterializeResult(
        metadata={
            "change": change,
            "version": champion.version,
            "run_id": champion.run_id,
            "predict_url": dg.MetadataValue.url(f"{inference_resource.url}/"),
        },
        data_version=dg.DataVersion(champion.version),
    )


@decides("deployed_model", reads=("mlflow_server",), unknown=UNKNOWN_YET)
def deployed_model_change(inference_resource: InferenceResource, mlflow_resource: MlflowResource) -> str:
    """The champion against the version the inference service serves (none while it is not up)."""
    champion = ModelTracker.of(mlflow_resource).champion()
    if champion is None:
        return "blocked: no champion yet (registered_model promotes one)"
    try:
        served = inference_resource.model_info()
    except Exception:  # not up yet: the inference service asset starts it first
        served = None
    if served and str(served.get("version")) == champion.version:
        return NO_CHANGE
    return f"would load champion v{champion.version} (serving: v{served.get('version') if served else 'none'})"


@dg.asset_check(
    asset=deployed_model,
    blocking=True,
    description="Real requests to the service match the registry champion's own predictions.",
)
@check_errors_fail
def serves_registry_predictions(
    inference_resource: InferenceResource, mlflow_resource: MlflowResource, datasets: DatasetsResource
) -> dg.AssetCheckResult:
    import pandas as pd

    tracker = ModelTracker.of(mlflow_resource)
    champion = tracker.champion()
    if champion is None:
        return dg.AssetCheckResult(passed=False, description="no version carries the champion alias")
    table = datasets.store().get(datasets.features_key)
    probe = listing_columns(table[table["holdout"]].head(PROBE_ROWS))
    if probe.empty:
        return dg.AssetCheckResult(passed=False, description="the training table has no holdout rows to probe with")
    expected = tracker.approved_predictions(champion.version, probe, mlflow_resource.state.scores)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in probe.to_dict("records")]
    served = np.array([inference_resource.predict(record) for record in records])
    worst = float(np.max(np.abs(served - expected) / expected))
    version = (inference_resource.model_info() or {}).get("version")
    return dg.AssetCheckResult(
        passed=worst <= TOLERANCE and str(version) == champion.version,
        description=f"service v{version} vs registry v{champion.version}: worst relative difference {worst:.2e} "
        f"over {len(records)} holdout listings",
        metadata={"worst_relative_difference": worst},
    )


@dg.asset_check(
    asset=deployed_model,
    blocking=True,
    description="The champion's files in the artifact store are the ones the promotion gate approved (sha256).",
)
@check_errors_fail
def champion_files_approved(mlflow_resource: MlflowResource) -> dg.AssetCheckResult:
    tracker = ModelTracker.of(mlflow_resource)
    champion = tracker.champion()
    if champion is None:
        return dg.AssetCheckResult(passed=False, description="no version carries the champion alias")
    approved, stored = tracker.approved_digest(champion.version), tracker.stored_digest(champion.version)
    return dg.AssetCheckResult(
        passed=approved is not None and approved == stored,
        description=f"champion v{champion.version}: its files' sha256 {stored}, approved {approved or 'none'}",
        metadata={"artifact_sha256": stored},
    )


def serving_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """The inference service (supervised here, or Argo CD's pod in the k3s target) and the champion deployed in it."""
    if cfg.target == "k3s":
        deps = ["gitops", "mlflow_server", "buckets/predictions"]
        service = cluster_service_asset(cluster_spec("inference_service", GROUP, deps, "The inference API."))
        local_checks = []
    else:
        service, local_checks = inference_service, [inference_loopback_only]
    return dg.Definitions(
        assets=[service, deployed_model],
        asset_checks=[*local_checks, serves_registry_predictions, champion_files_approved],
    )

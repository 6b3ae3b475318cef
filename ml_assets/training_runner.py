"""Where `trained_model` trains: in this process (target local) or as a pod through dagster-k8s Pipes (target k3s).

Both runners share the "no change" decision, made here before any work: the features table's hash and the
previous run are compared as before, so an unchanged table never starts a pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_k8s import PipesK8sClient
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from ml_assets.data.resources import DatasetsResource
from ml_assets.data.store import frame_hash
from ml_assets.tracking import ModelTracker
from ml_assets.train_step import URL_KEYS, train_and_log
from platform_assets.cluster.render_base import hardened, labels, resources
from platform_assets.cluster.render_ml import MLFLOW, PLATFORM_UID
from platform_assets.cluster.render_storage import SEAWEEDFS, service_dns
from platform_assets.resources_base import PlatformResource
from platform_assets.services.results import NO_CHANGE, previous_metadata
from platform_assets.tracking.mlflow_server import MlflowResource

ASSET = "trained_model"
TRAINING_SECRET = "training-env"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY of the datasets bucket's owner
CONTAINER = "training"
COMMAND = ["python", "-m", "ml_assets.pipes_train"]
CARRIED_KEYS = ("run_id", "run_url", "model_uri", "features_hash")


class TrainingRunner(dg.ConfigurableResource):
    """The interface `trained_model` delegates to; subclasses say where `train` happens."""

    def run(
        self, context: dg.AssetExecutionContext, datasets: DatasetsResource, mlflow_resource: MlflowResource
    ) -> dg.MaterializeResult:
        table = datasets.store().get(datasets.features_key)
        unchanged = unchanged_result(context, frame_hash(table), ModelTracker.of(mlflow_resource))
        return unchanged or self.train(context, table, datasets, mlflow_resource)

    def train(
        self,
        context: dg.AssetExecutionContext,
        table: pd.DataFrame,
        datasets: DatasetsResource,
        mlflow_resource: MlflowResource,
    ) -> dg.MaterializeResult:
        raise NotImplementedError(f"{type(self).__name__} does not say where training runs")


def unchanged_result(
    context: dg.AssetExecutionContext, table_hash: str, tracker: ModelTracker
) -> dg.MaterializeResult | None:
    """The previous materialization again, marked "no change", when the same table's run still exists."""
    previous = previous_metadata(context)
    if previous.get("features_hash") != table_hash or not tracker.run_exists(str(previous.get("run_id"))):
        return None
    return dg.MaterializeResult(
        metadata={**_carried(previous), "change": NO_CHANGE}, data_version=dg.DataVersion(str(previous["run_id"]))
    )


def _carried(previous: dict[str, object]) -> dict[str, object]:
    carried = {k: previous[k] for k in CARRIED_KEYS if k in previous}
    carried["run_url"] = dg.MetadataValue.url(str(carried.get("run_url", "")))
    return {**carried, **{k: v for k, v in previous.items() if k.startswith("holdout_")}}


class LocalTrainingRunner(TrainingRunner):
    """Target local: train in the step's own process, as the platform always did."""

    def train(
        self,
        context: dg.AssetExecutionContext,
        table: pd.DataFrame,
        datasets: DatasetsResource,
        mlflow_resource: MlflowResource,
    ) -> dg.MaterializeResult:
        metadata = train_and_log(table, ModelTracker.of(mlflow_resource))
        shown = {k: dg.MetadataValue.url(str(v)) if k in URL_KEYS else v for k, v in metadata.items()}
        return dg.MaterializeResult(metadata=shown, data_version=dg.DataVersion(str(metadata["run_id"])))


class K8sPipesTrainingRunner(PlatformResource, TrainingRunner):
    """Target k3s: one pod per training (image and resources from `k3s.training`) in `k3s.namespace`, reporting
    back through Pipes in its log. The pod reaches MLflow and S3 by their Services unless told otherwise."""

    tracking_uri: str | None = None  # default: the MLflow Service's cluster DNS name
    s3_endpoint: str | None = None  # default: the SeaweedFS S3 Service's cluster DNS name
    poll_interval: float = 2.0
    pod_wait_timeout: float = 4 * 3600.0

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state_dir) / "kubeconfig"

    def client(self) -> PipesK8sClient:
        if not self.kubeconfig.is_file():
            raise dg.Failure(f"{self.kubeconfig}: no kubeconfig; install the k3s target (platform_up) first")
        return PipesK8sClient(
            load_incluster_config=False, kubeconfig_file=str(self.kubeconfig), poll_interval=self.poll_interval
        )

    def require_secret(self) -> None:
        """A pod whose envFrom Secret is missing waits in CreateContainerConfigError, which dagster-k8s polls
        for hours: say so at once instead, before any pod exists. Only the Secret's existence is looked at."""
        namespace = self.cfg.k3s.namespace
        with k8s_config.new_client_from_config(config_file=str(self.kubeconfig)) as api:
            try:
                k8s.CoreV1Api(api).read_namespaced_secret(TRAINING_SECRET, namespace)
            except k8s.ApiException as err:
                if err.status != 404:
                    raise
                raise dg.Failure(
                    f"Secret {namespace}/{TRAINING_SECRET} is missing: the platform creates it with the S3 keys "
                    "of the datasets bucket's owner (materialize the k3s platform assets first)"
                ) from None

    def pod_spec(self) -> dict[str, Any]:
        training = self.cfg.k3s.training
        container = {
            "name": CONTAINER,
            "image": training.image,
            "command": COMMAND,
            # requests = limits: the pod is Guaranteed, so a busy node neither starves nor evicts it mid-run
            "resources": resources(training.cpu, training.memory, training.cpu, training.memory),
            "envFrom": [{"secretRef": {"name": TRAINING_SECRET}}],  # S3 keys: never in extras, which are logged
            "securityContext": hardened(PLATFORM_UID),
        }
        return {
            "containers": [container],
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        }

    def extras(self, datasets: DatasetsResource) -> dict[str, str]:
        """Everything the pod needs that is not a secret (Pipes extras show up in the run's logs)."""
        cfg = self.cfg
        return {
            "features_uri": f"s3://{cfg.ml.datasets_bucket}/{datasets.features_key}",
            "s3_endpoint": self.s3_endpoint or f"http://{service_dns(SEAWEEDFS, cfg)}:{cfg.services.seaweedfs.s3_port}",
            "tracking_uri": self.tracking_uri or f"http://{service_dns(MLFLOW, cfg)}:{cfg.services.mlflow.port}",
            "experiment": cfg.mlflow.experiment,
            "model_name": cfg.ml.model_name,
        }

    def train(
        self,
        context: dg.AssetExecutionContext,
        table: pd.DataFrame,
        datasets: DatasetsResource,
        mlflow_resource: MlflowResource,
    ) -> dg.MaterializeResult:
        client = self.client()  # fails on a missing kubeconfig before anything is created
        self.require_secret()
        invocation = client.run(
            context=context,
            namespace=self.cfg.k3s.namespace,
            base_pod_meta={"labels": labels(ASSET, CONTAINER)},
            base_pod_spec=self.pod_spec(),
            extras=self.extras(datasets),
            pod_wait_timeout=self.pod_wait_timeout,
        )
        return invocation.get_materialize_result()

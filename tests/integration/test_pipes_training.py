"""`trained_model` through both runners on the real local services (Postgres, SeaweedFS, MLflow).

The k3s runner's pod goes to the Kubernetes API fake (tests/k8s/pipes_fake.py), which runs the pod's command for
real as a local process with the env a kubelet would give it (the `training-env` Secret included); dagster-k8s
reads the Pipes messages back from the pod's log through the API. Features go to their own group and runs to their
own experiment, so other tests' tables and runs are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, PipesDefaultContextLoader, decode_env_var
from mlflow import MlflowClient

from ml_assets.data.dataset import ames_listings
from ml_assets.data.resources import DatasetsResource
from ml_assets.defs.model.training import trained_model
from ml_assets.step_runner import K8sPipesStepRunner, LocalStepRunner, StepRunner
from ml_assets.steps.train import drop_price_outliers, holdout_mask
from platform_core.cluster.secrets import MLFLOW_WRITER_SECRET
from platform_core.services.mlflow import MlflowResource
from platform_core.services.seaweedfs import SeaweedFSResource
from tests.integration.conftest import Stack
from tests.k8s.pipes_fake import PipesCluster, pipes_cluster
from tests.k8s.schemas import validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP = 97  # a features table of its own
EXPERIMENT = "pipes-training-test"
NAMESPACE = "ml-train"
TRAINING = {"image": "registry.example/mlops-platform:9.9.9", "cpu": "750m", "memory": "1536Mi"}
TRAINING_RES = {"cpu": TRAINING["cpu"], "memory": TRAINING["memory"]}
METADATA_KEYS = {
    "change",
    "run_id",
    "run_url",
    "model_uri",
    "features_hash",
    *(f"holdout_{k}" for k in ("rmse_log", "r2_log", "rmse", "mae", "rows")),
}


@dataclass
class Ml:
    config_path: Path
    datasets: DatasetsResource
    mlflow: MlflowResource
    s3: SeaweedFSResource
    where: dict[str, str]


@pytest.fixture(scope="module")
def ml(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Ml:
    """The stack's config with its own features group, experiment and training pod settings, and a features
    table made the way the `features` asset makes it (outliers dropped, stable holdout)."""
    data = yaml.safe_load(stack.config_path.read_text())
    data["ml"] = {**(data.get("ml") or {}), "group_number": GROUP}
    data["mlflow"] = {**(data.get("mlflow") or {}), "experiment": EXPERIMENT}
    data["k3s"] = {**(data.get("k3s") or {}), "namespace": NAMESPACE, "training": TRAINING}
    path = tmp_path_factory.mktemp("pipes") / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    where = {"config_path": str(path), "state_dir": stack.resource("mlflow_resource").state_dir}
    datasets = DatasetsResource(**where)
    listings = ames_listings().head(1200)
    table = drop_price_outliers(listings.assign(day=np.arange(len(listings)) // 400))
    table["holdout"] = holdout_mask(table, datasets.cfg.ml.holdout_percent)
    datasets.store().put(datasets.features_key, table)
    return Ml(path, datasets, MlflowResource(**where), SeaweedFSResource(**where), where)


@pytest.fixture
def cluster(ml: Ml, tmp_path: Path) -> Iterator[PipesCluster]:
    """The fake API with the namespace and the `training-env` Secret the platform creates, and a runner whose
    kubeconfig points at it. The "pod" runs on this machine, so it reaches MLflow and S3 on loopback."""
    with pipes_cluster(tmp_path, REPO, NAMESPACE) as k8s:
        _put_secret(k8s, *ml.s3.state.credentials.s3_keys(ml.datasets.cfg.bucket("datasets").owner))
        k8s.put_secret(MLFLOW_WRITER_SECRET, ml.mlflow.writer.environ())  # the pod logs its run as MLflow's writer
        k8s.runner = K8sPipesStepRunner(
            config_path=str(ml.config_path),
            state_dir=str(k8s.state_dir),
            tracking_uri=ml.mlflow.url,
            s3_endpoint=ml.s3.endpoint,
            poll_interval=0.2,
        )
        yield k8s


def _put_secret(k8s: PipesCluster, access: str, secret: str) -> None:
    k8s.put_secret("training-env", {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret})


def _materialize(ml: Ml, runner: StepRunner, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    resources = {"datasets": ml.datasets, "mlflow_resource": ml.mlflow, "step_runner": runner}
    return dg.materialize([trained_model], instance=instance, resources=resources, raise_on_error=False)


def _materialization(result: dg.ExecuteInProcessResult) -> tuple[dict[str, object], str]:
    assert result.success, _failure(result)
    [mat] = result.asset_materializations_for_node("trained_model")
    return {k: v.value for k, v in mat.metadata.items()}, mat.tags["dagster/data_version"]


def _failure(result: dg.ExecuteInProcessResult) -> str:
    errors = [e.step_failure_data.error for e in result.get_step_failure_events()]
    return "\n".join(err.to_string() for err in errors if err is not None)


def _assert_real_run(ml: Ml, metadata: dict[str, object]) -> None:
    with ml.mlflow.reader.acting():
        run = MlflowClient(tracking_uri=ml.mlflow.url).get_run(str(metadata["run_id"]))
    assert run.info.lifecycle_stage == "active"
    assert run.data.params["features_hash"] == metadata["features_hash"]
    assert run.data.metrics["rmse_log"] == pytest.approx(metadata["holdout_rmse_log"])
    assert str(metadata["run_url"]).endswith(f"/runs/{run.info.run_id}")


def test_pod_trains_logs_to_mlflow_and_reports_through_pipes(ml: Ml, cluster: PipesCluster) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        metadata, version = _materialization(_materialize(ml, cluster.runner, instance))
        assert set(metadata) == METADATA_KEYS
        assert metadata["change"] == f"trained run {metadata['run_id']}"
        assert version == metadata["run_id"]
        assert float(metadata["holdout_r2_log"]) > 0.5  # type: ignore[arg-type]
        _assert_real_run(ml, metadata)

        [pod] = cluster.fake.ran_pods
        validate({"apiVersion": "v1", "kind": "Pod", **pod})
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["metadata"]["labels"]["mlops-platform/asset"] == "trained_model"
        [container] = pod["spec"]["containers"]
        assert container["image"] == TRAINING["image"]
        assert container["resources"] == {"requests": TRAINING_RES, "limits": TRAINING_RES}
        assert container["envFrom"] == [{"secretRef": {"name": s}} for s in ("training-env", "mlflow-writer-env")]
        assert container["command"] == ["python", "-m", "ml_assets.pipes_step", "trained_model"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)  # only through the Secret
        extras = decode_env_var(env[DAGSTER_PIPES_CONTEXT_ENV_VAR])[PipesDefaultContextLoader.DIRECT_KEY]["extras"]
        _, secret = ml.s3.state.credentials.s3_keys("ml")
        assert secret not in str(extras) and secret not in str(container)
        assert (extras["datasets_bucket"], extras["features_key"]) == ("datasets", ml.datasets.features_key)
        assert cluster.api.list_namespaced_pod(NAMESPACE).items == []  # deleted once done

        again, version_again = _materialization(_materialize(ml, cluster.runner, instance))
        assert again["change"] == "no change" and again["run_id"] == metadata["run_id"]
        assert set(again) == METADATA_KEYS and version_again == version
        assert len(cluster.fake.ran_pods) == 1  # nothing changed: no second pod


def test_failing_pod_fails_the_step_with_its_error(ml: Ml, cluster: PipesCluster) -> None:
    cluster.api.delete_namespaced_secret("training-env", NAMESPACE)
    access, _ = ml.s3.state.credentials.s3_keys("ml")
    _put_secret(cluster, access, "not-the-secret-key-of-ml")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(ml, cluster.runner, instance)
    assert not result.success
    message = _failure(result)
    assert "SignatureDoesNotMatch" in message or "AccessDenied" in message, message
    assert "failed with message" in message  # dagster-k8s: the pod's container failed, with its log lines
    assert len(cluster.fake.ran_pods) == 1


def test_missing_secret_fails_before_any_pod(ml: Ml, cluster: PipesCluster) -> None:
    cluster.api.delete_namespaced_secret("training-env", NAMESPACE)
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize(ml, cluster.runner, instance)
    assert not result.success
    assert f"Secret {NAMESPACE}/training-env is missing" in _failure(result)
    assert cluster.fake.ran_pods == []


def test_local_runner_trains_in_process_as_before(ml: Ml) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        metadata, version = _materialization(_materialize(ml, LocalStepRunner(**ml.where), instance))
        assert set(metadata) == METADATA_KEYS
        assert metadata["change"] == f"trained run {metadata['run_id']}" and version == metadata["run_id"]
        _assert_real_run(ml, metadata)
        again, version_again = _materialization(_materialize(ml, LocalStepRunner(**ml.where), instance))
        assert again == {**metadata, "change": "no change"} and version_again == version

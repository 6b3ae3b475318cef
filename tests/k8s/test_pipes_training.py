"""The training runners without services: the pod the k3s runner asks for, its inputs, its refusals, the wiring.

The real Pipes run (pod on the Kubernetes API fake, real MLflow and S3) is tests/integration/test_pipes_training.py.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.pipes_train import EXTRAS, pipes_metadata, settings
from ml_assets.resources import build_ml_resources
from ml_assets.training_runner import K8sPipesTrainingRunner, LocalTrainingRunner
from platform_assets.config import load_config
from platform_assets.state import StateDir
from tests.k8s.pipes_fake import shape_log

REPO = Path(__file__).resolve().parents[2]
TRAINING = {"image": "registry.example/mlops-platform:9.9.9", "cpu": "750m", "memory": "1536Mi"}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "platform.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["k3s"] = {**(data.get("k3s") or {}), "namespace": "ml-train", "training": TRAINING}
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _runner(config_path: Path, **fields: object) -> K8sPipesTrainingRunner:
    return K8sPipesTrainingRunner(config_path=str(config_path), state_dir=str(config_path.parent / "state"), **fields)


def test_pod_spec_is_what_the_config_says(config_path: Path) -> None:
    container = _runner(config_path).pod_spec()["containers"][0]
    assert container["image"] == TRAINING["image"]
    assert container["command"] == ["python", "-m", "ml_assets.pipes_train"]
    assert container["resources"] == {
        "requests": {"cpu": "750m", "memory": "1536Mi"},
        "limits": {"cpu": "750m", "memory": "1536Mi"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "training-env"}}]
    assert container["securityContext"]["runAsNonRoot"] is True


def test_extras_point_at_cluster_services_and_hold_no_secret(config_path: Path) -> None:
    cfg = load_config(config_path)

    class Datasets:  # only features_key is read
        features_key = "features/group=1/training.parquet"

    extras = _runner(config_path).extras(Datasets())  # type: ignore[arg-type]
    assert set(extras) == set(EXTRAS)
    assert extras["features_uri"] == "s3://datasets/features/group=1/training.parquet"
    assert extras["tracking_uri"] == f"http://mlflow.ml-train.svc.cluster.local:{cfg.services.mlflow.port}"
    assert extras["s3_endpoint"] == f"http://seaweedfs.ml-train.svc.cluster.local:{cfg.services.seaweedfs.s3_port}"
    overridden = _runner(config_path, tracking_uri="http://10.0.0.5:5000").extras(Datasets())  # type: ignore[arg-type]
    assert overridden["tracking_uri"] == "http://10.0.0.5:5000"
    assert not any("KEY" in key.upper() or "SECRET" in key.upper() for key in extras)


def test_missing_kubeconfig_fails_naming_the_file(config_path: Path) -> None:
    runner = _runner(config_path)
    with pytest.raises(dg.Failure, match=r"state/kubeconfig: no kubeconfig"):
        runner.client()


@pytest.mark.parametrize(
    ("extras", "environ", "words"),
    [
        ({}, {}, "pipes extra 'features_uri' is missing"),
        ({k: "x" for k in EXTRAS}, {"AWS_ACCESS_KEY_ID": "a"}, "AWS_SECRET_ACCESS_KEY is not set"),
        (
            {**{k: "x" for k in EXTRAS}, "features_uri": "http://bucket/key"},
            {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
            "'features_uri': 'http://bucket/key' is not s3://",
        ),
    ],
)
def test_pod_refuses_bad_inputs_naming_them(extras: dict, environ: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        settings(extras, environ)


def test_pod_settings_split_uri_and_take_keys_from_env() -> None:
    extras = {**{k: k for k in EXTRAS}, "features_uri": "s3://datasets/features/group=1/training.parquet"}
    got = settings(extras, {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"})
    assert (got.bucket, got.key) == ("datasets", "features/group=1/training.parquet")
    assert (got.access_key, got.secret_key, got.tracking_uri) == ("AK", "SK", "tracking_uri")
    assert pipes_metadata({"run_url": "http://m/#/r", "rows": 3}) == {
        "run_url": {"raw_value": "http://m/#/r", "type": "url"},
        "rows": 3,
    }


def test_target_picks_the_runner(config_path: Path) -> None:
    cfg = load_config(config_path)
    state = StateDir(config_path.parent / "state")
    assert isinstance(build_ml_resources(cfg, state, config_path)["training_runner"], LocalTrainingRunner)
    k3s = build_ml_resources(cfg.model_copy(update={"target": "k3s"}), state, config_path)["training_runner"]
    assert isinstance(k3s, K8sPipesTrainingRunner)
    assert k3s.kubeconfig == state.root / "kubeconfig"


def test_fake_log_is_stamped_like_the_kubelet() -> None:
    log = shape_log("a\nb\nc\n", "2026-01-02T03:04:05Z", {"timestamps": "true", "tailLines": "2"})
    assert log == "2026-01-02T03:04:05.000000000Z b\n2026-01-02T03:04:05.000001000Z c\n"

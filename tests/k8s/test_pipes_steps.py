"""The step runners without services: the pods the k3s runner asks for (schema-valid, Secrets the platform
renders), their extras, the entrypoint's refusals of bad input, the result's way back, the wiring per target.

The real Pipes runs (pods on the Kubernetes API fake, real MLflow and S3) are tests/integration/test_pipes_*.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s.pipes import build_pod_body
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR
from kubernetes import client, config

from ml_assets.pipes_step import step_named
from ml_assets.resources import build_ml_resources
from ml_assets.step_runner import APP, K8sPipesStepRunner, LocalStepRunner, materialize_result, reported_result
from ml_assets.steps.base import CheckOutcome, StepInputs, StepResult, typed
from ml_assets.steps.batches import RAW, VALIDATED
from ml_assets.steps.catalog import STEPS
from ml_assets.steps.drift_report import DRIFT
from ml_assets.steps.train import TRAIN
from platform_core.cluster.render_base import labels
from platform_core.cluster.secrets import SECRET_ENV, render_secrets
from platform_core.config import load_config
from platform_core.state import StateDir
from tests.k8s.fake_apiserver import FakeApiServer
from tests.k8s.pipes_fake import shape_log
from tests.k8s.schemas import validate

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "ml-train"
TRAINING = {"image": "registry.example/mlops-platform:9.9.9", "cpu": "750m", "memory": "1536Mi"}
KEYS = {name: "set" for names in SECRET_ENV.values() for name in names}  # every step's variables, filled


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "platform.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["k3s"] = {**(data.get("k3s") or {}), "namespace": NAMESPACE, "training": TRAINING}
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _runner(config_path: Path, **fields: object) -> K8sPipesStepRunner:
    return K8sPipesStepRunner(config_path=str(config_path), state_dir=str(config_path.parent / "state"), **fields)


def _filled(step_name: str) -> dict[str, object]:
    """Extras of the right types for every input the step declares."""
    values: dict[str, object] = {"day": 3, "group_number": 1, "retries": 2, "reference_days": [0, 1]}
    values.update({k: 0.5 for k in ("timeout_seconds", "backoff_seconds", "drift_share", "reference_rmse_log")})
    values["degradation_tolerance"] = 0.25
    return {name: values.get(name, f"<{name}>") for name in STEPS[step_name].extras}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_each_step_pod_is_what_the_config_says(config_path: Path, name: str) -> None:
    spec = _runner(config_path).pod_spec(STEPS[name])
    [container] = spec["containers"]
    assert container["image"] == TRAINING["image"] and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["python", "-m", "ml_assets.pipes_step", name]
    res = {"cpu": "750m", "memory": "1536Mi"}
    assert container["resources"] == {"requests": res, "limits": res}
    wanted = {
        "drift_report": ["training-env", "reports-env", "mlflow-reader-env"],  # loads the champion: MLflow's reader
        "trained_model": ["training-env", "mlflow-writer-env"],  # logs its run: MLflow's writer
    }.get(name, ["training-env"])
    assert container["envFrom"] == [{"secretRef": {"name": secret}} for secret in wanted]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("name", sorted(STEPS))
def test_the_pod_dagster_k8s_sends_validates_against_the_kubernetes_schema(config_path: Path, name: str) -> None:
    step = STEPS[name]
    pod = build_pod_body(
        pod_name="dagster-abc123-" + name.replace("_", "-"),
        image=None,
        command=None,
        env_vars={DAGSTER_PIPES_CONTEXT_ENV_VAR: "e30="},
        base_pod_meta={"labels": labels(step.name, APP)},
        base_pod_spec=_runner(config_path).pod_spec(step),
    )
    body = client.ApiClient().sanitize_for_serialization(pod)
    body = {"apiVersion": "v1", "kind": "Pod", **body, "metadata": {**body["metadata"], "namespace": NAMESPACE}}
    validate(body)
    assert body["metadata"]["labels"]["mlops-platform/asset"] == name
    broken = json.loads(json.dumps(body))
    broken["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"nam": "training-env"}}]
    with pytest.raises(ValueError, match="envFrom"):  # the validation is real: a typo'd field fails
        validate(broken)


def test_every_secret_a_step_reads_is_rendered_with_exactly_its_variables(config_path: Path) -> None:
    cfg = load_config(config_path)
    credentials = StateDir(config_path.parent / "state").ensure().credentials
    rendered = {s["metadata"]["name"]: s for s in render_secrets(cfg, credentials, {}, "")}
    for step in STEPS.values():
        for name in step.secrets:
            assert set(rendered[name]["data"]) == set(SECRET_ENV[name]), name
            assert rendered[name]["metadata"]["namespace"] == NAMESPACE


def test_extras_point_at_cluster_services_and_hold_no_secret(config_path: Path) -> None:
    cfg = load_config(config_path)
    runner = _runner(config_path)
    params = {k: v for k, v in _filled("raw_batches").items() if k not in ("s3_endpoint", "source_url")}
    extras = runner.extras(RAW, params)
    assert set(extras) == set(RAW.extras)
    assert extras["source_url"] == f"http://data-api.{NAMESPACE}.svc.cluster.local:{cfg.services.data_api.port}"
    assert extras["s3_endpoint"] == f"http://seaweedfs.{NAMESPACE}.svc.cluster.local:{cfg.services.seaweedfs.s3_port}"
    drift = runner.extras(DRIFT, {k: v for k, v in _filled("drift_report").items() if k != "tracking_uri"})
    assert drift["tracking_uri"] == f"http://mlflow.{NAMESPACE}.svc.cluster.local:{cfg.services.mlflow.port}"
    assert "source_url" not in drift  # only what the step declares
    overridden = _runner(config_path, source_url="http://10.0.0.5:8001").extras(RAW, params)
    assert overridden["source_url"] == "http://10.0.0.5:8001"
    for step in STEPS.values():
        assert not [e for e in step.extras for word in ("secret", "token", "password", "access") if word in e]


def test_the_seed_api_is_used_when_configured(config_path: Path) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["ml"] = {**data["ml"], "source_url": "http://seed.example:9000"}
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    params = {k: v for k, v in _filled("raw_batches").items() if k != "source_url"}
    assert str(_runner(config_path).extras(RAW, params)["source_url"]).rstrip("/") == "http://seed.example:9000"


def test_a_missing_param_fails_before_any_pod_naming_it(config_path: Path) -> None:
    with pytest.raises(dg.Failure, match="step validated_batches: extra 'validated_key' is missing or empty"):
        _runner(config_path).extras(VALIDATED, {"day": 3, "raw_key": "r", "datasets_bucket": "datasets"})


def test_missing_kubeconfig_fails_naming_the_file(config_path: Path) -> None:
    with pytest.raises(dg.Failure, match=r"state/kubeconfig: no kubeconfig"):
        _runner(config_path).client()


def _put_secret(api: client.CoreV1Api, name: str) -> None:
    data = {k: base64.b64encode(b"x").decode() for k in SECRET_ENV[name]}
    api.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "data": data})


def test_a_missing_secret_is_named_before_any_pod(config_path: Path, fake_api: FakeApiServer) -> None:
    runner = _runner(config_path)
    runner.kubeconfig.parent.mkdir()
    fake_api.write_kubeconfig(runner.kubeconfig)
    with config.new_client_from_config(config_file=str(runner.kubeconfig)) as kube:
        api = client.CoreV1Api(kube)
        api.create_namespace({"metadata": {"name": NAMESPACE}})
        _put_secret(api, "training-env")
        runner.require_secrets(RAW)  # all it needs is there
        with pytest.raises(dg.Failure, match=f"Secret {NAMESPACE}/reports-env is missing: .* drift_report pod"):
            runner.require_secrets(DRIFT)
        _put_secret(api, "reports-env")
        with pytest.raises(dg.Failure, match=f"Secret {NAMESPACE}/mlflow-reader-env is missing"):
            runner.require_secrets(DRIFT)  # it loads the champion, as MLflow's reader
        _put_secret(api, "mlflow-reader-env")
        runner.require_secrets(DRIFT)
        assert api.list_namespaced_pod(NAMESPACE).items == []


@pytest.mark.parametrize(
    ("name", "extras", "environ", "words"),
    [
        ("raw_batches", {}, KEYS, "pipes extra 'day' is missing or empty"),
        ("validated_batches", {**_filled("validated_batches"), "raw_key": ""}, KEYS, "extra 'raw_key' is missing"),
        (
            "trained_model",
            _filled("trained_model"),
            {"AWS_ACCESS_KEY_ID": "a"},
            "environment variable AWS_SECRET_ACCESS_KEY is not set \\(it comes from the Secret training-env\\)",
        ),
        (
            "drift_report",
            _filled("drift_report"),
            {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
            "environment variable REPORTS_AWS_ACCESS_KEY_ID is not set \\(it comes from the Secret reports-env\\)",
        ),
    ],
)
def test_the_pod_refuses_missing_inputs_naming_them(name: str, extras: dict, environ: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        StepInputs(STEPS[name], extras, environ)
    assert "\n" not in str(caught.value)


def test_the_pod_refuses_mistyped_inputs_and_unknown_steps_naming_them() -> None:
    inputs = StepInputs(DRIFT, {**_filled("drift_report"), "day": "3", "reference_days": [0, "1"]}, KEYS)
    with pytest.raises(ValueError, match="pipes extra 'day': '3' is not an integer"):
        inputs.integer("day")
    with pytest.raises(ValueError, match="pipes extra 'reference_days': \\[0, '1'\\] is not a list of integers"):
        inputs.integers("reference_days")
    with pytest.raises(ValueError, match="'drift_share': True is not a number"):
        StepInputs(DRIFT, {**_filled("drift_report"), "drift_share": True}, KEYS).number("drift_share")
    with pytest.raises(KeyError, match="does not declare"):
        inputs.text("features_key")
    with pytest.raises(ValueError, match="one of raw_batches, validated_batches, drift_report, trained_model; got"):
        step_named(["nope"])
    assert step_named(["drift_report"]) is DRIFT


def test_a_step_sees_only_its_own_secrets() -> None:
    inputs = StepInputs(TRAIN, _filled("trained_model"), {**KEYS, "REPORTS_AWS_ACCESS_KEY_ID": "other"})
    assert set(inputs._environ) == {*SECRET_ENV["training-env"], *SECRET_ENV["mlflow-writer-env"]}
    assert inputs.tracker.identity is not None and inputs.tracker.identity.username == "set"


def test_the_result_comes_back_as_the_same_dagster_metadata() -> None:
    result = StepResult(
        {
            "rows": 3,
            "schema": typed("table_schema", {"columns": [{"name": "price", "type": "float64"}]}),
            "preview": typed("md", "| a |"),
            "run_url": typed("url", "http://m/#/r"),
        },
        data_version="abc",
        checks=[CheckOutcome("c", False, "why", "WARN", {"n": 1})],
    )
    back = StepResult.from_json(json.loads(json.dumps({"result": result.to_json()}))["result"])
    assert back == result
    mat = materialize_result(back, extra=dg.MetadataValue.path("/x"))
    assert mat.metadata["schema"] == dg.TableSchema(columns=[dg.TableColumn("price", "float64")])
    assert mat.metadata["preview"] == dg.MetadataValue.md("| a |")
    assert mat.metadata["run_url"] == dg.MetadataValue.url("http://m/#/r")
    assert mat.metadata["rows"] == 3 and mat.data_version == dg.DataVersion("abc")
    assert reported_result(RAW, [{"log": "x"}, {"result": result.to_json()}]) == result
    with pytest.raises(dg.Failure, match="day 3 is invalid: failed: 1 problem"):
        reported_result(VALIDATED, [{"refused": "day 3 is invalid: failed: 1 problem"}])
    with pytest.raises(dg.Failure, match="the raw_batches pod ended without reporting a result"):
        reported_result(RAW, [])


def test_target_picks_the_runner(config_path: Path) -> None:
    cfg = load_config(config_path)
    state = StateDir(config_path.parent / "state")
    local = build_ml_resources(cfg, state, config_path)
    assert isinstance(local["step_runner"], LocalStepRunner)
    k3s = build_ml_resources(cfg.model_copy(update={"target": "k3s"}), state, config_path)["step_runner"]
    assert isinstance(k3s, K8sPipesStepRunner)
    assert k3s.kubeconfig == state.root / "kubeconfig"


def test_fake_log_is_stamped_like_the_kubelet() -> None:
    log = shape_log("a\nb\nc\n", "2026-01-02T03:04:05Z", {"timestamps": "true", "tailLines": "2"})
    assert log == "2026-01-02T03:04:05.000000000Z b\n2026-01-02T03:04:05.000001000Z c\n"

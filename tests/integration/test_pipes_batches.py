"""`raw_batches`, `validated_batches` and `drift_report` through both step runners on the real local services.

The k3s runner's pods go to the Kubernetes API fake (tests/k8s/pipes_fake.py), which runs each pod's command for
real as a local process with the env a kubelet would give it (the `training-env` and `reports-env` Secrets); the
pods reach the offline data API, SeaweedFS and MLflow on loopback. Batches go to their own group, the model to its
own name and experiment, so other tests' data is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml

from ml_assets.data.service import DataApiResource
from ml_assets.definitions import build_definitions
from ml_assets.defs.data.assets import build_data_assets
from ml_assets.defs.monitoring.report import build_drift_report
from ml_assets.step_runner import K8sPipesStepRunner, LocalStepRunner, StepRunner
from platform_core.cluster.secrets import ml_step_env
from platform_core.results import NO_CHANGE
from platform_core.runs import run_report
from tests.integration.conftest import Stack
from tests.k8s.pipes_fake import PipesCluster, pipes_cluster
from tests.k8s.schemas import validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP = 96  # batches of their own
MODEL = "pipes-batches"
NAMESPACE = "ml-steps"
TRAINING = {"image": "registry.example/mlops-platform:9.9.9", "cpu": "500m", "memory": "1Gi"}
MODEL_JOB = ["ml_experiment", "features", "trained_model", "registered_model", "reference_profile"]
BATCH_ASSETS = ["raw_batches", "validated_batches", "drift_report"]
DAY, BAD_DAY = 3, 5  # the champion trains on days 0-2


@dataclass
class Ml:
    defs: dg.Definitions
    instance: dg.DagsterInstance  # holds the champion's reference_profile materialization
    data_api: DataApiResource
    assets: dict[str, dg.AssetsDefinition]  # the batch assets, without the location's resources bound

    def resource(self, key: str):
        return self.defs.resources[key]

    @property
    def where(self) -> dict[str, str]:
        datasets = self.resource("datasets")
        return {"config_path": datasets.config_path, "state_dir": datasets.state_dir}


@pytest.fixture(scope="module")
def ml(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ml]:
    """The stack with its own group, model and experiment; days 0-2 ingested and a champion profiled, in process."""
    data = yaml.safe_load(stack.config_path.read_text())
    data["ml"] = {**(data.get("ml") or {}), "group_number": GROUP, "model_name": MODEL}
    data["mlflow"] = {**(data.get("mlflow") or {}), "experiment": "pipes-batches-test"}
    data["k3s"] = {**(data.get("k3s") or {}), "namespace": NAMESPACE, "training": TRAINING}
    path = tmp_path_factory.mktemp("pipes-batches") / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    defs = build_definitions(path)
    data_api = defs.resources["data_api_resource"]
    with dg.DagsterInstance.ephemeral() as instance:
        try:
            for day in ("0", "1", "2"):
                ran = defs.resolve_job_def("ingest_batch").execute_in_process(instance=instance, partition_key=day)
                assert ran.success
            job = dg.define_asset_job("model", selection=dg.AssetSelection.assets(*MODEL_JOB))
            merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
            model = merged.resolve_job_def("model").execute_in_process(instance=instance, raise_on_error=False)
            assert model.success, run_report(instance, model.run_id).failures
            cfg = defs.resources["datasets"].cfg
            data_assets, _ = build_data_assets(cfg.ml.batches, cfg.ml.source_url is None)
            assets = [*data_assets, build_drift_report(data_assets[-1].partitions_def)]
            yield Ml(defs, instance, data_api, {a.key.to_user_string(): a for a in assets})
        finally:
            data_api.set_drift("none")
            spec = data_api.service_spec()
            data_api.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)


@pytest.fixture
def cluster(ml: Ml, tmp_path: Path) -> Iterator[PipesCluster]:
    """The fake API with the namespace and the step Secrets the platform creates, and a runner whose kubeconfig
    points at it. The "pods" run on this machine, so they reach the services on loopback."""
    datasets = ml.resource("datasets")
    with pipes_cluster(tmp_path, REPO, NAMESPACE) as k8s:
        for name, values in ml_step_env(datasets.cfg, datasets.state.credentials).items():
            k8s.put_secret(name, values)
        k8s.runner = K8sPipesStepRunner(
            config_path=datasets.config_path,
            state_dir=str(k8s.state_dir),
            tracking_uri=ml.resource("mlflow_resource").url,
            s3_endpoint=ml.resource("seaweedfs_resource").endpoint,
            source_url=ml.data_api.url,
            poll_interval=0.2,
        )
        yield k8s


@dataclass
class Outcome:
    result: dg.ExecuteInProcessResult
    metadata: dict[str, dict[str, object]]  # asset -> metadata values
    versions: dict[str, str]
    checks: dict[str, tuple[bool, str]]  # check -> (passed, description)


def _run(ml: Ml, runner: StepRunner, instance: dg.DagsterInstance, assets: list[str], day: int) -> Outcome:
    resources = {**ml.defs.resources, "step_runner": runner}
    result = dg.materialize(
        [ml.assets[key] for key in assets],
        instance=instance,
        resources=resources,
        partition_key=str(day),
        raise_on_error=False,
    )
    metadata, versions = {}, {}
    for mat in result.get_asset_materialization_events():
        event = mat.step_materialization_data.materialization
        metadata[event.asset_key.to_user_string()] = {k: v.value for k, v in event.metadata.items()}
        versions[event.asset_key.to_user_string()] = event.tags.get("dagster/data_version", "")
    checks = {c.check_name: (c.passed, c.description or "") for c in result.get_asset_check_evaluations()}
    return Outcome(result, metadata, versions, checks)


def _failure(result: dg.ExecuteInProcessResult) -> str:
    errors = [e.step_failure_data.error for e in result.get_step_failure_events()]
    return "\n".join(err.to_string() for err in errors if err is not None)


def _forget_day(ml: Ml, day: int) -> None:
    """Remove what the batch steps wrote for `day`, so the next runner writes it afresh."""
    datasets, reports = ml.resource("datasets"), ml.resource("reports")
    store = datasets.store()
    store.delete(datasets.raw_key(day))
    store.delete(datasets.validated_key(day))
    key = f"drift/{MODEL}/day={day:04d}/report.html"
    reports.store().s3.delete_object(Bucket=reports.bucket, Key=key)
    reports.local_path(key).unlink()


def _instance_with_reference(ml: Ml) -> dg.DagsterInstance:
    """A fresh instance that knows the champion's reference profile, as the drift report reads it from there."""
    event = ml.instance.get_latest_materialization_event(dg.AssetKey("reference_profile"))
    assert event is not None and event.asset_materialization is not None
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization("reference_profile", metadata=dict(event.asset_materialization.metadata))
    )
    return instance


def test_pods_record_what_the_local_runner_records_and_nothing_changes_on_a_rerun(
    ml: Ml, cluster: PipesCluster
) -> None:
    local = _run(ml, LocalStepRunner(**ml.where), ml.instance, BATCH_ASSETS, DAY)
    assert local.result.success, _failure(local.result)
    assert local.metadata["raw_batches"]["change"] != NO_CHANGE  # written: the comparison below is with writes
    assert local.metadata["drift_report"]["reference_version"] == "1"
    _forget_day(ml, DAY)

    with _instance_with_reference(ml) as instance:
        pods = _run(ml, cluster.runner, instance, BATCH_ASSETS, DAY)
        assert pods.result.success, _failure(pods.result)
        assert sorted(p["spec"]["containers"][0]["command"][-1] for p in cluster.fake.ran_pods) == sorted(BATCH_ASSETS)
        assert pods.versions == local.versions
        for asset in BATCH_ASSETS:
            # the presigned link carries its own signature and expiry; the object it opens is the same
            got, want = (
                {k: v for k, v in md[asset].items() if k != "report_url"} for md in (pods.metadata, local.metadata)
            )
            assert got == want, asset
        assert pods.checks == local.checks  # drift_report's two checks, evaluated in the pod, described
        assert set(pods.checks) == {"champion_holds_up_on_new_labels", "no_dataset_drift"}
        assert pods.checks["champion_holds_up_on_new_labels"][1].startswith(f"champion v1 on day {DAY}: RMSE(log)")
        html = Path(str(pods.metadata["drift_report"]["report_path"])).read_bytes()  # the local copy
        assert html.startswith(b"<!doctype html>") and f"day {DAY} vs champion v1".encode() in html
        assert requests.get(str(pods.metadata["drift_report"]["report_url"]), timeout=10).content == html

        again = _run(ml, cluster.runner, instance, BATCH_ASSETS, DAY)
        assert again.result.success, _failure(again.result)
        assert {asset: md["change"] for asset, md in again.metadata.items()} == dict.fromkeys(BATCH_ASSETS, NO_CHANGE)
        assert again.versions == pods.versions
        for name, (passed, description) in again.checks.items():  # the report's checks, given again as judged
            assert passed == pods.checks[name][0] and description.startswith(pods.checks[name][1])
            assert description.endswith("(unchanged: same batch, champion, settings and code)")
        # validated_batches and drift_report decided "no change" before any pod: only raw_batches ran again
        assert [p["spec"]["containers"][0]["command"][-1] for p in cluster.fake.ran_pods[3:]] == ["raw_batches"]


def test_step_pods_are_schema_valid_and_get_their_keys_only_from_secrets(ml: Ml, cluster: PipesCluster) -> None:
    with _instance_with_reference(ml) as instance:
        assert _run(ml, cluster.runner, instance, BATCH_ASSETS, DAY).result.success
    datasets = ml.resource("datasets")
    secret_values = {v for values in ml_step_env(datasets.cfg, datasets.state.credentials).values() for v in values}
    for pod in cluster.fake.ran_pods:
        validate({"apiVersion": "v1", "kind": "Pod", **pod})
        assert pod["metadata"]["namespace"] == NAMESPACE
        [container] = pod["spec"]["containers"]
        assert not any(value in str(container) for value in secret_values)
        assert container["image"] == TRAINING["image"]
    assert cluster.api.list_namespaced_pod(NAMESPACE).items == []  # deleted once done


def test_an_invalid_batch_is_refused_by_both_runners_naming_the_day(ml: Ml, cluster: PipesCluster) -> None:
    ml.data_api.set_drift("nulls", strength=2.0)
    try:
        with _instance_with_reference(ml) as instance:
            raw = _run(ml, cluster.runner, instance, ["raw_batches"], BAD_DAY)
            assert raw.result.success, _failure(raw.result)
            pods = _run(ml, cluster.runner, instance, ["validated_batches"], BAD_DAY)
            local = _run(ml, LocalStepRunner(**ml.where), instance, ["validated_batches"], BAD_DAY)
    finally:
        ml.data_api.set_drift("none")
    for outcome in (pods, local):
        assert not outcome.result.success
        assert f"day {BAD_DAY} is invalid: failed:" in _failure(outcome.result)
        assert outcome.metadata == {}
    [refusal] = [e for e in pods.result.get_step_failure_events()]
    assert refusal.step_failure_data.error.cls_name == "Failure"  # the pod refused; it did not crash
    assert [p["spec"]["containers"][0]["command"][-1] for p in cluster.fake.ran_pods] == [
        "raw_batches",
        "validated_batches",
    ]
    key = ml.resource("datasets").validated_key(BAD_DAY)
    assert ml.resource("datasets").store().stored_hash(key) is None  # nothing validated was written


def test_a_pod_missing_a_key_fails_naming_the_variable_and_its_secret(ml: Ml, cluster: PipesCluster) -> None:
    cluster.api.delete_namespaced_secret("reports-env", NAMESPACE)
    cluster.put_secret("reports-env", {"REPORTS_AWS_ACCESS_KEY_ID": "x"})
    with _instance_with_reference(ml) as instance:
        outcome = _run(ml, cluster.runner, instance, ["drift_report"], DAY)
    assert not outcome.result.success
    message = _failure(outcome.result)
    assert "environment variable REPORTS_AWS_SECRET_ACCESS_KEY is not set (it comes from the Secret reports-env)" in (
        message
    ), message
    assert len(cluster.fake.ran_pods) == 1

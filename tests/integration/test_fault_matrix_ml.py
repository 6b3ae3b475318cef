"""The fault matrix for the ML location's supervised services, the data API and the inference service: `kill -9`
and `SIGSTOP` of the leader and of each child, and a foreign process on the port. The ML services drift sensor names
the service and the cause; the next materialization heals it, or refuses naming the foreign process; the champion,
the served version, the MLflow runs and the stored batches are unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml

from ml_assets.definitions import build_definitions
from platform_core.runs import RunReport, run_report
from platform_core.services.seaweedfs import ADMIN
from platform_core.supervisor import probe
from tests.integration.test_fault_matrix import FAULTS, inject

pytestmark = pytest.mark.integration

SERVICES = {"data_api": "data_api_resource", "inference": "inference_resource"}
HEAL = ["data_api", "inference_service", "deployed_model"]  # what `make up`'s ML step brings back


class MlEnv:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def resource(self, key: str):
        return self.defs.resources[key]

    def run(self, keys: list[str], partition: str | None = None) -> RunReport:
        job = dg.define_asset_job("picked", selection=dg.AssetSelection.assets(*keys))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("picked").execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=False
        )
        return run_report(self.instance, result.run_id)

    def drift_tick(self) -> str:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.defs.resources)
        skip = self.defs.resolve_sensor_def("ml_services_drift_sensor")(context)
        self.cursor = context.cursor
        return skip.skip_message

    def inventory(self) -> dict[str, object]:
        from mlflow import MlflowClient

        cfg = self.resource("datasets").cfg
        mlflow = MlflowClient(self.resource("mlflow_resource").url)
        pages = self.resource("seaweedfs_resource").client(ADMIN).get_paginator("list_objects_v2")
        experiments = [e.experiment_id for e in mlflow.search_experiments()]
        return {
            "datasets": sum(p.get("KeyCount", 0) for p in pages.paginate(Bucket=cfg.ml.datasets_bucket)),
            "runs": len(mlflow.search_runs(experiments, max_results=5000)),
            "champion": mlflow.get_model_version_by_alias(cfg.ml.model_name, "champion").version,
            "served": str(self.resource("inference_resource").model_info()["version"]),
        }


@pytest.fixture(scope="module")
def ml(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlEnv]:
    data = yaml.safe_load(Path(stack.config_path).read_text())
    data["ml"] = {**data.get("ml", {}), "model_name": "fault-matrix"}
    path = tmp_path_factory.mktemp("fault-ml") / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env = MlEnv(build_definitions(path), stack.instance)
    try:
        assert stack.materialize().status == "SUCCESS"  # the platform the ML services stand on
        assert env.run(["data_api", "raw_batches", "validated_batches"], "0").status == "SUCCESS"
        model = ["ml_experiment", "features", "trained_model", "registered_model", *HEAL[1:]]
        assert env.run(model).status == "SUCCESS"
        yield env
    finally:
        for key in SERVICES.values():
            resource = env.resource(key)
            spec = resource.service_spec()
            resource.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)


@pytest.fixture(scope="module")
def before(ml: MlEnv) -> dict[str, object]:
    return ml.inventory()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("service", list(SERVICES))
def test_a_fault_is_reported_then_healed_with_nothing_lost(ml: MlEnv, before, service: str, fault: str) -> None:
    ml.drift_tick()
    resource = ml.resource(SERVICES[service])
    pid = resource.supervisor.status(service).pid
    assert pid is not None, f"{service} is not running before the fault"
    leader = psutil.Process(pid)
    squatter = None  # set by inject for foreign_port; closed whatever happens
    try:
        squatter = inject(fault, service, leader, resource.service_spec().ports[0])
        summary = ml.drift_tick()
        cause = "is stopped (SIGSTOP)" if fault.startswith("stop") else "is not running"
        if fault == "kill_child":
            assert service in summary or probe(resource.service_spec().health), summary
        else:
            assert service in summary and cause in summary, summary

        if squatter is not None:
            refused = ml.run(HEAL)
            assert refused.status == "FAILURE"
            held = f"held by {psutil.Process().name()} pid {os.getpid()}"
            assert any(held in text for text in refused.failures.values()), refused.failures
            squatter.close()
            squatter = None
    finally:
        if squatter is not None:
            squatter.close()

    healed = ml.run(HEAL)
    assert healed.status == "SUCCESS" and healed.failed_checks == [], healed.failures
    assert probe(resource.service_spec().health)
    assert ml.inventory() == before
    assert service not in ml.drift_tick()

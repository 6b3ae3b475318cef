"""One real local stack (Postgres, SeaweedFS, MLflow) for the whole integration session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from platform_assets.definitions import build_definitions
from platform_assets.defs.monitoring.infra_drift import infra_drift_sensor
from platform_core.alerting.sensors import check_failure_sensor
from platform_core.runs import RunReport, run_report
from tests.stacks import write_stack_config


@dataclass
class Stack:
    config_path: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    first_run: RunReport
    drift_cursor: str | None = None
    checks_cursor: str | None = None

    def resource(self, key: str):
        return self.defs.resources[key]

    def materialize(self) -> RunReport:
        result = self.defs.resolve_job_def("platform_up").execute_in_process(
            instance=self.instance, raise_on_error=False
        )
        return run_report(self.instance, result.run_id)

    def run_checks(self, asset_keys: list[dg.AssetKey]) -> RunReport:
        """Only the checks of these assets, as a person would from the UI's 'Execute checks'."""
        job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(*asset_keys))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("checks_only").execute_in_process(instance=self.instance, raise_on_error=False)
        return run_report(self.instance, result.run_id)

    def drift_tick(self) -> str:
        """One evaluation of the infra drift sensor, carrying its cursor as the daemon would."""
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.drift_cursor, resources=self.defs.resources
        )
        skip = infra_drift_sensor(context)
        self.drift_cursor = context.cursor
        return skip.skip_message

    def checks_tick(self) -> str:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.checks_cursor, resources=self.defs.resources, definitions=self.defs
        )
        skip = check_failure_sensor(context)
        self.checks_cursor = context.cursor
        return skip.skip_message

    def alerts(self) -> list[dict]:
        path = Path(self.resource("alerts").log_file)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop_all(self) -> None:
        for key in ("mlflow_resource", "seaweedfs_resource", "postgres_resource"):
            resource = self.resource(key)
            spec = resource.service_spec()
            resource.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("stack")
    config_path = write_stack_config(directory)
    defs = build_definitions(config_path)
    (directory / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(
        str(directory / "dagster_home"), overrides={"telemetry": {"enabled": False}}
    )
    result = defs.resolve_job_def("platform_up").execute_in_process(instance=instance, raise_on_error=False)
    stack = Stack(config_path, defs, instance, run_report(instance, result.run_id))
    try:
        # The tests act as MLflow's writer, as the platform's runs do (MLflow's client reads who it is from the
        # environment). The e2e tests do not: a path of the product that forgot its identity fails there.
        with stack.resource("mlflow_resource").writer.acting():
            yield stack
    finally:
        stack.stop_all()
        instance.dispose()

"""Issue 4's data-drift loop on the real stack: reference profile, drift reports in S3, label checks, and the
sensor that alerts once (log + webhook) and requests one retraining, with a cooldown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from mlflow import MlflowClient

from ml_assets.definitions import build_definitions
from platform_core.results import NO_CHANGE
from platform_core.runs import RunReport, run_report
from tests.webhook import Receiver

pytestmark = pytest.mark.integration

MODEL_JOB = ["ml_experiment", "features", "trained_model", "registered_model", "reference_profile"]


@dataclass
class DriftEnv:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    receiver: Receiver
    alert_log: Path
    cursor: str | None = None

    def resource(self, key: str):
        return self.defs.resources[key]

    def run(self, job: str, partition: str | None = None) -> RunReport:
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=False
        )
        return run_report(self.instance, result.run_id)

    def run_assets(self, keys: list[str]) -> RunReport:
        job = dg.define_asset_job("picked", selection=dg.AssetSelection.assets(*keys))
        defs = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def("picked").execute_in_process(instance=self.instance, raise_on_error=False)
        return run_report(self.instance, result.run_id)

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.defs.resources, definitions=self.defs
        )
        result = self.defs.resolve_sensor_def("data_drift_sensor")(context)
        self.cursor = result.cursor
        return result

    def launch(self, requests_: list[dg.RunRequest]) -> list[RunReport]:
        """Run what a tick requested, as the daemon would (run keys dedupe repeats there)."""
        return [self.run(r.job_name, r.partition_key) for r in requests_]

    def alerts(self) -> list[dict]:
        return [json.loads(line) for line in self.alert_log.read_text().splitlines()] if self.alert_log.exists() else []

    def report_metadata(self, day: int) -> dict[str, object]:
        event = self.instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[str(day)]), limit=1
        ).records
        assert records, f"no drift report for day {day} (latest: {event})"
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftEnv]:
    """The stack's services, with a model name, alert log and webhook of this module's own."""
    receiver = Receiver().start()
    data = yaml.safe_load(Path(stack.config_path).read_text())
    data["ml"] = {**data.get("ml", {}), "model_name": "drift-watch", "batches": 10}
    data["alerts"] = {**data.get("alerts", {}), "webhook_url": receiver.url, "log_file": "alerts-drift.jsonl"}
    path = tmp_path_factory.mktemp("drift") / "platform.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    defs = build_definitions(path)
    drift_env = DriftEnv(defs, stack.instance, receiver, Path(defs.resources["alerts"].log_file))
    data_api = defs.resources["data_api_resource"]
    try:
        for day in ("0", "1", "2"):
            assert drift_env.run("ingest_batch", day).status == "SUCCESS"
        assert drift_env.run_assets(MODEL_JOB).status == "SUCCESS"
        yield drift_env
    finally:
        data_api.set_drift("none")
        for key in ("inference_resource", "data_api_resource"):
            resource = defs.resources[key]
            spec = resource.service_spec()
            resource.supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)
        receiver.stop()


def test_reference_profile_is_the_champions_training_data(env: DriftEnv) -> None:
    event = env.instance.get_latest_materialization_event(dg.AssetKey("reference_profile"))
    md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert md["champion_version"] == "1" and md["training_days"] == "0, 1, 2"
    assert 500 < md["rows"] < 800  # ~80% of 900 rows (the holdout is out), minus outliers
    assert "| house_size | numeric |" in md["columns"]
    again = env.run_assets(["reference_profile"])
    assert again.changes == {"reference_profile": NO_CHANGE}
    assert again.checks == {"reference_profile:reference_matches_champion": True}


def test_a_clean_batch_reports_no_drift_with_an_html_report(env: DriftEnv) -> None:
    report = env.run("ingest_batch", "3")
    assert report.status == "SUCCESS", report.failures
    md = env.report_metadata(3)
    assert md["dataset_verdict"] == "no drift" and md["reference_version"] == "1"
    assert report.checks["drift_report:no_dataset_drift"] is True
    assert report.checks["drift_report:champion_holds_up_on_new_labels"] is True
    html = env.resource("reports").get(str(md["report_uri"]).split("/", 3)[3]).decode()
    assert "<svg" in html and "house_size" in html and "no drift" in html
    assert Path(str(md["report_path"])).read_text() == html
    assert requests.get(str(md["report_url"]), timeout=10).text == html  # the UI link opens the private object
    again = env.run("drift_report_job", "3")  # same batch, champion, settings, code: the report and its checks
    assert again.changes == {"drift_report": NO_CHANGE} and again.checks == {
        "drift_report:no_dataset_drift": True,
        "drift_report:champion_holds_up_on_new_labels": True,
    }
    reports = env.resource("reports").store()
    reports.s3.delete_object(Bucket=reports.bucket, Key=str(md["report_uri"]).split("/", 3)[3])
    assert env.run("drift_report_job", "3").changes == {"drift_report": f"wrote {md['report_uri'].split('/', 3)[3]}"}
    # another drift setting: the same batch is judged again, not given its last report (whose inputs it records)
    judged_before = env.report_metadata(3)["drift_inputs"]
    path = Path(env.resource("reports").config_path)
    data = yaml.safe_load(path.read_text())
    stricter = path.with_name("stricter.yaml")
    stricter.write_text(yaml.safe_dump({**data, "ml": {**data["ml"], "drift_share": 0.9}}, sort_keys=False))
    other = DriftEnv(build_definitions(stricter), env.instance, env.receiver, env.alert_log)
    assert other.run("drift_report_job", "3").status == "SUCCESS"
    assert other.report_metadata(3)["drift_inputs"] != judged_before


def test_injected_drift_alerts_once_and_requests_one_retraining(env: DriftEnv) -> None:
    # The "no reference" reports of days 0-2 predate the champion: the sensor has them redone.
    redo = env.tick().run_requests
    assert [(r.job_name, r.partition_key) for r in redo] == [("drift_report_job", d) for d in ("0", "1", "2")]
    assert all(run.status == "SUCCESS" for run in env.launch(redo))
    assert env.tick().run_requests == []
    before = len(env.alerts())
    env.resource("data_api_resource").set_drift("shift", strength=1.0)
    ingest = env.run("ingest_batch", "4")
    assert ingest.status == "SUCCESS", ingest.failures
    md = env.report_metadata(4)
    assert md["dataset_verdict"] == "drift"
    assert {"house_size", "acre_lot"} <= set(str(md["drifted_columns"]).split(", "))

    first = env.tick()
    fired = env.alerts()[before:]
    assert [(a["status"], a["key"]) for a in fired] == [("firing", "data_drift:day=4")]
    assert "retraining requested" in fired[0]["message"] and "report: s3://reports/" in fired[0]["message"]
    assert env.receiver.bodies[-1]["key"] == "data_drift:day=4"
    assert [r.job_name for r in first.run_requests] == ["retrain_and_deploy"]

    second = env.tick()  # the same drift on the next tick: nothing new
    assert second.run_requests == [] and len(env.alerts()) == before + 1

    retrain = env.run("retrain_and_deploy")
    assert retrain.status == "SUCCESS", retrain.failures
    assert retrain.changes["trained_model"].startswith("trained run")


def test_more_drift_within_the_cooldown_alerts_without_retraining(env: DriftEnv) -> None:
    env.resource("data_api_resource").set_drift("shift", strength=1.0)
    assert env.run("ingest_batch", "5").status == "SUCCESS"
    result = env.tick()
    new = [a for a in env.alerts() if a["key"] == "data_drift:day=5"]
    assert len(new) == 1 and "cooldown until" in new[0]["message"]
    assert not [r for r in result.run_requests if r.job_name == "retrain_and_deploy"]
    cursor = json.loads(env.cursor)
    cursor["last_retrain"] -= 3600  # the cooldown is over and the held-back drift is still there
    env.cursor = json.dumps(cursor)
    later = [r for r in env.tick().run_requests if r.job_name == "retrain_and_deploy"]
    assert [r.tags["mlops-platform/reason"] for r in later] == ["data_drift:day=5"]
    assert not [r for r in env.tick().run_requests if r.job_name == "retrain_and_deploy"]  # once


def test_a_batch_validation_refused_still_gets_its_drift_report(env: DriftEnv) -> None:
    env.resource("data_api_resource").set_drift("nulls", strength=2.0)
    ingest = env.run("ingest_batch", "6")
    assert ingest.checks["raw_batches:raw_batch_is_valid"] is False
    assert "drift_report" not in ingest.changes  # the blocking check stopped the run there
    wanted = env.tick().run_requests
    assert ("drift_report_job", "6") in [(r.job_name, r.partition_key) for r in wanted]
    report = env.run("drift_report_job", "6")
    assert report.status == "SUCCESS"
    md = env.report_metadata(6)
    assert md["dataset_verdict"] in ("drift", "no drift") and md["rows"] == 300  # a verdict, not a crash


def test_labels_far_from_the_champion_fail_the_label_check(env: DriftEnv) -> None:
    env.resource("data_api_resource").set_drift("shift", strength=2.0, columns=["price"])
    report = env.run("ingest_batch", "7")
    assert report.checks["drift_report:champion_holds_up_on_new_labels"] is False
    assert "RMSE(log)" in report.failures["drift_report:champion_holds_up_on_new_labels"]
    again = env.run("drift_report_job", "7")  # nothing changed: the same failure again, not a pass
    assert again.changes == {"drift_report": NO_CHANGE}
    assert again.checks["drift_report:champion_holds_up_on_new_labels"] is False
    assert "RMSE(log)" in again.failures["drift_report:champion_holds_up_on_new_labels"]


def test_prediction_log_is_observed_and_its_last_update_check_tells_fresh_from_stale(env: DriftEnv) -> None:
    from ml_assets.defs.serving.observe import prediction_log, prediction_log_freshness

    inference = env.resource("inference_resource")  # deployed by the retraining run above
    inference.predict(
        {"bed": 3, "bath": 2, "acre_lot": 0.3, "house_size": 1500, "city": "Ames", "state": "Iowa", "zip_code": 50010}
    )
    deadline = time.monotonic() + 30  # the service writes its buffer every flush interval
    observe = dg.define_asset_job("observe_log", selection=dg.AssetSelection.assets("prediction_log"))
    defs = dg.Definitions(assets=[prediction_log], jobs=[observe], resources=env.defs.resources)
    while True:
        defs.resolve_job_def("observe_log").execute_in_process(instance=env.instance)
        record = env.instance.fetch_observations(dg.AssetKey("prediction_log"), limit=1).records[0]
        metadata = record.asset_observation.metadata
        if metadata["files"].value > 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert metadata["files"].value > 0 and str(metadata["newest"].value).startswith("s3://predictions/predictions/")

    def run_check(window_minutes: float) -> bool:
        checks, _ = prediction_log_freshness(window_minutes)
        job = dg.define_asset_job("log_fresh", selection=dg.AssetSelection.checks(*checks))
        defs = dg.Definitions(assets=[prediction_log], asset_checks=checks, jobs=[job], resources=env.defs.resources)
        run = defs.resolve_job_def("log_fresh").execute_in_process(instance=env.instance, raise_on_error=False)
        return next(iter(run_report(env.instance, run.run_id).checks.values()))

    assert run_check(24 * 60) is True  # a prediction within the day
    time.sleep(2)
    assert run_check(1 / 60) is False  # nothing in the last second: stale


def test_a_fresh_stacks_prediction_log_is_fresh_from_its_deployment(env: DriftEnv) -> None:
    """No false alarm on a brand-new stack: before a first prediction the log's last-update check used to fail
    on the first tick ("never observed"); the deployment now counts as its last update."""
    from ml_assets.defs.serving.deployment import deployed_model
    from ml_assets.defs.serving.observe import prediction_log, prediction_log_freshness

    fresh = dg.DagsterInstance.ephemeral()  # a new stack's instance: nothing observed yet
    checks, _ = prediction_log_freshness(60)
    check_job = dg.define_asset_job("log_fresh", selection=dg.AssetSelection.checks(*checks))
    deploy_job = dg.define_asset_job("deploy", selection=dg.AssetSelection.assets(deployed_model))
    defs = dg.Definitions(
        assets=[prediction_log, deployed_model],
        asset_checks=checks,
        jobs=[check_job, deploy_job],
        resources=env.defs.resources,
    )

    def log_fresh() -> bool:
        run = defs.resolve_job_def("log_fresh").execute_in_process(instance=fresh, raise_on_error=False)
        return next(iter(run_report(fresh, run.run_id).checks.values()))

    assert log_fresh() is False  # the false alarm's cause: a check on a log nobody has written or observed
    deployed = defs.resolve_job_def("deploy").execute_in_process(instance=fresh, raise_on_error=False)
    assert run_report(fresh, deployed.run_id).status == "SUCCESS"
    assert log_fresh() is True  # fresh for the window after the deployment
    (record,) = fresh.fetch_observations(dg.AssetKey("prediction_log"), limit=5).records
    assert "dagster/last_updated_timestamp" in record.asset_observation.metadata
    # the scheduled observation that follows keeps it fresh: files or not, the deployment is the floor
    observe = dg.define_asset_job("observe_log", selection=dg.AssetSelection.assets("prediction_log"))
    observed = dg.Definitions(assets=[prediction_log], jobs=[observe], resources=env.defs.resources)
    observed.resolve_job_def("observe_log").execute_in_process(instance=fresh)
    latest = fresh.fetch_observations(dg.AssetKey("prediction_log"), limit=1).records[0]
    assert "dagster/last_updated_timestamp" in latest.asset_observation.metadata
    assert log_fresh() is True


def test_a_champion_from_before_approvals_is_approved_by_the_next_registration(env: DriftEnv) -> None:
    from ml_assets.model.approval import DIGEST_TAG

    mlflow = env.resource("mlflow_resource")
    name = env.resource("datasets").cfg.ml.model_name
    client = MlflowClient(tracking_uri=mlflow.url)
    champion = client.get_model_version_by_alias(name, "champion").version
    client.delete_model_version_tag(name, champion, DIGEST_TAG)  # as a stack upgraded from before the rule
    report = env.run_assets(["registered_model"])
    assert report.status == "SUCCESS", report.failures
    assert f"recorded v{champion}'s artifact digest" in report.changes["registered_model"]
    assert client.get_model_version(name, champion).tags[DIGEST_TAG]
    assert env.run_assets(["registered_model"]).changes["registered_model"] == "no change"

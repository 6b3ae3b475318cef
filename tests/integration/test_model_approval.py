"""A served model is the approved model: on the real registry and artifact store, a champion whose files were
swapped after the promotion gate approved them is refused by the inference service (which keeps serving what it
had, and says which version and which digests), and the `champion_files_approved` check fails until the files
are the approved ones again."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
from mlflow import MlflowClient

from ml_assets.defs.serving.deployment import champion_files_approved
from ml_assets.model.approval import DIGEST_TAG
from platform_core.runs import run_report
from platform_core.services.seaweedfs import ADMIN
from tests.integration.serving_helpers import (
    Registered,
    ensure_champion,
    register_model,
    running_service,
    set_champion,
)
from tests.model_files import pickle_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def champion(stack) -> Registered:
    return ensure_champion(stack)


@pytest.fixture(scope="module")
def http(stack, champion, tmp_path_factory) -> Iterator[httpx.Client]:
    with (
        running_service(stack, tmp_path_factory.mktemp("approval")) as service,
        httpx.Client(base_url=service.url, timeout=120) as client,
    ):
        yield client


def _check(stack) -> tuple[bool, str]:
    job = dg.define_asset_job("approved", selection=dg.AssetSelection.checks(champion_files_approved))
    # the check alone: its asset (deployed_model, of the ML location) needs the inference service's resources
    defs = dg.Definitions(asset_checks=[champion_files_approved], jobs=[job], resources=stack.defs.resources)
    run = defs.resolve_job_def("approved").execute_in_process(instance=stack.instance, raise_on_error=False)
    report = run_report(stack.instance, run.run_id)
    (passed,) = report.checks.values()
    return passed, next(iter(report.failures.values()), "")


def test_a_tampered_champion_is_refused_and_the_approved_one_keeps_serving(stack, champion, http) -> None:
    url = stack.resource("mlflow_resource").url
    assert http.post("/reload").json()["version"] == champion.version
    assert _check(stack)[0] is True

    second = register_model(url, champion.name, train_rows=400)
    set_champion(url, champion.name, second.version)  # approved by the gate, not yet loaded by the service
    approved = MlflowClient(tracking_uri=url).get_model_version(champion.name, second.version).tags[DIGEST_TAG]
    s3 = stack.resource("seaweedfs_resource").client(ADMIN)
    bucket, key = pickle_key(
        stack.resource("mlflow_resource"), stack.resource("seaweedfs_resource"), champion.name, second.version
    )
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original + b"\n# swapped after approval")
    try:
        refused = http.post("/reload")
        assert refused.status_code == 503
        detail = refused.json()["detail"]
        assert f"still serving version {champion.version}" in detail
        assert f"model {champion.name} v{second.version}: its files' sha256 " in detail
        assert f"is not the approved {approved}" in detail and "\n" not in detail
        assert http.get("/model").json()["version"] == champion.version  # nothing served changed
        passed, why = _check(stack)
        assert passed is False and f"approved {approved}" in why
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
    assert http.post("/reload").json()["version"] == second.version  # the approved files load
    assert _check(stack)[0] is True
    set_champion(url, champion.name, champion.version)  # later tests (and modules) expect version 1
    assert http.post("/reload").json()["version"] == champion.version

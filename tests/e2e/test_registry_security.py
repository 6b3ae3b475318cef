"""Issue 16's "done when", on the stack `make up` brought up: a registry write without credentials, or with only
the read-only identity, and a tampered champion all change nothing that is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from ml_assets.model.approval import DIGEST_TAG
from ml_assets.model.tracking import CHAMPION, ModelTracker
from ml_assets.resources import build_ml_resources
from platform_core.services.seaweedfs import ADMIN
from platform_core.state import load_platform
from tests.e2e.test_main_command import LISTING
from tests.model_files import pickle_key

pytestmark = pytest.mark.e2e


def _resources(config: Path) -> dict[str, Any]:
    cfg, state = load_platform(config)
    return build_ml_resources(cfg, state, config)


def _served(resources: dict[str, Any]) -> tuple[str, str]:
    """(the version the service serves, the registry's champion as the reader sees it)."""
    inference, mlflow = resources["inference_resource"], resources["mlflow_resource"]
    tracker = ModelTracker.of(mlflow)
    tracker.identity = mlflow.reader
    champion = tracker.champion()
    assert champion is not None
    return str(inference.model_info()["version"]), champion.version


def test_registry_writes_without_the_writer_change_nothing_served(stack_config: Path) -> None:
    resources = _resources(stack_config)
    mlflow, inference = resources["mlflow_resource"], resources["inference_resource"]
    name = mlflow.cfg.ml.model_name
    served, champion = _served(resources)
    assert served == champion
    api = f"{mlflow.url}/api/2.0/mlflow"
    move = {"name": name, "alias": CHAMPION, "version": "1" if champion != "1" else champion}
    anonymous = [
        requests.post(f"{api}/registered-models/alias", json=move, timeout=10),
        requests.delete(f"{api}/registered-models/alias", json={"name": name, "alias": CHAMPION}, timeout=10),
        requests.post(f"{api}/model-versions/create", json={"name": name, "source": "s3://elsewhere/m"}, timeout=10),
        requests.delete(f"{api}/registered-models/delete", json={"name": name}, timeout=10),
        requests.get(f"{api}/registered-models/get", params={"name": name}, timeout=10),  # not even a read
    ]
    assert [r.status_code for r in anonymous] == [401] * len(anonymous)
    by_reader = requests.post(f"{api}/registered-models/alias", json=move, auth=mlflow.reader.auth, timeout=10)
    assert by_reader.status_code == 403, by_reader.text
    reloaded = requests.post(f"{inference.url}/reload", timeout=120)
    assert reloaded.status_code == 200 and reloaded.json()["changed"] is False, reloaded.text
    assert _served(resources) == (served, champion)


def test_a_tampered_champion_is_refused_and_nothing_served_changes(stack_config: Path) -> None:
    """The alias moves (as the gate moves it) to an approved version whose files were swapped afterwards: the
    service refuses to load it and keeps serving what it had."""
    resources = _resources(stack_config)
    inference, tracker = resources["inference_resource"], ModelTracker.of(resources["mlflow_resource"])
    served, champion = _served(resources)
    price = inference.predict(LISTING)
    with resources["mlflow_resource"].reader.acting():
        versions = tracker.client.search_model_versions(f"name='{tracker.model_name}'")
    other = next(str(v.version) for v in versions if str(v.version) != champion)
    was_approved = tracker.approved_digest(other)
    approved = was_approved or tracker.approve(other)
    s3 = resources["seaweedfs_resource"].client(ADMIN)
    bucket, key = pickle_key(resources["mlflow_resource"], resources["seaweedfs_resource"], tracker.model_name, other)
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original + b"\n# swapped after approval")
    try:
        tracker.set_champion(other)
        refused = requests.post(f"{inference.url}/reload", timeout=120)
        assert refused.status_code == 503, refused.text
        detail = refused.json()["detail"]
        assert f"still serving version {served}" in detail and f"is not the approved {approved}" in detail
        assert str(inference.model_info()["version"]) == served
        assert inference.predict(LISTING) == price
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
        tracker.set_champion(champion)
        if was_approved is None:  # the approval was this test's, not the promotion gate's
            with resources["mlflow_resource"].writer.acting():
                tracker.client.delete_model_version_tag(tracker.model_name, other, DIGEST_TAG)
    assert requests.post(f"{inference.url}/reload", timeout=120).json()["changed"] is False
    assert _served(resources) == (served, champion)

"""The registry reads every `up` makes go through MLflow's REST API (platform_core/services/mlflow_rest.py), not
its client: on the stack's real MLflow they must answer what the client answers, and a version's files must land
byte for byte as `mlflow.artifacts.download_artifacts` lays them out, or every approved digest would stop matching.
The checks' predictions of an approved version are remembered by the files' digest, the code and libraries that
score them, and the rows: a second check on the same rows loads no model; other rows, or another release, do;
files that are not the approved ones are refused either way."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from ml_assets.model import tracking
from ml_assets.model.approval import DIGEST_TAG, ModelRejected, download_version, tree_digest
from ml_assets.model.tracking import ModelTracker
from platform_core.services.mlflow_rest import DOES_NOT_EXIST, NO_SUCH_ALIAS
from tests.integration.serving_helpers import EXPERIMENT, Registered, approve, ensure_champion, listings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def champion(stack) -> Registered:
    return ensure_champion(stack)


@pytest.fixture(scope="module")
def url(stack) -> str:
    return str(stack.resource("mlflow_resource").url)


def test_version_files_download_as_mlflow_lays_them_out(url, champion, tmp_path: Path) -> None:
    ours = download_version(url, champion.name, champion.version, tmp_path / "rest")
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    theirs = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{champion.name}/{champion.version}", dst_path=str(tmp_path / "client")
        )
    )
    names = sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*") if p.is_file())
    assert {"MLmodel", "python_model.pkl", "registered_model_meta"} <= set(names)
    tags = MlflowClient(tracking_uri=url, registry_uri=url).get_model_version(champion.name, champion.version).tags
    assert tree_digest(ours) == tree_digest(theirs) == tags[DIGEST_TAG]


def test_reads_answer_what_the_client_answers(url, champion) -> None:
    tracker = ModelTracker(url, EXPERIMENT, champion.name)
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    assert tracker.champion() == tracking.Version(champion.version, champion.run_id)
    assert tracker.version_of_run(champion.run_id) == tracking.Version(champion.version, champion.run_id)
    assert tracker.version_of_run("0" * 32) is None
    assert tracker.run_exists(champion.run_id) and not tracker.run_exists("0" * 32)
    params, metrics = tracker.run_summary(champion.run_id)
    run = client.get_run(champion.run_id).data
    assert (params, metrics) == (dict(run.params), dict(run.metrics)) and metrics
    assert tracker.version_tags(champion.version) == client.get_model_version(champion.name, champion.version).tags
    # no such model, and a model no version of which carries the alias: both "no champion", as the client said
    assert ModelTracker(url, EXPERIMENT, "no-such-model").champion() is None
    absent = (DOES_NOT_EXIST, NO_SUCH_ALIAS)
    assert tracker.rest.get("registered-models/alias", absent, name=champion.name, alias="nobody") is None


def test_predictions_of_approved_files_are_remembered_by_digest_and_rows(
    url, champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = ModelTracker(url, EXPERIMENT, champion.name)
    rows = listings(count=40)
    first = tracker.approved_predictions(champion.version, rows, tmp_path)
    assert np.array_equal(first, tracker.predict(champion.version, rows))  # what the model itself predicts
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def no_load(url: str, root: Path) -> None:
        raise AssertionError(f"loaded the model from {root}")

    monkeypatch.setattr(tracking, "_load_files", no_load)
    assert np.array_equal(tracker.approved_predictions(champion.version, rows, tmp_path), first)  # no load
    with pytest.raises(AssertionError, match="loaded the model"):  # other rows: the model must score them
        tracker.approved_predictions(champion.version, rows.head(5), tmp_path)
    with monkeypatch.context() as upgraded:  # other code or libraries (the model's class is pickled by reference)
        upgraded.setattr(tracking, "_scoring_code", lambda: "another-release")
        with pytest.raises(AssertionError, match="loaded the model"):
            tracker.approved_predictions(champion.version, rows, tmp_path)

    with monkeypatch.context() as offline:  # the pass's other checks trust a download of RECENT_SECONDS ago
        offline.setattr(tracking, "download_version", lambda *args: no_load(url, Path("the artifact store")))
        assert np.array_equal(tracker.approved_predictions(champion.version, rows, tmp_path), first)
        offline.setattr(tracking, "RECENT_SECONDS", 0.0)  # older than that: the files are fetched and hashed again
        with pytest.raises(AssertionError, match="the artifact store"):
            tracker.approved_predictions(champion.version, rows, tmp_path)

    tracker.tag(champion.version, {DIGEST_TAG: "0" * 64})  # the gate approved other files than these
    try:
        with pytest.raises(ModelRejected, match="not the approved"):
            tracker.approved_predictions(champion.version, rows, tmp_path)
    finally:
        approve(url, champion.name, champion.version)

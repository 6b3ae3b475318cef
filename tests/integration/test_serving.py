"""The inference service as a process on the real stack: registry, S3 prediction log, HTTP all real."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from ml_assets.model.features import FEATURES
from ml_assets.serving.prediction_log import PredictionLog
from ml_assets.serving.resource import InferenceResource
from tests.integration.serving_helpers import (
    ALIAS,
    Registered,
    as_columns,
    as_json,
    ensure_champion,
    listings,
    log_settings,
    logged_rows,
    register_model,
    registry_predict,
    running_service,
    set_champion,
    spare_service,
    stop,
)

pytestmark = pytest.mark.integration

FLUSH_ROWS = 100  # small, so that one batch request fills the buffer and triggers a write


@pytest.fixture(scope="module")
def champion(stack) -> Registered:
    return ensure_champion(stack)


@pytest.fixture(scope="module")
def service(stack, champion, tmp_path_factory) -> Iterator[InferenceResource]:
    with running_service(stack, tmp_path_factory.mktemp("serving"), log_flush_rows=FLUSH_ROWS) as resource:
        yield resource


@pytest.fixture
def http(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


def test_predict_matches_the_registry_model(http, service, champion) -> None:
    frame = listings(count=5)
    expected = registry_predict(champion, frame)
    for row, want in zip(as_json(frame), expected, strict=True):
        response = http.post("/predict", json=row)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == champion.version
        assert response.json()["price"] == pytest.approx(want, rel=1e-6)
    assert service.predict(as_json(frame)[0]) == pytest.approx(expected[0], rel=1e-6)


def test_batch_of_100_matches_the_registry_model(http, champion) -> None:
    frame = listings(count=100)
    response = http.post("/predict/batch", json={"listings": as_json(frame)})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["prices"], registry_predict(champion, frame), rtol=1e-6)


def test_explain_attributes_every_feature(http, champion) -> None:
    row = as_json(listings(count=1))[0]
    body = http.post("/explain", json=row).json()
    assert set(body["contributions_log"]) == set(FEATURES) == set(body["contributions_percent"])
    assert body["model_version"] == champion.version
    assert body["prediction"] == pytest.approx(http.post("/predict", json=row).json()["price"], rel=1e-9)


def test_model_and_health_report_the_champion(http, service, champion) -> None:
    info = service.model_info()
    assert info is not None
    assert (info["name"], info["version"], info["alias"]) == (champion.name, champion.version, ALIAS)
    assert info["run_id"] == champion.run_id
    assert info["metrics"] == pytest.approx(champion.metrics)
    assert datetime.fromisoformat(info["loaded_at"]) <= datetime.now(UTC)
    assert http.get("/health").json() == {"status": "ok", "model_version": champion.version}


def test_reload_swaps_the_champion_while_requests_keep_succeeding(stack, http, service, champion) -> None:
    url = stack.resource("mlflow_resource").url
    second = register_model(url, champion.name, train_rows=1500)  # other rows, so other predictions
    row = as_json(listings(count=1))[0]
    seen: list[tuple[int, str | None]] = []
    done = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            while not done.is_set():
                try:
                    response = client.post("/predict", json=row)
                    seen.append((response.status_code, response.json().get("model_version")))
                except httpx.HTTPError as err:
                    seen.append((0, repr(err)))

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        time.sleep(0.3)
        set_champion(url, champion.name, second.version)
        reloaded = service.reload()
        time.sleep(0.3)
        done.set()
        streamer.join(10)
        assert reloaded == {"previous_version": champion.version, "version": second.version, "changed": True}
        assert {status for status, _ in seen} == {200}, [s for s in seen if s[0] != 200][:3]
        versions = [version for _, version in seen]
        assert set(versions) == {champion.version, second.version}
        # one sequential client: once it got the new model it never gets the old one again
        assert versions == sorted(versions, key=lambda v: v == second.version)
        price = http.post("/predict", json=row).json()
        assert price["model_version"] == second.version
        assert price["price"] == pytest.approx(registry_predict(second, listings(count=1))[0], rel=1e-6)
        assert service.reload()["changed"] is False
    finally:
        done.set()
        set_champion(url, champion.name, champion.version)  # later tests (and modules) expect version 1
        assert service.reload()["version"] == champion.version


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bed": -1}, "bed"),
        ({"status": "auction"}, "status"),
        ({"prev_sold_date": "June 2008"}, "prev_sold_date"),
        ({"house_size": "big"}, "house_size"),
        ({"garage": 2}, "garage"),
    ],
)
def test_a_bad_listing_is_a_422_naming_the_field(http, change, field) -> None:
    response = http.post("/predict", json={**as_json(listings(count=1))[0], **change})
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"bed": ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"bed": 3}', "text/plain"),
        (b"", None),
        # Python's JSON parser takes NaN and lone surrogates; echoed back in a 422 they used to make a 500
        (b'{"bed": NaN}', "application/json"),
        (b'{"brokered_by": -Infinity}', "application/json"),
        (b'{"street": "\\ud800"}', "application/json"),
        (b'{"\\udfff": 1}', "application/json"),
    ],
)
def test_malformed_bodies_are_client_errors(http, content, content_type) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = http.post("/predict", content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_a_body_over_the_limit_is_refused_before_parsing(http, service) -> None:
    limit = service.cfg.services.inference.max_body_bytes
    listing = json.dumps(as_json(listings(count=1))[0]).encode()
    at_limit = listing + b" " * (limit - len(listing))  # whitespace: still valid JSON
    assert http.post("/predict", content=at_limit, headers={"content-type": "application/json"}).status_code == 200
    over = at_limit + b" "
    response = http.post("/predict", content=over, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]
    # chunked: no Content-Length to trust, so the bytes themselves are counted
    chunks = (over[i : i + 65536] for i in range(0, len(over), 65536))
    response = http.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413


def test_too_many_rows_is_a_422_naming_the_limit(http, service) -> None:
    limit = service.cfg.services.inference.max_batch_rows
    row = as_json(listings(count=1))[0]
    response = http.post("/predict/batch", json={"listings": [row] * (limit + 1)})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "listings"] and str(limit) in error["msg"]
    assert http.post("/predict/batch", json={"listings": []}).status_code == 422
    assert http.post("/predict/batch", json={"listings": [row] * limit}).status_code == 200


def test_metrics_count_requests_predictions_and_the_model(http, champion) -> None:
    http.post("/predict/batch", json={"listings": as_json(listings(count=3))})
    http.post("/predict", json={"bed": -1})
    families = {family.name: family for family in text_string_to_metric_families(http.get("/metrics").text)}
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value for s in families["inference_requests"].samples}
    assert requests[("/predict/batch", "200")] >= 1 and requests[("/predict", "422")] >= 1
    buckets = [s for s in families["inference_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["endpoint"] == "/predict/batch" and s.value >= 1 for s in buckets)
    assert families["inference_predictions"].samples[0].value >= 3
    (model,) = families["inference_model_info"].samples
    assert model.labels["version"] == champion.version


def test_a_full_buffer_is_written_to_s3_as_parquet(stack, http, champion) -> None:
    street = f"{uuid.uuid4().hex} Test Street"
    batch = [{**row, "street": street} for row in as_json(listings(count=FLUSH_ROWS))]
    prices = http.post("/predict/batch", json={"listings": batch}).json()["prices"]
    rows = logged_rows(stack, street, FLUSH_ROWS)
    assert len(rows) == FLUSH_ROWS
    assert sorted(r["predicted_price"] for r in rows) == pytest.approx(sorted(prices), rel=1e-12)
    assert {r["model_version"] for r in rows} == {champion.version}
    assert {r["house_size"] for r in rows} == {r["house_size"] for r in batch}
    assert all(abs((datetime.now(UTC) - r["predicted_at"]).total_seconds()) < 120 for r in rows)


def test_shutdown_writes_what_is_buffered(stack, service) -> None:
    street = f"{uuid.uuid4().hex} Shutdown Street"
    row = {**as_json(listings(count=1))[0], "street": street}
    for _ in range(3):
        service.predict(row)
    stop(service)  # SIGTERM: the lifespan's shutdown flushes the three rows
    try:
        assert len(logged_rows(stack, street, 3, timeout=5)) == 3
    finally:
        service.ensure_server()


def test_the_log_is_written_every_interval_below_the_row_threshold(stack) -> None:
    cfg = stack.resource("seaweedfs_resource").cfg
    log = PredictionLog(log_settings(stack, cfg.ml.predictions_bucket, flush_interval_seconds=0.2))
    street = f"{uuid.uuid4().hex} Interval Street"
    log.start()
    try:
        log.append(as_columns([{**as_json(listings(count=1))[0], "street": street}]), [5.0], "7")
        assert [r["predicted_price"] for r in logged_rows(stack, street, 1, timeout=5)] == [5.0]
    finally:
        assert log.close() == 0


def test_a_failed_write_keeps_its_rows_for_the_next_flush(stack) -> None:
    cfg = stack.resource("seaweedfs_resource").cfg
    log = PredictionLog(log_settings(stack, cfg.mlflow.artifact_bucket))  # not the owner's: S3 refuses
    street = f"{uuid.uuid4().hex} Retry Street"
    rows = [{**row, "street": street} for row in as_json(listings(count=3))]
    log.append(as_columns(rows[:2]), [1.0, 2.0], "7")
    assert log.flush() is False
    assert (log.pending_rows, log.failed_flushes) == (2, 1)
    log.append(as_columns(rows[2:]), [3.0], "7")
    log.bucket = cfg.ml.predictions_bucket  # now somewhere it may write
    assert log.flush() is True and log.pending_rows == 0
    assert [r["predicted_price"] for r in logged_rows(stack, street, 3, timeout=5)] == [1.0, 2.0, 3.0]


def test_starts_without_a_champion_and_reload_loads_it(stack, champion, tmp_path) -> None:
    name = f"serving-empty-{uuid.uuid4().hex[:8]}"
    with spare_service(stack, tmp_path, name) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").status_code == 503
        assert http.get("/model").status_code == 503
        assert http.post("/predict", json=as_json(listings(count=1))[0]).status_code == 503
        assert http.post("/reload").status_code == 404
        client = MlflowClient(tracking_uri=stack.resource("mlflow_resource").url)
        source = client.get_model_version(champion.name, champion.version).source  # models:/m-<logged model id>
        version = mlflow.register_model(source, name)
        set_champion(stack.resource("mlflow_resource").url, name, version.version)
        assert http.post("/reload").json() == {"previous_version": None, "version": "1", "changed": True}
        assert http.get("/health").json() == {"status": "ok", "model_version": "1"}
        assert http.post("/predict", json=as_json(listings(count=1))[0]).status_code == 200

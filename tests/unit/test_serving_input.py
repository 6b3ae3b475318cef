"""The inference API's input rules, in process (no model needed: a request is refused before one is used).

The service on the real stack is fuzzed from its OpenAPI document in tests/integration/test_serving_schemathesis.py;
these pin the classes of input that used to be a 500 or a price for nothing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # starlette's TestClient warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from ml_assets.schema import REQUIRED_LISTING_FIELDS
from ml_assets.serving.app import create_app
from ml_assets.serving.limits import MAX_ECHO_CHARS, NOT_JSON
from ml_assets.serving.settings import ServingSettings

BODY_PATHS = ("/predict", "/predict/batch", "/explain")
CONTENT_TYPES = [None, "application/octet-stream", "text/plain", "image/png", "application/json", "multipart/form-data"]
LISTING = {
    "bed": 3,
    "bath": 2,
    "acre_lot": 0.3,
    "house_size": 1500,
    "city": "Ames",
    "state": "Iowa",
    "zip_code": 50010,
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings_ = ServingSettings(
        tracking_uri="http://127.0.0.1:9",  # nothing listens: no model is ever loaded here
        model_name="m",
        s3_endpoint="http://127.0.0.1:9",
        s3_access_key="a",
        s3_secret_key="b",
        predictions_bucket="p",
    )
    yield TestClient(create_app(settings_), raise_server_exceptions=False)


def _body(path: str, listing: object) -> object:
    return {"listings": [listing]} if path == "/predict/batch" else listing


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("path", BODY_PATHS)
def test_non_utf8_bytes_of_any_content_type_are_a_4xx(client, path, content_type) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=b"\xff\xfe\x80 not json", headers=headers)
    assert 400 <= response.status_code < 500, response.text
    if content_type != "application/json":
        assert response.json()["detail"][0]["msg"] == NOT_JSON
    assert client.get("/health").status_code == 503  # still answering (no model here, so 503 is its health)


@given(
    body=st.binary(max_size=512) | st.text(max_size=256).map(str.encode),
    content_type=st.sampled_from(CONTENT_TYPES),
    path=st.sampled_from(BODY_PATHS),
)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_bytes_with_any_content_type_are_never_a_server_error(client, body, content_type, path) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.text)
    response.json()  # every answer is JSON


@pytest.mark.parametrize("path", BODY_PATHS)
def test_an_empty_listing_is_a_422_naming_each_required_field(client, path) -> None:
    response = client.post(path, json=_body(path, {}))
    assert response.status_code == 422
    missing = [e["loc"][-1] for e in response.json()["detail"] if e["type"] == "missing"]
    assert missing == list(REQUIRED_LISTING_FIELDS)


def test_a_complete_listing_passes_validation(client) -> None:
    # 503: the listing was accepted and only the (absent) model stops it
    assert client.post("/predict", json=LISTING).status_code == 503
    assert client.post("/predict", json={**LISTING, "bed": None, "city": None}).status_code == 503  # null: unknown


def test_house_size_must_be_a_number(client) -> None:
    response = client.post("/predict", json={**LISTING, "house_size": None})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "house_size"]]


def test_numeric_strings_are_coerced_and_words_refused(client) -> None:
    assert client.post("/predict", json={**LISTING, "bed": "3", "house_size": "1500.5"}).status_code == 503
    response = client.post("/predict", json={**LISTING, "bed": "three"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "bed"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_named_as_such(client, token) -> None:
    body = json.dumps({**LISTING, "house_size": 1}).replace('"house_size": 1', f'"house_size": {token}')
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "house_size"] and error["msg"] == "Input should be a finite number"


def test_a_422_never_echoes_a_huge_input(client) -> None:
    response = client.post("/predict", json={**LISTING, "street": "x" * 300_000})
    assert response.status_code == 422
    assert len(response.content) < 4 * MAX_ECHO_CHARS + 1000
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "street"] and error["input"].endswith("(300000 characters)")
    response = client.post("/predict", json={**LISTING, "bed": ["y" * 1000] * 200})
    assert response.status_code == 422 and len(response.content) < 4 * MAX_ECHO_CHARS + 1000

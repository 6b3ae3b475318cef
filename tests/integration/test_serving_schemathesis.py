"""Property-based fuzzing of the running service from its own OpenAPI document: nothing may be a 5xx.

Driven through schemathesis's Python API rather than its pytest loader: `schemathesis.pytest.from_fixture`
(4.32.5) sets `Node._nodeid`, which pytest 9 no longer has, and fails every test with an AttributeError.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from ml_assets.serving.resource import InferenceResource
from tests.integration.serving_helpers import ensure_champion, running_service

pytestmark = pytest.mark.integration

OPERATIONS = [
    ("POST", "/predict"),
    ("POST", "/predict/batch"),
    ("POST", "/explain"),
    ("GET", "/model"),
    ("POST", "/reload"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]
MAX_EXAMPLES = 50  # per operation and mode; the whole module stays well under a minute


@pytest.fixture(scope="module")
def service(stack, tmp_path_factory) -> Iterator[InferenceResource]:
    ensure_champion(stack)  # with a model loaded, a 503 would be a real failure, not "no model yet"
    with running_service(stack, tmp_path_factory.mktemp("fuzz")) as resource:
        yield resource


@pytest.fixture(scope="module")
def api_schema(service):
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


def test_every_operation_is_fuzzed(api_schema) -> None:
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


# Invalid inputs only exist where there is a body; for the rest "negative" has nothing to generate.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if p in ("/predict", "/predict/batch", "/explain")
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_no_input_is_a_server_error(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,  # no example database written into the checkout
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()


# The schema declares only application/json; clients send anything. Every generated body, and raw bytes (not UTF-8,
# not JSON), goes out under every content type too: a 500 here was the validation-error handler decoding bytes.
CONTENT_TYPES = [None, "application/json", "application/octet-stream", "text/plain", "image/png", "application/xml"]
BODY_OPERATIONS = [p for m, p in OPERATIONS if m == "POST" and p != "/reload"]


@pytest.mark.parametrize("path", BODY_OPERATIONS)
def test_any_body_under_any_content_type_is_not_a_server_error(api_schema, service, path: str) -> None:
    import json

    import httpx
    from hypothesis import strategies as st

    operation = api_schema[path]["POST"]
    generated = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE).map(
        lambda case: json.dumps(case.body, default=str).encode("utf-8", "surrogatepass")
    )
    bodies = generated | st.binary(max_size=2048)

    @given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(body: bytes, content_type: str | None) -> None:
        headers = {"content-type": content_type} if content_type else {}
        with httpx.Client(base_url=service.url, timeout=30) as http:
            response = http.post(path, content=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text[:300])

    fuzz()
    with httpx.Client(base_url=service.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"  # and the service is still healthy

"""A batch source bounded in every way it could push: bytes (declared or counted), rows, text length, and the
total time of one fetch; then a fuzz of the client and validation with random and hostile payloads: each is a
batch or one `SourceError` line, never another exception."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_assets.data.source import SourceError
from ml_assets.data.validation import validate_batch
from ml_assets.schema import COLUMNS
from platform_core.config import parse_config
from tests.unit.test_data_source import GOOD, Receiver, Reply, client, ok
from tests.unit.test_data_source import receiver as receiver  # the fixture


def _refusal(receiver: Receiver, **limits: float) -> str:
    with pytest.raises(SourceError) as caught:
        client(receiver.url, **limits).fetch_batch(3)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_declared_length_over_the_limit_is_refused_unread(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: ok(group, day, [GOOD] * 50)
    message = _refusal(receiver, max_response_bytes=2048)
    assert "bytes declared, over ml.max_response_bytes (2048)" in message and receiver.requests == 1


def test_an_undeclared_length_is_counted_as_it_arrives(receiver: Receiver) -> None:
    receiver.declare_length = False
    receiver.respond = lambda n, group, day: ok(group, day, [GOOD] * 5000)
    message = _refusal(receiver, max_response_bytes=100_000)
    assert "over ml.max_response_bytes (100000) after" in message


def test_too_many_rows_are_refused_naming_the_limit(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: ok(group, day, [GOOD] * 11)
    assert "has 11 rows, over ml.max_batch_rows (10)" in _refusal(receiver, max_batch_rows=10)


def test_a_ten_megabyte_text_field_is_refused(receiver: Receiver) -> None:
    huge = {**GOOD, "street": "x" * 10_000_000}
    receiver.respond = lambda n, group, day: ok(group, day, [GOOD, huge])
    message = _refusal(receiver)
    assert message.startswith("record 1 of day 3 from ")
    assert message.endswith(": street is 10000000 characters, over ml.max_text_chars (200)")


def test_a_source_that_never_answers_gives_up_at_the_deadline(receiver: Receiver) -> None:
    def silent(n: int, group: int, day: int) -> Reply:
        time.sleep(5)
        return ok(group, day)

    receiver.respond = silent
    started = time.monotonic()
    message = _refusal(receiver, timeout_seconds=0.4, retries=10, deadline_seconds=1.5)
    assert time.monotonic() - started < 2.5
    assert "gave up after" in message and "(ml.deadline_seconds 1.5)" in message and "timed out" in message


def test_a_source_that_drips_bytes_is_stopped_at_the_deadline(receiver: Receiver) -> None:
    receiver.drip_seconds = 0.1  # each 1 KB piece arrives well inside the per-read timeout
    receiver.respond = lambda n, group, day: ok(group, day, [GOOD] * 200)
    started = time.monotonic()
    message = _refusal(receiver, timeout_seconds=1, deadline_seconds=1)
    assert "still arriving after ml.deadline_seconds (1)" in message and time.monotonic() - started < 3


def test_the_offline_api_may_not_serve_more_rows_than_the_limit() -> None:
    from platform_core.config import ConfigError

    with pytest.raises(ConfigError, match=r"ml\.batch_rows: 500 is over ml\.max_batch_rows \(100\)"):
        parse_config({"ml": {"batch_rows": 500, "max_batch_rows": 100}})


# --- fuzz ---------------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
RECORDS = st.fixed_dictionaries({c: JSON_VALUES for c in COLUMNS}) | st.dictionaries(
    st.sampled_from([*COLUMNS, "garage", ""]), JSON_VALUES, max_size=14
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(RECORDS, max_size=6).map(
        lambda rows: json.dumps({"group_number": 1, "day": 3, "batch_number": 3, "data": rows}).encode()
    ),
    st.sampled_from(["utf-16", "utf-32", "latin-1"]).map(
        lambda enc: json.dumps({"group_number": 1, "day": 3, "batch_number": 3, "data": [GOOD]}).encode(enc)
    ),
)


@pytest.fixture(scope="module")
def fuzz_receiver() -> Iterator[Receiver]:
    yield from receiver.__wrapped__()  # type: ignore[attr-defined]


@given(body=PAYLOADS, content_type=st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_payload_is_a_batch_or_one_line(fuzz_receiver: Receiver, body: bytes, content_type: str) -> None:
    fuzz_receiver.respond = lambda n, group, day: (200, content_type, body)
    try:
        batch = client(fuzz_receiver.url, retries=0, max_response_bytes=4096).fetch_batch(3)
    except SourceError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert list(batch.frame.columns) == list(COLUMNS)
    report = validate_batch(batch.frame)  # and validation judges whatever got through without raising
    assert report.passed or report.problems

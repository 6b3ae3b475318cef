"""The batch client against the real offline API (uvicorn in a thread) and against a receiver that misbehaves.

The offline API runs once per session on an ephemeral 127.0.0.1 port; drift is global to that server, so each
drift test resets it to "none" when it ends. The misbehaving receiver is a plain ThreadingHTTPServer whose
mode a test sets, counting the requests it sees to prove how often the client retried.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import requests
import uvicorn
from fastapi import FastAPI

from ml_assets.data.dataset import ames_listings
from ml_assets.data.offline_api import create_app
from ml_assets.data.source import Batch, BatchSourceResource, SourceError
from ml_assets.data.validation import validate_batch
from ml_assets.schema import COLUMNS

ROWS, BATCHES = 100, 5
SHIFTED = ["house_size", "acre_lot", "bed", "bath", "price"]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under a real uvicorn on an ephemeral 127.0.0.1 port, in a thread; yields its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "offline API did not start"
    port = server.servers[0].sockets[0].getsockname()[1]  # port=0: the kernel picked a free one
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_url() -> Iterator[str]:
    with serving(create_app(ROWS, BATCHES)) as url:
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health == {"status": "ok", "rows": 2930, "batches": BATCHES}
        yield url


def client(url: str, group: int = 1, **kwargs: float) -> BatchSourceResource:
    return BatchSourceResource(base_url=url, group_number=group, backoff_seconds=0.01, **kwargs)


@pytest.fixture
def drift(api_url: str) -> Iterator[None]:
    yield
    requests.post(f"{api_url}/admin/drift", json={"kind": "none"}, timeout=5).raise_for_status()


def set_drift(url: str, **body: object) -> requests.Response:
    return requests.post(f"{url}/admin/drift", json=body, timeout=5)


# --- the offline API through the client ---------------------------------------------------------------------


def test_batch_shape_dtypes_and_number(api_url: str) -> None:
    batch = client(api_url).fetch_batch(2)
    assert isinstance(batch, Batch)
    assert (batch.group_number, batch.day, batch.batch_number) == (1, 2, 2)
    assert list(batch.frame.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in batch.frame.dtypes.items()} == COLUMNS
    assert len(batch.frame) == ROWS
    assert validate_batch(batch.frame).passed


def test_batches_are_the_seeded_shuffle_of_the_real_data(api_url: str) -> None:
    order = np.random.default_rng(1).permutation(2930)
    expected = ames_listings().iloc[order[3 * ROWS : 4 * ROWS]].reset_index(drop=True)
    pd.testing.assert_frame_equal(client(api_url).fetch_batch(3).frame, expected)


def test_deterministic_per_group_and_day(api_url: str) -> None:
    first, again = client(api_url).fetch_batch(0), client(api_url).fetch_batch(0)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    other_day = client(api_url).fetch_batch(1).frame
    other_group = client(api_url, group=2).fetch_batch(0).frame
    assert set(first.frame["street"]).isdisjoint(other_day["street"])  # days are disjoint slices
    assert set(first.frame["street"]) != set(other_group["street"])


@pytest.mark.parametrize("day", [BATCHES, -1, 99])
def test_day_out_of_range_is_404_naming_the_day(api_url: str, day: int) -> None:
    response = requests.get(f"{api_url}/data", params={"group_number": 1, "day": day}, timeout=5)
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"day {day} is out of range: valid days are 0..{BATCHES - 1}")
    with pytest.raises(SourceError, match=rf"day {day} from http://127\.0\.0\.1:\d+/data\?.* HTTP 404.*0\.\.4"):
        client(api_url).fetch_batch(day)


def test_days_beyond_the_data_are_404() -> None:
    with serving(create_app(batch_rows=1000, batches=8)) as url:  # 2930 rows hold only 3 batches of 1000
        assert len(client(url, group=0).fetch_batch(2).frame) == 930
        with pytest.raises(SourceError, match=r"day 3 .*HTTP 404.*valid days are 0\.\.2"):
            client(url, group=0).fetch_batch(3)


def test_shift_scales_the_numeric_columns(api_url: str, drift: None) -> None:
    base = client(api_url).fetch_batch(1).frame
    assert set_drift(api_url, kind="shift", strength=2).status_code == 200
    shifted = client(api_url).fetch_batch(1).frame
    for column in SHIFTED:
        np.testing.assert_allclose(shifted[column], base[column] * 2.0)  # 1 + 0.5 * 2
    pd.testing.assert_frame_equal(shifted.drop(columns=SHIFTED), base.drop(columns=SHIFTED))
    assert requests.get(f"{api_url}/admin/drift", timeout=5).json() == {
        "kind": "shift",
        "strength": 2.0,
        "columns": None,
    }
    set_drift(api_url, kind="none")
    pd.testing.assert_frame_equal(client(api_url).fetch_batch(1).frame, base)


def test_new_category_adds_unseen_status_and_city(api_url: str, drift: None) -> None:
    base = client(api_url).fetch_batch(0).frame
    set_drift(api_url, kind="new_category", strength=1)
    first, again = client(api_url).fetch_batch(0).frame, client(api_url).fetch_batch(0).frame
    pd.testing.assert_frame_equal(first, again)
    changed = first["status"] == "foreclosure"
    assert changed.sum() == ROWS // 2  # min(1, 0.5 * 1) of the rows
    assert (first.loc[changed, "city"] == "Springfield").all() and (first.loc[~changed, "city"] == "Ames").all()
    pd.testing.assert_frame_equal(first.drop(columns=["status", "city"]), base.drop(columns=["status", "city"]))
    problems = {(p.column, p.rule): p for p in validate_batch(first).problems}
    assert problems[("status", "category")].count == ROWS // 2
    set_drift(api_url, kind="new_category", strength=3)
    assert (client(api_url).fetch_batch(0).frame["status"] == "foreclosure").all()


def test_nulls_blank_house_size_and_bath(api_url: str, drift: None) -> None:
    base = client(api_url).fetch_batch(4).frame
    set_drift(api_url, kind="nulls", strength=1)
    holed = client(api_url).fetch_batch(4).frame
    assert holed["house_size"].isna().sum() == holed["bath"].isna().sum() == 30  # 0.3 * 100 rows
    assert not holed["house_size"].isna().equals(holed["bath"].isna())  # each column loses its own rows
    pd.testing.assert_frame_equal(holed.drop(columns=["house_size", "bath"]), base.drop(columns=["house_size", "bath"]))
    assert ("house_size", "nulls") in {(p.column, p.rule) for p in validate_batch(holed).problems}
    set_drift(api_url, kind="nulls", strength=5, columns=["bed"])  # capped at 90%, only the named column
    capped = client(api_url).fetch_batch(4).frame
    assert capped["bed"].isna().sum() == 90 and capped["house_size"].notna().all()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "earthquake"},
        {"kind": "shift", "strength": 6},
        {"kind": "shift", "strength": -1},
        {"kind": "shift", "columns": ["street"]},
        {"kind": "nulls", "columns": ["nope"]},
        {"kind": "nulls", "columns": []},
        {"kind": "none", "surprise": 1},
    ],
)
def test_bad_drift_settings_are_422(api_url: str, drift: None, body: dict[str, object]) -> None:
    assert set_drift(api_url, **body).status_code == 422
    assert requests.get(f"{api_url}/admin/drift", timeout=5).json()["kind"] == "none"


def test_bad_query_is_422(api_url: str) -> None:
    assert requests.get(f"{api_url}/data", params={"group_number": -1, "day": 0}, timeout=5).status_code == 422
    assert requests.get(f"{api_url}/data", params={"group_number": 1}, timeout=5).status_code == 422


# --- a receiver that misbehaves on command ----------------------------------------------------------------------

GOOD = {
    "brokered_by": 101.0,
    "status": "for_sale",
    "price": 250000,
    "bed": 3,
    "bath": 2,
    "acre_lot": 0.25,
    "street": "1 Main Street",
    "city": "Ames",
    "state": "Iowa",
    "zip_code": 50010,
    "house_size": 1500,
    "prev_sold_date": None,
}
Reply = tuple[int, str, bytes]  # status, content type, body


def ok(group: int, day: int, records: list[object] | None = None, /, **overrides: object) -> Reply:
    data = [GOOD, GOOD] if records is None else records
    payload = {"group_number": group, "day": day, "batch_number": day, "data": data, **overrides}
    return 200, "application/json", json.dumps(payload).encode()


def echo(**overrides: object) -> Callable[[int, int], Reply]:
    """A good batch except for the top-level keys in `overrides` (e.g. a wrong `day` echoed back)."""
    return lambda g, d: ok(g, d, **{"data": [GOOD], **overrides})


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a deliberately slow handler must not hold up teardown

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.respond: Callable[[int, int, int], Reply] = lambda n, group, day: ok(group, day)
        self.declare_length = True  # False: no Content-Length, the body ends when the connection closes
        self.drip_seconds = 0.0  # > 0: the body is sent 1 KB at a time with this pause between pieces

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hanging up on a slow reply is the point of that test


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            n = self.server.requests
        query = parse_qs(urlparse(self.path).query)
        status, content_type, body = self.server.respond(n, int(query["group_number"][0]), int(query["day"][0]))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if self.server.declare_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.server.drip_seconds:
            self.wfile.write(body)
            return
        for start in range(0, len(body), 1024):
            self.wfile.write(body[start : start + 1024])
            self.wfile.flush()
            time.sleep(self.server.drip_seconds)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def error(status: int, text: str = "boom") -> Reply:
    return status, "text/plain", text.encode()


def test_retries_503_then_succeeds(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: error(503, "warming up") if n <= 2 else ok(group, day)
    batch = client(receiver.url).fetch_batch(3)
    assert receiver.requests == 3 and len(batch.frame) == 2 and batch.batch_number == 3


def test_retries_429(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: error(429, "slow down") if n == 1 else ok(group, day)
    assert len(client(receiver.url).fetch_batch(0).frame) == 2 and receiver.requests == 2


def test_persistent_500_gives_up_after_retries(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: error(500, "database\nis down")
    with pytest.raises(SourceError) as caught:
        client(receiver.url, retries=2).fetch_batch(1)
    assert receiver.requests == 3
    message = str(caught.value)
    assert "\n" not in message and "day 1 from http://127.0.0.1:" in message
    assert "after 3 attempts: HTTP 500: 'database is down'" in message


def test_400_is_not_retried(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: error(400, '{"detail": "unknown group"}')
    with pytest.raises(SourceError, match=r"day 0 from .* failed with HTTP 400: .*unknown group"):
        client(receiver.url).fetch_batch(0)
    assert receiver.requests == 1


def test_connection_refused_is_retried_then_reported() -> None:
    free = Receiver()
    url = free.url
    free.server_close()  # nothing listens there any more
    with pytest.raises(SourceError, match=r"failed after 2 attempts: connection failed: .*refused"):
        client(url, retries=1).fetch_batch(0)


def test_slow_response_times_out(receiver: Receiver) -> None:
    def slow(n: int, group: int, day: int) -> Reply:
        time.sleep(0.8)
        return ok(group, day)

    receiver.respond = slow
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"day 2 .*after 2 attempts: timed out after 0.3s"):
        client(receiver.url, retries=1, timeout_seconds=0.3).fetch_batch(2)
    assert time.monotonic() - started < 2.0 and receiver.requests == 2


NO_PRICE = {k: v for k, v in GOOD.items() if k != "price"}
HTML = b"<html>\n  maintenance </html>"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (lambda g, d: (200, "text/html", HTML), r"is not JSON \(text/html\): '<html> maintenance </html>'"),
        (lambda g, d: (200, "application/json", b"[1, 2]"), r"is a JSON list, not an object"),
        (lambda g, d: (200, "application/json", b'{"group_number": 1, "day": 3}'), r"has no 'batch_number'"),
        (echo(data={"rows": []}), r"^payload of day 3 from http://\S+ has no 'data' list$"),
        (echo(group_number=7), r"echoes group_number 7, expected 1"),
        (echo(day=4), r"echoes day 4, expected 3"),
        (echo(batch_number="third"), r"non-integer batch_number 'third'"),
        (lambda g, d: ok(g, d, [GOOD, NO_PRICE]), r"record 1 of day 3 .* has no 'price' column"),
        (lambda g, d: ok(g, d, [{**GOOD, "garage": 2}]), r"record 0 of day 3 .* unknown column 'garage'"),
        (lambda g, d: ok(g, d, [GOOD, GOOD, {**GOOD, "bed": "three"}]), r"record 2 .*: bed='three' is not a number"),
        (lambda g, d: ok(g, d, [{**GOOD, "bath": True}]), r"record 0 .*: bath=True is not a number"),
        (lambda g, d: ok(g, d, [{**GOOD, "city": ["Ames"]}]), r"record 0 .*: city=\['Ames'\] is not a string"),
        (lambda g, d: ok(g, d, ["not a record"]), r"record 0 of day 3 .* is a JSON str, not an object"),
    ],
)
def test_malformed_payloads_name_the_problem(
    receiver: Receiver, reply: Callable[[int, int], Reply], expected: str
) -> None:
    receiver.respond = lambda n, group, day: reply(group, day)
    with pytest.raises(SourceError, match=expected) as caught:
        client(receiver.url).fetch_batch(3)
    assert "\n" not in str(caught.value) and receiver.requests == 1  # a bad payload is not retried


def test_empty_data_and_lenient_numbers(receiver: Receiver) -> None:
    receiver.respond = lambda n, group, day: ok(group, day, [])
    empty = client(receiver.url).fetch_batch(0).frame
    assert len(empty) == 0 and {c: str(t) for c, t in empty.dtypes.items()} == COLUMNS
    # numbers quoted as strings and a numeric street name are coerced, not refused
    receiver.respond = lambda n, group, day: ok(group, day, [{**GOOD, "bed": "4", "street": 12, "price": None}])
    frame = client(receiver.url).fetch_batch(0).frame
    assert frame.loc[0, "bed"] == 4.0 and frame.loc[0, "street"] == "12" and pd.isna(frame.loc[0, "price"])
    assert {c: str(t) for c, t in frame.dtypes.items()} == COLUMNS

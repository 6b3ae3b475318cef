"""The batch client against the real offline API (uvicorn in a thread) and against a receiver that misbehaves.

The offline API runs once per session on an ephemeral 127.0.0.1 port; drift is global to that server, so each
drift test resets it to "none" when it ends. The misbehaving receiver is a plain ThreadingHTTPServer whose
mode a test sets, counting the requests it sees to prove how often the client retried.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

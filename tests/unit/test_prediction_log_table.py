"""The prediction log's rows as written to Parquet: the request's fields, the price, the version, the time."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime, timedelta

import pytest

from ml_assets.serving.prediction_log import EPOCH, SCHEMA, PredictionLog, RowBuffer
from ml_assets.serving.settings import ServingSettings


def micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


FIRST, SECOND = datetime(2026, 12, 7, 8, 0, tzinfo=UTC), datetime(2026, 12, 7, 8, 1, tzinfo=UTC)


def two_requests() -> RowBuffer:
    rows = RowBuffer()
    rows.add({"city": ["Ames", None], "bed": [3.0, None], "house_size": [None, 1200.0]}, [1.5, 2.5], "7", micros(FIRST))
    rows.add({"city": ["Ames"], "bed": [3.0]}, [3.5], "8", micros(SECOND))
    return rows


def test_the_table_keeps_every_row_in_order_with_its_request_fields() -> None:
    table = two_requests().table()
    assert table.schema.equals(SCHEMA)
    assert table.column("city").to_pylist() == ["Ames", None, "Ames"]
    assert table.column("bed").to_pylist() == [3.0, None, 3.0]
    assert table.column("house_size").to_pylist() == [None, 1200.0, None]  # a field a request lacks is null
    assert table.column("street").to_pylist() == [None, None, None]
    assert table.column("predicted_price").to_pylist() == [1.5, 2.5, 3.5]
    assert table.column("model_version").to_pylist() == ["7", "7", "8"]
    assert table.column("predicted_at").to_pylist() == [FIRST, FIRST, SECOND]


def test_rows_split_by_utc_date_and_rows_put_back_go_first() -> None:
    rows = two_requests()
    rows.add({"city": ["Boone"]}, [4.5], "8", micros(datetime(2026, 12, 8, 0, 0, tzinfo=UTC)))
    assert rows.days() == [(date(2026, 12, 7), 0, 3), (date(2026, 12, 8), 3, 4)]
    newer = RowBuffer()
    newer.add({"city": ["Nevada"]}, [5.5], "9", micros(datetime(2026, 12, 8, 0, 1, tzinfo=UTC)))
    newer.put_back(rows, 3)  # the first date was written, the second failed
    assert newer.table().column("city").to_pylist() == ["Boone", "Nevada"]
    assert len(newer) == 2


def test_buffered_rows_hold_no_container_the_collector_tracks() -> None:
    rows = RowBuffer()
    tracked = len(gc.get_objects())
    for _ in range(1000):
        rows.add({"city": ["Ames"], "bed": [3.0]}, [1.5], "7", 1)
    assert len(rows) == 1000
    assert len(gc.get_objects()) - tracked < 10


def test_a_request_whose_fields_and_prices_differ_in_length_is_refused_whole() -> None:
    rows = two_requests()
    with pytest.raises(ValueError, match="2 values, one per price"):
        rows.add({"city": ["Ames", "Boone"], "bed": [3.0]}, [1.0, 2.0], "7", 1)
    assert {len(values) for values in rows.columns.values()} == {3}


def test_a_failed_write_of_the_second_date_keeps_only_that_dates_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(
        ServingSettings(
            tracking_uri="http://127.0.0.1:9",
            model_name="m",
            s3_endpoint="http://127.0.0.1:9",
            s3_access_key="a",
            s3_secret_key="b",
            predictions_bucket="p",
        )
    )
    rows = two_requests()
    rows.add({"city": ["Boone"]}, [4.5], "8", micros(datetime(2026, 12, 8, 0, 0, tzinfo=UTC)))
    log._buffer = rows
    written: list[tuple[date, int]] = []

    def write(table: object, day: date) -> None:
        if day == date(2026, 12, 8):
            raise ConnectionError("S3 is down")
        written.append((day, len(table)))  # type: ignore[arg-type]

    monkeypatch.setattr(log, "_write", write)
    assert log.flush() is False
    assert written == [(date(2026, 12, 7), 3)]
    assert (log.pending_rows, log.failed_flushes) == (1, 1)
    monkeypatch.setattr(log, "_write", lambda table, day: written.append((day, len(table))))
    assert log.flush() is True and log.pending_rows == 0
    assert written[-1] == (date(2026, 12, 8), 1)

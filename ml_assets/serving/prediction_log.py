"""Every prediction, buffered in memory and written to S3 as Parquet by a background thread.

Requests only append under a short lock; the thread writes when the buffer reaches `log_flush_rows`, every
`flush_interval_seconds` and at shutdown. A failed write puts its rows back, in order, for the next attempt.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config

from ml_assets.schema import COLUMNS, LISTING_FIELDS
from ml_assets.serving.settings import PREDICTION_LOG_PREFIX, ServingSettings

logger = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [(name, pa.float64() if COLUMNS[name] == "float64" else pa.string()) for name in LISTING_FIELDS]
    + [
        ("predicted_price", pa.float64()),
        ("model_version", pa.string()),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
    ]
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS_PER_DAY = 86_400_000_000


class RowBuffer:
    """Rows not yet written, one list per column of the log (`predicted_at` in microseconds since the epoch).

    Appending adds values to long-lived lists and keeps no container per request or row, so the buffer gives the
    cyclic collector nothing to scan: with a dict per row (or lists per request) kept until the flush, full
    collections walked the whole buffer, the tail of single-row latency. Writing it is one conversion per column.
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {name: [] for name in SCHEMA.names}

    def __len__(self) -> int:
        return len(self.columns["predicted_price"])

    def add(self, listings: Mapping[str, Sequence[object]], prices: Sequence[float], version: str, at: int) -> None:
        """One request: its listings field by field (a field left out is null), their prices, when (µs). A field
        of another length than the prices is refused before anything is added: the columns stay aligned."""
        rows = len(prices)
        if any(len(listings[name]) != rows for name in LISTING_FIELDS if name in listings):
            raise ValueError(f"every listing field needs {rows} values, one per price")
        for name in LISTING_FIELDS:
            self.columns[name].extend(listings[name] if name in listings else [None] * rows)
        self.columns["predicted_price"].extend(prices)
        self.columns["model_version"].extend([version] * rows)
        self.columns["predicted_at"].extend([at] * rows)

    def put_back(self, rows: RowBuffer, start: int) -> None:
        """`rows` from `start` on, in front of what came since: the log stays in time order."""
        for name, values in self.columns.items():
            values[:0] = rows.columns[name][start:]

    def table(self) -> pa.Table:
        return pa.table([pa.array(self.columns[field.name], field.type) for field in SCHEMA], schema=SCHEMA)

    def days(self) -> list[tuple[date, int, int]]:
        """(UTC date, first row, end row) of each run of rows on one date: one Parquet file each."""
        day = np.asarray(self.columns["predicted_at"], dtype=np.int64) // MICROS_PER_DAY
        bounds = [0, *(np.flatnonzero(np.diff(day)) + 1).tolist(), len(day)]
        return [((EPOCH + timedelta(days=int(day[a]))).date(), a, b) for a, b in pairwise(bounds) if b > a]


class PredictionLog:
    def __init__(self, settings: ServingSettings) -> None:
        self.bucket = settings.predictions_bucket
        self.flush_rows = settings.log_flush_rows
        self.interval = settings.flush_interval_seconds
        self.failed_flushes = 0
        self._buffer = RowBuffer()
        self._lock = threading.Lock()  # guards the buffer; held for list operations only
        self._flush_lock = threading.Lock()  # one writer at a time: the thread's flush and the shutdown's
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2},
            ),
        )

    @property
    def pending_rows(self) -> int:
        return len(self._buffer)

    def append(self, listings: Mapping[str, Sequence[object]], prices: Sequence[float], model_version: str) -> None:
        """One request's rows: its listings field by field (what the model read), their prices."""
        at = time.time_ns() // 1000
        with self._lock:
            self._buffer.add(listings, prices, model_version, at)
            full = len(self._buffer) >= self.flush_rows
        if full:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> int:
        """Stop the thread, then write what is left; returns the rows still unwritten (0 on success)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        if self.pending_rows:
            logger.error("prediction log: %d rows could not be written to s3://%s", self.pending_rows, self.bucket)
        return self.pending_rows

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self.flush():
                # back off: with a full buffer every request would wake us into another doomed attempt
                self._stop.wait(self.interval)

    def flush(self) -> bool:
        """Write the buffer, one Parquet file per UTC date; False when a write failed (its rows are kept)."""
        with self._flush_lock:
            with self._lock:
                rows, self._buffer = self._buffer, RowBuffer()
            if not len(rows):
                return True
            start = 0  # the first row not yet written
            try:
                table = rows.table()
                for day, start, end in rows.days():
                    self._write(table.slice(start, end - start), day)
            except Exception:
                self.failed_flushes += 1
                logger.exception("prediction log: write to s3://%s failed; rows kept for retry", self.bucket)
                with self._lock:
                    self._buffer.put_back(rows, start)
                return False
            return True

    def _write(self, table: pa.Table, day: date) -> str:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        key = f"{PREDICTION_LOG_PREFIX}/date={day.isoformat()}/{uuid.uuid4().hex}.parquet"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=sink.getvalue())
        logger.info("prediction log: %d rows to s3://%s/%s", table.num_rows, self.bucket, key)
        return key

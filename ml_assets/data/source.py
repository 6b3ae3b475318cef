"""A client of the seed's batch API (`GET /data?group_number=N&day=D`), strict about what comes back.

Transient failures (connection errors, timeouts, 429, 5xx) are retried with exponential backoff; anything else
is a `SourceError` whose single line names the URL, the day and the problem, so a failed ingestion run says
what the API did wrong without anyone opening a debugger.
"""

from __future__ import annotations

import json
import re
import reprlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import dagster as dg
import requests

from ml_assets.data.service import offline_api_url
from ml_assets.schema import COLUMNS
from platform_core.config import PlatformConfig, load_config
from platform_core.redact import redact, redact_url

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

EXCERPT_CHARS = 200
CHUNK_BYTES = 8 * 1024  # small enough that a dripping body meets the deadline check often
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


class SourceError(ValueError):
    """The batch API failed or answered something that is not a batch of listings."""


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value, so no generated __eq__/__hash__
class Batch:
    group_number: int
    day: int
    batch_number: int
    frame: pd.DataFrame


def _one_line(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _connection_reason(err: requests.RequestException) -> str:
    """The useful end of urllib3's nested message, e.g. '[Errno 111] Connection refused'."""
    text = str(err)
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return found.group(0).strip() if found else _one_line(text, 160)


# What `ml:` settings a batch source takes, in the asset's process or a step pod (they travel as Pipes extras).
SOURCE_SETTINGS = (
    "group_number",
    "timeout_seconds",
    "retries",
    "backoff_seconds",
    "deadline_seconds",
    "max_response_bytes",
    "max_batch_rows",
    "max_text_chars",
)


def source_settings(cfg: PlatformConfig) -> dict[str, Any]:
    return {name: getattr(cfg.ml, name) for name in SOURCE_SETTINGS}


class BatchSourceResource(dg.ConfigurableResource):
    """One day's batch of listings for a group, from the batch API rooted at `base_url` (`/data` is appended).

    Bounded in every way a hostile or broken source could push: time (per request and in all), bytes (counted
    while they arrive), rows and text length, each refusal naming the `ml.` setting and the value it met."""

    base_url: str  # "" = the platform's own data API, looked up when used (k3s: its recorded address)
    group_number: int
    timeout_seconds: float = 10
    retries: int = 3
    backoff_seconds: float = 0.5
    deadline_seconds: float = 30
    max_response_bytes: int = 64 * 1024 * 1024
    max_batch_rows: int = 100_000
    max_text_chars: int = 200
    config_path: str | None = None  # with state_dir, how the platform's data API is found when base_url is ""
    state_dir: str | None = None

    def root(self) -> str:
        if self.base_url:
            return self.base_url
        configured = load_config(str(self.config_path)).ml.source_url
        if configured:  # kept out of the resource's config, which the UI shows: it carries credentials
            return str(configured)
        from ml_assets.data.service import DataApiResource  # the service module imports this one

        return DataApiResource(config_path=str(self.config_path), state_dir=str(self.state_dir)).url

    def fetch_batch(self, day: int) -> Batch:
        endpoint = f"{self.root().rstrip('/')}/data"
        params = {"group_number": self.group_number, "day": day}
        url = requests.Request("GET", endpoint, params=params).prepare().url or endpoint
        with requests.Session() as session:  # one connection reused across retries
            response, body = self._get(session, url, day)
        where = f"day {day} from {redact_url(url)}"
        try:
            payload = json.loads(body)  # bytes: UTF-8/16/32 detected as the JSON RFC allows
        except ValueError:  # UnicodeDecodeError included
            kind = response.headers.get("content-type", "no content-type")
            text = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
            raise SourceError(f"response of {where} is not JSON ({kind}): {_one_line(text)!r}") from None
        return self._parse(payload, day, where)

    def _get(self, session: requests.Session, url: str, day: int) -> tuple[requests.Response, bytes]:
        shown = redact_url(url)  # a source URL may carry credentials: messages reach logs, the UI and alerts
        attempts = self.retries + 1
        started = time.monotonic()
        deadline = started + self.deadline_seconds
        problem = ""
        for attempt in range(attempts):
            pause = self.backoff_seconds * 2 ** (attempt - 1) if attempt else 0.0
            if time.monotonic() + pause >= deadline:
                tried = f"{attempt} attempt{'s' if attempt > 1 else ''} in {time.monotonic() - started:.1f}s"
                raise SourceError(
                    f"day {day} from {shown} gave up after {tried} (ml.deadline_seconds {self.deadline_seconds:g}): "
                    f"{problem}"
                )
            time.sleep(pause)
            timeout = min(self.timeout_seconds, deadline - time.monotonic())
            try:
                response = session.get(url, timeout=timeout, stream=True)
                if response.status_code < 400:
                    return response, self._read(response, shown, day, deadline)
                excerpt = next(response.iter_content(EXCERPT_CHARS * 4), b"").decode("utf-8", "replace")
                response.close()  # an error page is only excerpted, however long it is
                problem = f"HTTP {response.status_code}: {_one_line(excerpt)!r}"
            except requests.RequestException as err:
                # a body that stalls mid-read surfaces as a ConnectionError wrapping urllib3's ReadTimeoutError
                if isinstance(err, requests.Timeout) or "timed out" in str(err).lower():
                    problem = f"timed out after {timeout:.3g}s"
                elif isinstance(err, requests.ConnectionError):
                    problem = f"connection failed: {redact(_connection_reason(err))}"
                else:
                    raise SourceError(
                        f"request of day {day} to {shown} failed: {_one_line(redact(str(err)))}"
                    ) from None
                continue
            if response.status_code != 429 and response.status_code < 500:
                raise SourceError(f"day {day} from {shown} failed with {problem}")
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        raise SourceError(f"day {day} from {shown} failed after {tries}: {problem}")

    def _read(self, response: requests.Response, shown: str, day: int, deadline: float) -> bytes:
        """The body, refused as soon as it is known to be over the limit (declared or counted) or past the
        deadline (a source that drips bytes never trips the per-read timeout)."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise SourceError(
                f"day {day} from {shown}: {declared} bytes declared, over ml.max_response_bytes ({limit})"
            )
        chunks, size = [], 0
        for chunk in response.iter_content(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                response.close()
                raise SourceError(f"day {day} from {shown}: over ml.max_response_bytes ({limit}) after {size} bytes")
            if time.monotonic() > deadline:
                response.close()
                raise SourceError(
                    f"day {day} from {shown}: still arriving after ml.deadline_seconds ({self.deadline_seconds:g})"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, payload: object, day: int, where: str) -> Batch:
        if not isinstance(payload, dict):
            raise SourceError(f"payload of {where} is a JSON {type(payload).__name__}, not an object")
        for key in ("group_number", "day", "batch_number"):
            if key not in payload:
                raise SourceError(f"payload of {where} has no {key!r}")
        records = payload.get("data")
        if not isinstance(records, list):
            raise SourceError(f"payload of {where} has no 'data' list")
        if len(records) > self.max_batch_rows:
            raise SourceError(
                f"payload of {where} has {len(records)} rows, over ml.max_batch_rows ({self.max_batch_rows})"
            )
        for key, expected in (("group_number", self.group_number), ("day", day)):
            if str(payload[key]) != str(expected):  # tolerate "3" for 3, as JSON APIs often quote numbers
                raise SourceError(f"payload of {where} echoes {key} {payload[key]!r}, expected {expected}")
        try:
            batch_number = int(payload["batch_number"])
        except (TypeError, ValueError):
            number = _short.repr(payload["batch_number"])
            raise SourceError(f"payload of {where} has a non-integer batch_number {number}") from None
        return Batch(self.group_number, day, batch_number, _frame(records, where, self.max_text_chars))


def _frame(records: list[object], where: str, max_text_chars: int) -> pd.DataFrame:
    import pandas as pd

    expected = set(COLUMNS)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise SourceError(f"record {index} of {where} is a JSON {type(record).__name__}, not an object")
        if record.keys() != expected:  # the common case costs one set comparison per record
            missing = [c for c in COLUMNS if c not in record]
            if missing:
                raise SourceError(f"record {index} of {where} has no {missing[0]!r} column")
            extra = next(k for k in record if k not in expected)
            raise SourceError(f"record {index} of {where} has an unknown column {_short.repr(extra)}")
    rows = cast(list[dict[str, object]], records)
    columns = {
        column: _coerce(pd.Series([r[column] for r in rows], dtype=object), column, dtype, where)
        for column, dtype in COLUMNS.items()
    }
    for column, dtype in COLUMNS.items():
        if dtype == "string":
            _check_length(columns[column], column, where, max_text_chars)
    return pd.DataFrame(columns).astype(COLUMNS)


def _coerce(values: pd.Series, column: str, dtype: str, where: str) -> pd.Series:
    """`values` as `dtype`; the first value that cannot be converted is named with its record index."""
    kinds = values.map(type)
    nulls = values.isna()
    if dtype == "float64":
        plain = kinds.isin([int, float]) | nulls  # bool is not int here: map(type) gives the exact class
        converted = values.where(plain, None).astype("float64")
        for index in values.index[~plain]:  # rare: numbers sent as strings, or junk
            number = _parse_float(values[index])
            if number is None:
                raise SourceError(f"record {index} of {where}: {column}={_short.repr(values[index])} is not a number")
            converted[index] = number
        return converted
    plain = kinds.eq(str) | nulls
    bad = ~plain & ~kinds.isin([int, float])  # numbers read fine as text (a numeric street or city name)
    if bad.any():
        index = int(values.index[bad][0])
        raise SourceError(f"record {index} of {where}: {column}={_short.repr(values[index])} is not a string")
    return values.where(plain, values.astype(str)).astype("string")


def _check_length(values: pd.Series, column: str, where: str, limit: int) -> None:
    lengths = values.str.len()
    over = lengths.gt(limit).fillna(False).to_numpy(dtype=bool)
    if over.any():
        index = int(over.argmax())
        raise SourceError(
            f"record {index} of {where}: {column} is {int(lengths.iloc[index])} characters, "
            f"over ml.max_text_chars ({limit})"
        )


def _parse_float(value: object) -> float | None:
    if not isinstance(value, str):
        return None  # bool, list, object
    try:
        return float(value)
    except ValueError:
        return None


def source_for(cfg: PlatformConfig, where: dict[str, str] | None = None) -> BatchSourceResource:
    """The seed's API when `ml.source_url` is set, else the bundled offline data API (in the k3s target,
    found at run time through `where`: its address is known only once Argo CD has deployed it)."""
    if cfg.ml.source_url:
        url = str(cfg.ml.source_url)
        base_url = "" if where and redact_url(url) != url else url  # "": read from platform.yaml when used
    else:
        base_url = "" if cfg.target == "k3s" and where else offline_api_url(cfg)
    located: dict[str, Any] = dict(where or {})
    return BatchSourceResource(base_url=base_url, **located, **source_settings(cfg))

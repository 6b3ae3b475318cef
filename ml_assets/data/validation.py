"""Data-quality rules for one batch of listings: pure functions of a DataFrame, vectorized.

Each rule yields at most one `Problem` per column, naming the first offending row positions, so a failed check
tells someone which rows to look at without flooding the run log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.schema import COLUMNS, STATUSES

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

MAX_LISTED_ROWS = 10
NULL_LIMITS = {"price": 0.0, "house_size": 0.10, "bed": 0.20, "bath": 0.20, "acre_lot": 0.20}
DEFAULT_NULL_LIMIT = 0.50
RANGES: dict[str, tuple[float, float]] = {
    "price": (1_000, 100_000_000),
    "bed": (0, 50),
    "bath": (0, 50),
    "acre_lot": (0, 100_000),
    "house_size": (50, 100_000),
    "zip_code": (0, 99_999),
    "brokered_by": (0, math.inf),
}
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"


@dataclass(frozen=True)
class Problem:
    column: str  # "*" for the whole batch
    rule: str  # schema | nulls | range | category | format | duplicates | empty
    message: str
    rows: list[int]  # first offending row positions (schema problems concern the column, not rows)
    count: int  # offending rows in total


@dataclass(frozen=True)
class ValidationReport:
    passed: bool
    problems: list[Problem]
    stats: dict[str, object] = field(default_factory=dict)  # rows, null_rates, duplicates

    def summary(self) -> str:
        rows = self.stats.get("rows", 0)
        if self.passed:
            return f"passed: {rows} rows, no problems"
        listed = "; ".join(p.message for p in self.problems)
        return f"failed: {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''} in {rows} rows: {listed}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _rows_problem(column: str, rule: str, mask: pd.Series | np.ndarray, what: str) -> Problem | None:
    """A problem for the rows where `mask` is true, worded '<column>: N rows <what> (rows a, b, c)'."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    if positions.size == 0:
        return None
    first = [int(p) for p in positions[:MAX_LISTED_ROWS]]
    more = ", ..." if positions.size > MAX_LISTED_ROWS else ""
    noun = "row" if positions.size == 1 else "rows"
    message = f"{column}: {positions.size} {noun} {what} (rows {', '.join(map(str, first))}{more})"
    return Problem(column, rule, message, first, int(positions.size))


def _schema_problems(frame: pd.DataFrame) -> list[Problem]:
    problems = []
    for column, dtype in COLUMNS.items():
        if column not in frame.columns:
            problems.append(Problem(column, "schema", f"{column}: missing column", [], 0))
        elif str(frame[column].dtype) != dtype:
            message = f"{column}: dtype {frame[column].dtype}, expected {dtype}"
            problems.append(Problem(column, "schema", message, [], 0))
    for column in frame.columns:
        if column not in COLUMNS:
            problems.append(Problem(str(column), "schema", f"{column}: unexpected column", [], 0))
    return problems


def _null_problem(column: str, nulls: pd.Series) -> Problem | None:
    limit = NULL_LIMITS.get(column, DEFAULT_NULL_LIMIT)
    rate = float(nulls.mean())
    if rate <= limit:
        return None
    return _rows_problem(column, "nulls", nulls, f"null ({rate:.1%}, limit {limit:.0%})")


def _range_problem(column: str, values: pd.Series) -> Problem | None:
    low, high = RANGES[column]
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    present = ~np.isnan(numbers)
    with np.errstate(invalid="ignore"):
        outside = present & (~np.isfinite(numbers) | (numbers < low) | (numbers > high))
    bounds = f"below {_number(low)}" if math.isinf(high) else f"outside {_number(low)}..{_number(high)}"
    return _rows_problem(column, "range", outside, bounds)


def _status_problem(values: pd.Series) -> Problem | None:
    unknown = values.notna() & ~values.isin(STATUSES)
    seen = ", ".join(repr(v) for v in values[unknown].unique()[:3])
    what = f"with unknown values {seen} (allowed: {', '.join(STATUSES)})"
    return _rows_problem("status", "category", unknown.to_numpy(dtype=bool), what)


def _date_problem(values: pd.Series) -> Problem | None:
    import pandas as pd

    present = values.notna()
    shaped = values.str.fullmatch(DATE_PATTERN).fillna(False).astype(bool)
    # the pattern alone passes 2010-13-45; the parse catches impossible dates
    parsed = pd.to_datetime(values.where(shaped), format="%Y-%m-%d", errors="coerce").notna()
    bad = (present & ~(shaped & parsed)).to_numpy(dtype=bool)
    return _rows_problem("prev_sold_date", "format", bad, "not a YYYY-MM-DD date")


def validate_batch(frame: pd.DataFrame) -> ValidationReport:
    problems = _schema_problems(frame)
    broken = {p.column for p in problems}  # value rules would only repeat a schema problem
    nulls = frame.isna()
    stats: dict[str, object] = {
        "rows": len(frame),
        "null_rates": {str(c): float(nulls[c].mean()) if len(frame) else 0.0 for c in frame.columns},
        "duplicates": int(frame.duplicated().sum()),
    }
    if len(frame) == 0:
        problems.append(Problem("*", "empty", "batch has no rows", [], 0))
        return ValidationReport(False, problems, stats)
    checks = [_null_problem(c, nulls[c]) for c in COLUMNS if c not in broken]
    checks += [_range_problem(c, frame[c]) for c in RANGES if c not in broken]
    if "status" not in broken:
        checks.append(_status_problem(frame["status"]))
    if "prev_sold_date" not in broken:
        checks.append(_date_problem(frame["prev_sold_date"]))
    checks.append(_rows_problem("*", "duplicates", frame.duplicated(keep="first"), "duplicating an earlier row"))
    problems += [p for p in checks if p is not None]
    return ValidationReport(not problems, problems, stats)

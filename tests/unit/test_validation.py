"""validate_batch on the real Ames listings (which must pass) and on batches broken one rule at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.data.dataset import ames_listings
from ml_assets.data.validation import Problem, ValidationReport, validate_batch
from ml_assets.schema import COLUMNS


@pytest.fixture
def batch() -> pd.DataFrame:
    """60 real rows, a fresh copy each test may break."""
    return ames_listings().iloc[100:160].reset_index(drop=True).copy()


def only_problem(report: ValidationReport) -> Problem:
    assert not report.passed
    assert len(report.problems) == 1, report.summary()
    return report.problems[0]


@pytest.mark.parametrize("day", range(0, 10))
def test_real_batches_pass(day: int) -> None:
    order = np.random.default_rng(1).permutation(2930)
    frame = ames_listings().iloc[order[day * 293 : (day + 1) * 293]].reset_index(drop=True)
    report = validate_batch(frame)
    assert report.passed, report.summary()
    assert report.problems == [] and report.stats["rows"] == 293 and report.stats["duplicates"] == 0
    assert report.summary() == "passed: 293 rows, no problems"


def test_whole_dataset_passes() -> None:
    report = validate_batch(ames_listings())
    assert report.passed and set(report.stats["null_rates"]) == set(COLUMNS)


def test_range(batch: pd.DataFrame) -> None:
    batch.loc[[4, 17, 52], "price"] = [5.0, 2e8, np.inf]
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows, problem.count) == ("price", "range", [4, 17, 52], 3)
    assert problem.message == "price: 3 rows outside 1000..100000000 (rows 4, 17, 52)"


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("bed", 51.0, "outside 0..50"),
        ("bath", -1.0, "outside 0..50"),
        ("acre_lot", 100_001.0, "outside 0..100000"),
        ("house_size", 49.0, "outside 50..100000"),
        ("zip_code", 123456.0, "outside 0..99999"),
        ("brokered_by", -5.0, "below 0"),
    ],
)
def test_each_range(batch: pd.DataFrame, column: str, value: float, words: str) -> None:
    batch.loc[7, column] = value
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows) == (column, "range", [7])
    assert problem.message == f"{column}: 1 row {words} (rows 7)"


def test_nulls_over_the_column_limit(batch: pd.DataFrame) -> None:
    batch.loc[0:6, "house_size"] = np.nan  # 7 of 60 = 11.7% > 10%
    batch.loc[0:11, "bed"] = np.nan  # 12 of 60 = 20%: at the limit, allowed
    batch.loc[0:29, "street"] = pd.NA  # 50%: allowed
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows, problem.count) == ("house_size", "nulls", list(range(7)), 7)
    assert problem.message.startswith("house_size: 7 rows null (11.7%, limit 10%) (rows 0, 1, 2")


def test_a_single_missing_price_fails(batch: pd.DataFrame) -> None:
    batch.loc[33, "price"] = np.nan
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows) == ("price", "nulls", [33])


def test_many_offenders_list_the_first_ten(batch: pd.DataFrame) -> None:
    batch.loc[:, "bath"] = 99.0
    problem = only_problem(validate_batch(batch))
    assert problem.rows == list(range(10)) and problem.count == 60
    assert problem.message == "bath: 60 rows outside 0..50 (rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...)"


def test_unknown_status(batch: pd.DataFrame) -> None:
    batch.loc[[2, 9], "status"] = ["foreclosure", "auction"]
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows, problem.count) == ("status", "category", [2, 9], 2)
    assert "'foreclosure', 'auction'" in problem.message and problem.message.endswith("(rows 2, 9)")


def test_prev_sold_date_format(batch: pd.DataFrame) -> None:
    batch.loc[[1, 5, 8], "prev_sold_date"] = ["2010-13-45", "2010-5-1", "yesterday"]
    batch.loc[3, "prev_sold_date"] = pd.NA  # absent is fine
    problem = only_problem(validate_batch(batch))
    assert (problem.column, problem.rule, problem.rows) == ("prev_sold_date", "format", [1, 5, 8])
    assert problem.message == "prev_sold_date: 3 rows not a YYYY-MM-DD date (rows 1, 5, 8)"


def test_duplicates(batch: pd.DataFrame) -> None:
    frame = pd.concat([batch, batch.iloc[[3, 10]]], ignore_index=True)
    problem = only_problem(validate_batch(frame))
    assert (problem.column, problem.rule, problem.rows, problem.count) == ("*", "duplicates", [60, 61], 2)
    assert validate_batch(frame).stats["duplicates"] == 2


def test_schema(batch: pd.DataFrame) -> None:
    frame = batch.drop(columns=["bed"]).assign(garage=1.0, bath=batch["bath"].astype(object))
    report = validate_batch(frame)
    found = {(p.column, p.rule, p.message) for p in report.problems}
    assert found == {
        ("bed", "schema", "bed: missing column"),
        ("bath", "schema", "bath: dtype object, expected float64"),
        ("garage", "schema", "garage: unexpected column"),
    }


def test_empty_batch() -> None:
    report = validate_batch(ames_listings().head(0))
    assert not report.passed
    assert [(p.column, p.rule, p.message) for p in report.problems] == [("*", "empty", "batch has no rows")]
    assert report.stats["rows"] == 0


def test_summary_lists_every_problem_on_one_line(batch: pd.DataFrame) -> None:
    batch.loc[4, "price"] = 10.0
    batch.loc[5, "status"] = "foreclosure"
    batch.loc[0:9, "bath"] = np.nan  # 10 of 60 is within bath's 20%
    summary = validate_batch(batch).summary()
    assert "\n" not in summary and summary.startswith("failed: 2 problems in 60 rows: ")
    assert "price: 1 row outside 1000..100000000 (rows 4)" in summary and "status: 1 row with unknown" in summary


def test_one_problem_per_column_and_rule(batch: pd.DataFrame) -> None:
    batch.loc[0:20, "house_size"] = np.nan
    batch.loc[30:40, "house_size"] = 10.0
    report = validate_batch(batch)
    assert sorted((p.column, p.rule) for p in report.problems) == [("house_size", "nulls"), ("house_size", "range")]
    assert report.stats["null_rates"]["house_size"] == pytest.approx(21 / 60)

"""Parity of ReferenceProfile/detect_drift with Evidently 0.7.23's DataDriftPreset (skipped without evidently).

How Evidently's results are read: tests/evidently_compat.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("evidently")

from evidently import Report
from evidently.presets import DataDriftPreset

from ml_assets.data_drift.engine import ReferenceProfile, detect_drift
from tests.evidently_compat import EVIDENTLY_METHOD, read_drift_snapshot

_P_VALUE = {"ks", "chisquare", "z"}
_CATS = ["a", "b", "c", "d"]
_BASE_P = [0.4, 0.3, 0.2, 0.1]
_MOVED_P = [0.1, 0.2, 0.3, 0.4]


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, **preset_kw) -> tuple[dict, dict]:
    """Run Evidently and return ({column: {method, threshold, value, drifted}}, dataset summary)."""
    snapshot = Report([DataDriftPreset(**preset_kw)], include_tests=True).run(cur, ref)
    columns, dataset = read_drift_snapshot(snapshot.dict())
    assert set(columns) == set(ref.columns) and all("drifted" in c for c in columns.values())
    assert "drifted" in dataset
    return columns, dataset


def _assert_parity(ref: pd.DataFrame, cur: pd.DataFrame, *, thresholds: dict | None = None) -> tuple:
    ev_cols, ev_ds = _evidently(ref, cur, per_column_threshold=thresholds)
    rep = detect_drift(ReferenceProfile.from_frame(ref), cur, thresholds=thresholds)
    for col in rep.columns:
        ev = ev_cols[col.column]
        assert EVIDENTLY_METHOD[col.test] == ev["method"], col.column
        assert col.threshold == pytest.approx(ev["threshold"]), col.column
        ours = col.p_value if col.test in _P_VALUE else col.statistic
        assert ours == pytest.approx(ev["value"], abs=1e-6), (col.column, col.test, ours, ev["value"])
        assert col.drifted is ev["drifted"], (col.column, col.test, ours, ev["value"])
    assert rep.n_drifted == ev_ds["count"]
    assert rep.share_drifted == pytest.approx(ev_ds["share"])
    assert rep.drift_share == ev_ds["drift_share"]
    assert rep.drifted is ev_ds["drifted"]
    return rep, ev_cols


def _frame(rng: np.random.Generator, n: int, *, drift: bool) -> pd.DataFrame:
    """Six columns; with drift=True exactly the *_shift columns move, *_same keep their distribution."""
    return pd.DataFrame(
        {
            "num_shift": rng.normal(10.0 + (1.0 if drift else 0.0), 2.0, n),
            "num_same": rng.gamma(2.0, 3.0, n),
            "cat_shift": rng.choice(_CATS, n, p=_MOVED_P if drift else _BASE_P),
            "cat_same": rng.choice(_CATS, n, p=_BASE_P),
            "bin_shift": (rng.random(n) < (0.5 if drift else 0.2)).astype(np.int64),
            "bin_same": (rng.random(n) < 0.2).astype(np.int64),
        }
    )


_SHIFTED = {"num_shift", "cat_shift", "bin_shift"}
# Seeds are fixed so the *known* verdicts hold, not only parity: Evidently's chi-square is a goodness-of-fit
# against the reference *sample* (reference counts taken as exact expectations), so with equal window sizes
# its statistic is ~2x chi2(dof) under no drift and unchanged categoricals are flagged ~25% of the time.
SEED = 4
NO_DRIFT_SEED = 9


@pytest.mark.parametrize(
    ("n", "tests"),
    [
        (800, {"num": "ks", "cat": "chisquare", "bin": "z"}),  # (a) reference <= 1000: p-value tests
        (5000, {"num": "wasserstein", "cat": "jensenshannon", "bin": "jensenshannon"}),  # (b) distances
    ],
)
def test_column_designs_match_evidently(n: int, tests: dict) -> None:
    rng = np.random.default_rng(SEED)
    ref, cur = _frame(rng, n, drift=False), _frame(rng, n, drift=True)
    rep, _ = _assert_parity(ref, cur)
    assert {c.column: c.test for c in rep.columns} == {c: tests[c.split("_")[0]] for c in ref.columns}
    assert {c.column for c in rep.columns if c.drifted} == _SHIFTED  # the known drift, nothing else
    assert rep.share_drifted == 0.5 and rep.drifted  # 3/6 drifted: share >= drift_share counts as drift


@pytest.mark.parametrize("n", [800, 5000])
@pytest.mark.parametrize(("n_shifted", "expected"), [(2, False), (3, True)])  # (c) out of 5 columns
def test_dataset_verdict_matches_evidently(n: int, n_shifted: int, expected: bool) -> None:
    rng = np.random.default_rng(SEED)
    ref, cur = _frame(rng, n, drift=False), _frame(rng, n, drift=True)
    shifted = ["num_shift", "cat_shift", "bin_shift"][:n_shifted]
    keep = [*shifted, "num_same", "cat_same", "bin_same"][:5]
    rep, _ = _assert_parity(ref[keep], cur[keep])
    assert rep.n_drifted == n_shifted and rep.drifted is expected
    assert rep.verdict == ("drift" if expected else "no drift")


@pytest.mark.parametrize("n", [800, 5000])
def test_no_drift_at_all_matches_evidently(n: int) -> None:
    rng = np.random.default_rng(NO_DRIFT_SEED)
    rep, _ = _assert_parity(_frame(rng, n, drift=False), _frame(rng, n, drift=False))
    assert rep.n_drifted == 0 and not rep.drifted and rep.verdict == "no drift"


def test_js_quirk_binary_rate_020_to_030_kept() -> None:
    """Evidently's known quirk: above 1000 reference rows a 0/1 column gets JS (threshold 0.1), and a
    0.20 -> 0.30 rate move has JS distance ~0.08, so it is *not* flagged; the Z-test at <= 1000 rows is."""
    rng = np.random.default_rng(31)
    for n, test, drifted in ((5000, "jensenshannon", False), (800, "z", True)):
        ref = pd.DataFrame({"b": (rng.random(n) < 0.2).astype(np.int64)})
        cur = pd.DataFrame({"b": (rng.random(n) < 0.3).astype(np.int64)})
        rep, _ = _assert_parity(ref, cur)
        col = rep.column("b")
        assert col.test == test and col.drifted is drifted


@pytest.mark.parametrize("n", [800, 5000])
def test_the_shapes_users_have_match_evidently(n: int) -> None:
    """Integers with up to 10 values (categories to Evidently, whatever their count), heavy tails, a category
    never seen in the reference, nulls."""
    rng = np.random.default_rng(12)

    def frame(drift: bool) -> pd.DataFrame:
        dice = rng.choice(np.arange(1, 7), n, p=np.arange(1, 7) / 21 if drift else None)
        labels = np.array([f"v{j}" for j in range(10)], dtype=object)[rng.integers(0, 10, n)]
        num = rng.normal(0.0, 1.0, n)
        num[rng.random(n) < 0.2] = np.nan
        return pd.DataFrame(
            {
                "dice": dice.astype(np.int64),
                "wide_int": rng.integers(0, 40, n),  # > 10 values: numeric to Evidently
                "pareto": rng.pareto(1.1, n),
                "new_value": np.where(rng.random(n) < (0.1 if drift else 0.0), "never_seen", labels).astype(object),
                "with_nulls": num,
            }
        )

    rep, _ = _assert_parity(frame(False), frame(True))
    tests = {c.column: c.test for c in rep.columns}
    assert tests["dice"] == ("chisquare" if n <= 1000 else "jensenshannon")
    assert tests["wide_int"] == ("ks" if n <= 1000 else "wasserstein")
    assert rep.column("new_value").drifted and rep.column("new_value").new_categories == ["never_seen"]


def test_ks_threshold_boundary_matches_evidently() -> None:
    """Evidently's KS flags drift at p <= threshold (chi-square and Z use p < threshold)."""
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(0.0, 1.0, 600), "c": rng.choice(_CATS, 600)})
    cur = pd.DataFrame({"x": rng.normal(0.1, 1.0, 600), "c": rng.choice(_CATS, 600)})
    probe = detect_drift(ReferenceProfile.from_frame(ref), cur)
    at_p = {"x": probe.column("x").p_value, "c": probe.column("c").p_value}  # threshold == own p-value
    rep, _ = _assert_parity(ref, cur, thresholds=at_p)
    assert rep.column("x").drifted and not rep.column("c").drifted

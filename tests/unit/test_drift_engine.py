"""Drift engine: known-drift detection, scipy parity, explicit edge-case verdicts."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from ml_assets.data_drift.engine import ReferenceProfile, detect_drift
from ml_assets.data_drift.stattests import wasserstein


def _rng(seed: int = 8) -> np.random.Generator:
    return np.random.default_rng(seed)


def _frame(n: int, rng: np.random.Generator, *, shift: float = 0.0, cat_p=None, rate: float = 0.2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "num": rng.normal(10.0 + shift, 2.0, n),
            "cat": rng.choice(["a", "b", "c", "d"], n, p=cat_p or [0.4, 0.3, 0.2, 0.1]),
            "flag": (rng.random(n) < rate).astype(np.int64),
        }
    )


def _run(ref: pd.DataFrame, cur: pd.DataFrame, **kw):
    return detect_drift(ReferenceProfile.from_frame(ref), cur, **kw)


# --- known drift / no drift per test family -------------------------------------------------


def test_no_drift_small_reference_uses_p_value_tests() -> None:
    rng = _rng()
    rep = _run(_frame(800, rng), _frame(900, rng))
    tests = {c.column: c.test for c in rep.columns}
    assert tests == {"num": "ks", "cat": "chisquare", "flag": "z"}
    assert [c.kind for c in rep.columns] == ["numeric", "categorical", "binary"]
    assert not any(c.drifted for c in rep.columns)
    assert rep.verdict == "no drift" and not rep.drifted


def test_no_drift_large_reference_uses_distances() -> None:
    rng = _rng()
    rep = _run(_frame(5000, rng), _frame(4000, rng))
    assert {c.column: c.test for c in rep.columns} == {
        "num": "wasserstein",
        "cat": "jensenshannon",
        "flag": "jensenshannon",
    }
    assert all(c.p_value is None and c.threshold == 0.1 for c in rep.columns)
    assert not any(c.drifted for c in rep.columns)


def test_reference_size_switch_counts_non_null_rows() -> None:
    rng = _rng()
    ref = pd.DataFrame({"num": np.r_[rng.normal(size=1000), np.full(500, np.nan)]})
    assert _run(ref, pd.DataFrame({"num": rng.normal(size=300)})).column("num").test == "ks"
    ref = pd.DataFrame({"num": rng.normal(size=1001)})
    assert _run(ref, pd.DataFrame({"num": rng.normal(size=300)})).column("num").test == "wasserstein"


def test_numeric_shift_detected_by_ks_and_wasserstein() -> None:
    rng = _rng()
    small = _run(_frame(500, rng), _frame(500, rng, shift=1.0)).column("num")
    assert small.test == "ks" and small.drifted and small.p_value < 0.05 and small.verdict == "drift"
    large = _run(_frame(5000, rng), _frame(5000, rng, shift=1.0)).column("num")
    assert large.test == "wasserstein" and large.drifted and large.statistic == pytest.approx(0.5, abs=0.05)


def test_categorical_change_detected_by_chi2_and_js() -> None:
    rng = _rng()
    moved = [0.1, 0.2, 0.3, 0.4]
    small = _run(_frame(600, rng), _frame(600, rng, cat_p=moved)).column("cat")
    assert small.test == "chisquare" and small.drifted
    large = _run(_frame(5000, rng), _frame(5000, rng, cat_p=moved)).column("cat")
    assert large.test == "jensenshannon" and large.drifted and large.statistic >= 0.1


def test_binary_rate_change_detected_by_z_test() -> None:
    rng = _rng()
    col = _run(_frame(800, rng, rate=0.2), _frame(800, rng, rate=0.5)).column("flag")
    assert col.test == "z" and col.kind == "binary" and col.drifted and col.p_value < 1e-6


def test_strict_mode_catches_the_binary_shift_evidently_misses_on_large_windows() -> None:
    """0.20 -> 0.30 on 5000 rows: Jensen-Shannon (Evidently's choice above 1000 rows) stays under 0.1."""
    rng = _rng(3)
    ref, cur = _frame(5000, rng, rate=0.2), _frame(5000, rng, rate=0.3)
    compatible = _run(ref, cur).column("flag")
    strict = _run(ref, cur, mode="strict").column("flag")
    assert (compatible.test, compatible.drifted) == ("jensenshannon", False)
    assert (strict.test, strict.drifted) == ("z", True) and strict.p_value < 1e-6
    assert _run(ref, cur, mode="strict").column("num").test == "wasserstein"  # numerics keep their test
    with pytest.raises(ValueError, match="unknown drift mode"):
        _run(ref, cur, mode="lenient")


# --- parity with scipy / Evidently formulas -------------------------------------------------


@pytest.mark.parametrize("n_cur", [700, 25_000])  # exact and asymptotic scipy branches
def test_ks_matches_scipy(n_cur: int) -> None:
    rng = _rng(3)
    ref, cur = rng.normal(size=900), rng.normal(0.05, 1.1, n_cur)
    col = _run(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).column("x")
    expected = stats.ks_2samp(ref, cur)
    assert col.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert col.p_value == pytest.approx(expected.pvalue, abs=1e-6)


def test_wasserstein_matches_scipy_normed_by_population_std() -> None:
    rng = _rng(4)
    ref, cur = rng.gamma(2.0, 3.0, 3000), rng.gamma(2.2, 3.0, 7000)
    col = _run(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).column("x")
    assert col.statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), abs=1e-9)
    # also the un-normed distance on an explicit request-free constant-std edge: std floor 0.001
    ref_c = np.r_[np.zeros(2000), 1e-6 * np.arange(10)]
    col = _run(pd.DataFrame({"x": ref_c}), pd.DataFrame({"x": ref_c + 0.01})).column("x")
    assert col.statistic == pytest.approx(stats.wasserstein_distance(ref_c, ref_c + 0.01) / 0.001, abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_wasserstein_from_quantile_grids_equals_scipy_on_ties_and_any_sizes(seed: int) -> None:
    rng = _rng(seed)
    n, m = rng.integers(1, 300, 2) if seed % 4 else (rng.integers(1, 300),) * 2  # equal sizes too
    few = seed % 3 == 0  # many ties, in and across the samples
    ref = np.sort(rng.integers(0, 4, n).astype(float) if few else rng.normal(size=n))
    cur = np.sort(rng.integers(1, 5, m).astype(float) if few else rng.lognormal(size=m))
    assert wasserstein(ref, cur) == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-12, abs=1e-15)


def _evidently_counts(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    keys = list(set(ref.dropna().unique()) | set(cur.dropna().unique()))
    rc, cc = ref.value_counts(), cur.value_counts()
    return np.array([rc.get(k, 0) for k in keys], float), np.array([cc.get(k, 0) for k in keys], float)


def test_js_and_chi2_match_evidently_construction() -> None:
    rng = _rng(5)
    ref = pd.Series(rng.choice(list("abcde"), 3000, p=[0.3, 0.3, 0.2, 0.1, 0.1]))
    cur = pd.Series(rng.choice(list("abcde"), 2000, p=[0.2, 0.3, 0.2, 0.2, 0.1]))
    r, c = _evidently_counts(ref, cur)
    js = _run(ref.to_frame("c"), cur.to_frame("c")).column("c")
    assert js.statistic == pytest.approx(distance.jensenshannon(r / r.sum(), c / c.sum()), abs=1e-9)
    chi = _run(ref.to_frame("c"), cur.to_frame("c"), methods={"c": "chisquare"}).column("c")
    expected = stats.chisquare(c, r * (c.sum() / r.sum()))
    assert chi.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert chi.p_value == pytest.approx(expected.pvalue, abs=1e-6)


def test_z_test_matches_pooled_two_proportion_formula() -> None:
    rng = _rng(6)
    ref, cur = (rng.random(700) < 0.3).astype(int), (rng.random(400) < 0.36).astype(int)
    col = _run(pd.DataFrame({"b": ref}), pd.DataFrame({"b": cur})).column("b")
    p1, p2 = ref.mean(), cur.mean()
    pooled = (ref.sum() + cur.sum()) / (ref.size + cur.size)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / ref.size + 1 / cur.size))
    assert abs(col.statistic) == pytest.approx(abs(z), abs=1e-9)
    assert col.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-6)


def _evidently_shares(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r, c = np.histogram(ref, edges)[0] / ref.size, np.histogram(cur, edges)[0] / cur.size
    for x in (r, c):
        low = x[x != 0].min()
        x[x == 0] = low / 1e6 if low <= 1e-4 else 1e-4
    return r, c


def test_psi_and_kl_on_request() -> None:
    rng = _rng(8)
    ref, same, moved = rng.normal(size=4000), rng.normal(size=4000), rng.normal(0.8, 1.0, 4000)
    prof = ReferenceProfile.from_frame(pd.DataFrame({"x": ref}))
    for cur, drifted in ((same, False), (moved, True)):
        rep = detect_drift(prof, pd.DataFrame({"x": cur}), methods={"x": "psi"})
        r, c = _evidently_shares(ref, cur)
        assert rep.column("x").test == "psi" and rep.column("x").drifted is drifted
        assert rep.column("x").statistic == pytest.approx(np.sum((r - c) * np.log(r / c)), abs=1e-9)
        kl = detect_drift(prof, pd.DataFrame({"x": cur}), methods={"x": "kl"}).column("x")
        assert kl.test == "kl_div" and kl.drifted is drifted
        assert kl.statistic == pytest.approx(stats.entropy(r, c), abs=1e-9)
    cat = detect_drift(
        ReferenceProfile.from_frame(pd.DataFrame({"c": list("aab") * 500})),
        pd.DataFrame({"c": list("abb") * 500}),
        methods={"c": "psi"},
    ).column("c")
    assert cat.drifted and cat.threshold == 0.1


def test_unknown_or_misapplied_method_raises() -> None:
    prof = ReferenceProfile.from_frame(pd.DataFrame({"c": list("ab") * 10}))
    with pytest.raises(ValueError):
        detect_drift(prof, pd.DataFrame({"c": ["a"]}), methods={"c": "bogus"})
    with pytest.raises(ValueError):
        detect_drift(prof, pd.DataFrame({"c": ["a"]}), methods={"c": "ks"})


# --- explicit verdicts ---------------------------------------------------------------------


def test_empty_window_is_no_data() -> None:
    rng = _rng()
    ref = _frame(500, rng)
    rep = _run(ref, ref.iloc[:0])
    assert rep.verdict == "no data" and not rep.drifted
    assert all(c.verdict == "no data" and not c.drifted for c in rep.columns)


def test_all_null_column() -> None:
    rng = _rng()
    ref = _frame(500, rng)
    cur = _frame(300, rng).assign(num=np.nan, cat=None)
    rep = _run(ref, cur)
    for name in ("num", "cat"):
        col = rep.column(name)
        assert col.verdict == "all null" and col.drifted and col.null_share_cur == 1.0
    both_null = _run(pd.DataFrame({"x": [np.nan] * 5}), pd.DataFrame({"x": [np.nan] * 3})).column("x")
    assert both_null.verdict == "all null" and not both_null.drifted


def test_constant_and_changed_constant() -> None:
    ref = pd.DataFrame({"k": [3.0] * 50, "s": ["x"] * 50})
    same = _run(ref, pd.DataFrame({"k": [3.0] * 20, "s": ["x"] * 20}))
    assert all(c.verdict == "constant" and not c.drifted and c.statistic == 0.0 for c in same.columns)
    changed = _run(ref, pd.DataFrame({"k": [4.0] * 20, "s": ["y"] * 20}))
    assert all(c.verdict == "constant changed" and c.drifted for c in changed.columns)
    assert changed.column("s").new_categories == ["y"]


def test_new_category_reported_and_counted() -> None:
    rng = _rng()
    ref = pd.DataFrame({"c": rng.choice(list("abc"), 600)})
    cur = pd.DataFrame({"c": np.r_[rng.choice(list("abc"), 580), ["zz"] * 20]})
    col = _run(ref, cur).column("c")
    assert col.new_categories == ["zz"] and col.test == "chisquare" and col.drifted  # f_exp = 0 -> p = 0
    big = _run(pd.concat([ref] * 4), cur).column("c")
    assert big.test == "jensenshannon" and big.new_categories == ["zz"] and big.statistic > 0


def test_nulls_excluded_but_reported() -> None:
    rng = _rng()
    ref = pd.DataFrame({"x": rng.normal(size=600)})
    cur_vals = rng.normal(size=600)
    cur = pd.DataFrame({"x": np.r_[cur_vals, [np.nan] * 200, [np.inf] * 10]})
    col = _run(ref, cur).column("x")
    assert col.statistic == pytest.approx(stats.ks_2samp(ref["x"], cur_vals).statistic, abs=1e-12)
    assert col.null_share_cur == pytest.approx(210 / 810) and col.null_share_ref == 0.0


def test_dataset_verdict_by_share() -> None:
    rng = _rng()
    ref = _frame(800, rng)
    one = _frame(800, rng, shift=2.0)  # 1/3 columns drift
    assert not _run(ref, one).drifted
    assert _run(ref, one, drift_share=0.3).drifted
    two = _frame(800, rng, shift=2.0, rate=0.6)
    rep = _run(ref, two)
    assert rep.n_drifted == 2 and rep.drifted and rep.verdict == "drift"


def test_report_serialises() -> None:
    rng = _rng()
    rep = _run(_frame(300, rng), _frame(300, rng, shift=1.0))
    md = rep.to_markdown()
    assert "| num | numeric | ks |" in md and "verdict" in md
    payload = json.loads(json.dumps(rep.to_dict()))
    assert payload["columns"][0]["column"] == "num" and "new_categories" in payload["columns"][0]


def test_200k_rows_10_columns_runs() -> None:
    rng = _rng(11)
    n = 200_000

    def frame(shift: float) -> pd.DataFrame:
        cols = {f"n{i}": rng.normal(shift * i, 1.0, n) for i in range(6)}
        cols |= {f"c{i}": rng.choice(list("abcdefgh"), n) for i in range(3)}
        cols["b"] = rng.random(n) < 0.3
        return pd.DataFrame(cols)

    ref, cur = frame(0.0), frame(0.05)
    t0 = time.perf_counter()
    prof = ReferenceProfile.from_frame(ref)
    t1 = time.perf_counter()
    rep = detect_drift(prof, cur)
    t2 = time.perf_counter()
    print(f"\n200k x 10: profile {t1 - t0:.3f}s, detect {t2 - t1:.3f}s")
    assert len(rep.columns) == 10 and rep.verdict in {"drift", "no drift"}

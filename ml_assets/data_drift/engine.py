"""Columnar data-drift engine with Evidently DataDriftPreset defaults (pure numpy/scipy).

Evidently-compat assumptions, checked against evidently's legacy stattests source
(`registry._get_default_stattest`, `chisquare_stattest`, `z_stattest`, `utils.get_binned_data`):
- Nulls and +/-inf are dropped before any test (Evidently's `get_one_column_drift` does the same),
  so "reference > 1000" counts the reference's *non-null* rows.
- An int column (dtype name "int...") with <= 10 distinct values in the current window is categorical, as
  Evidently 0.7's `infer_column_type` types it (INTEGER_CARDINALITY_LIMIT), whatever n_values says.
- The test is chosen from n_values = distinct non-null values of reference UNION current:
  ref <= 1000: numeric dtype with n_values > 5 -> KS; otherwise chi-square, or Z-test if n_values <= 2.
  ref  > 1000: numeric dtype with n_values > 5 -> normed Wasserstein; otherwise Jensen-Shannon.
  Hence a 0/1 int column gets the Z-test / JS exactly as Evidently's registry does.
- Chi-square is Evidently's goodness-of-fit, not chi2_contingency: chisquare(f_obs=current counts,
  f_exp=reference counts * n_cur/n_ref) over the union of categories. A category unseen in the
  reference has f_exp = 0, so the statistic is inf and p = 0 (scipy's result) -> drift.
- Z-test: two-proportion pooled z on "value == smallest category of the union",
  p = 2 * (1 - Phi(|z|)); both windows constant at the same value -> p = 1.
- JS: scipy.spatial.distance.jensenshannon (natural log) of category shares, no smoothing.
- PSI / KL (on request only): Evidently's `get_binned_data`, i.e. numeric columns with > 20 reference
  values use np.histogram_bin_edges(ref ++ cur, bins="sturges") -- equal-width bins over both windows,
  NOT 10 reference quantiles (older Evidently used bins=n_bins); others use categories. Zero shares are
  replaced by 1e-4 (or min/1e6 if min <= 1e-4). KL = scipy.stats.entropy(ref, cur).
- Wasserstein is normed by max(np.std(ref), 0.001) (population std), as Evidently.
- Verdicts: KS drifts at p <= threshold, chi-square / Z at p < threshold, distances at stat >= threshold
  (Evidently's per-test comparisons, kept as-is).
Evidently raises on empty/all-null columns; here those get explicit verdicts instead. A chi-square
statistic can be +inf (unseen category); to_dict() keeps it as float("inf").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.data_drift.stattests import ks_test, wasserstein

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

P_VALUE_TESTS = ("ks", "chisquare", "z")  # drift when p < threshold (KS: p <= threshold)
DISTANCE_TESTS = ("wasserstein", "jensenshannon", "psi", "kl_div")  # drift when statistic >= threshold
DEFAULT_THRESHOLDS = {**dict.fromkeys(P_VALUE_TESTS, 0.05), **dict.fromkeys(DISTANCE_TESTS, 0.1)}
_ALIASES = {"chi2": "chisquare", "js": "jensenshannon", "kl": "kl_div", "z_test": "z"}
_NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
SMALL_REFERENCE_ROWS = 1000  # Evidently: reference.shape[0] <= 1000 -> p-value tests
LOW_CARDINALITY = 5  # numeric with <= 5 distinct values is tested as categorical
HISTOGRAM_MIN_UNIQUE = 20  # get_binned_data bins numerics only above 20 reference values
INTEGER_CATEGORIES = 10  # Evidently: an int column with at most this many distinct values is categorical
MAX_NEW_CATEGORIES = 50
DRIFT_MODES = ("compatible", "strict")  # keep reports bounded when an id-like column explodes


_NO_VALUES = np.empty(0)


@dataclass
class ColumnProfile:
    name: str
    kind: str  # "numeric" | "categorical" | "binary" (from the reference alone)
    numeric: bool  # numeric dtype (bool counts as categorical)
    rows: int
    nulls: int
    n_unique: int
    sorted_values: np.ndarray | None = None  # numeric: finite values, ascending
    std: float = 0.0
    counts: pd.Series | None = None  # categorical: value -> count, nulls excluded

    @property
    def valid(self) -> int:
        return self.rows - self.nulls

    @property
    def values(self) -> np.ndarray:
        """Numeric: the finite values, ascending (a categorical column has none)."""
        return self.sorted_values if self.sorted_values is not None else _NO_VALUES

    def value_counts(self) -> pd.Series:
        if self.counts is not None:
            return self.counts
        return _sorted_counts(self.values)


@dataclass
class ReferenceProfile:
    columns: dict[str, ColumnProfile]
    rows: int

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, columns: list[str] | None = None) -> ReferenceProfile:
        names = list(frame.columns) if columns is None else list(columns)
        return cls({str(c): _profile_column(str(c), frame[c]) for c in names}, len(frame))


@dataclass
class ColumnDrift:
    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    verdict: str
    ref_rows: int
    cur_rows: int
    null_share_ref: float
    null_share_cur: float
    new_categories: list


@dataclass
class DriftReport:
    columns: list[ColumnDrift]
    drift_share: float
    ref_rows: int
    cur_rows: int
    n_drifted: int
    share_drifted: float
    drifted: bool
    verdict: str  # "drift" | "no drift" | "no data"

    def column(self, name: str) -> ColumnDrift:
        return next(c for c in self.columns if c.column == name)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"Dataset: **{self.verdict}** ({self.n_drifted}/{len(self.columns)} columns drifted, "
            f"share {self.share_drifted:.2f}, threshold {self.drift_share:g})",
            "",
            "| column | kind | test | statistic | p-value / threshold | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.columns:
            stat = "-" if c.statistic is None else f"{c.statistic:.4g}"
            pv = "-" if c.p_value is None else f"{c.p_value:.4g}"
            lines.append(f"| {c.column} | {c.kind} | {c.test} | {stat} | {pv} / {c.threshold:g} | {c.verdict} |")
        return "\n".join(lines)


def _is_numeric(s: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _finite(s: pd.Series) -> np.ndarray:
    import pandas as pd

    arr = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return arr[np.isfinite(arr)]


def _sorted_counts(values: np.ndarray) -> pd.Series:
    # Run-length encode an ascending array: O(n), no re-sort.
    import pandas as pd

    if values.size == 0:
        return pd.Series(np.zeros(0, dtype=np.int64), index=pd.Index([], dtype=np.float64))
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return pd.Series(np.diff(np.r_[starts, values.size]), index=values[starts])


def _category_counts(s: pd.Series) -> pd.Series:
    vc = s.value_counts(dropna=True)
    vc = vc[vc > 0]  # categorical dtype lists unused categories with 0
    vc.index = vc.index.astype(object)
    return vc.astype(np.int64)


def _n_unique_sorted(values: np.ndarray) -> int:
    return 0 if values.size == 0 else 1 + int(np.count_nonzero(values[1:] != values[:-1]))


def _kind(numeric: bool, n_values: int) -> str:
    if numeric and n_values > LOW_CARDINALITY:
        return "numeric"
    return "binary" if n_values == 2 else "categorical"


def _profile_column(name: str, s: pd.Series) -> ColumnProfile:
    if _is_numeric(s):
        vals = np.sort(_finite(s))
        n_unique = _n_unique_sorted(vals)
        std = float(np.std(vals)) if vals.size else 0.0
        return ColumnProfile(name, _kind(True, n_unique), True, len(s), len(s) - vals.size, n_unique, vals, std)
    counts = _category_counts(s)
    valid = int(counts.sum())
    return ColumnProfile(name, _kind(False, len(counts)), False, len(s), len(s) - valid, len(counts), counts=counts)


def _align(ref: pd.Series, cur: pd.Series) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    keys = ref.index.union(cur.index, sort=False)
    r = ref.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    c = cur.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    return keys, r, c


def _fill_zeros(x: np.ndarray) -> np.ndarray:
    low = x[x != 0].min()
    return np.where(x == 0, low / 10**6 if low <= 0.0001 else 0.0001, x)


class _Window:
    """Current-window data for one column plus lazily aligned category counts."""

    def __init__(self, p: ColumnProfile, s: pd.Series) -> None:
        import pandas as pd

        self.p = p
        # a numeric column has values and no counts, a categorical one the other way round
        self.values = np.sort(_finite(s)) if p.numeric else _NO_VALUES
        self.counts = pd.Series(dtype="int64") if p.numeric else _category_counts(s)
        self.valid = self.values.size if p.numeric else int(self.counts.sum())
        self.n_cur = _n_unique_sorted(self.values) if p.numeric else len(self.counts)
        # tested as numbers, or as categories: as Evidently types the current window's column
        self.numeric = p.numeric and not (s.dtype.name.startswith("int") and self.n_cur <= INTEGER_CATEGORIES)
        self._aligned: tuple[pd.Index, np.ndarray, np.ndarray] | None = None

    def aligned(self) -> tuple[pd.Index, np.ndarray, np.ndarray]:
        if self._aligned is None:
            cur = _sorted_counts(self.values) if self.p.numeric else self.counts
            self._aligned = _align(self.p.value_counts(), cur)
        return self._aligned

    def n_values(self) -> tuple[int, int]:
        """(distinct values in ref UNION cur, distinct values in cur); cheap path for wide numerics."""
        if self.numeric and (self.p.n_unique > LOW_CARDINALITY or self.n_cur > LOW_CARDINALITY):
            return LOW_CARDINALITY + 1, self.n_cur  # only "> 5" matters for the choice
        return len(self.aligned()[0]), self.n_cur

    def shares(self, smooth: bool) -> tuple[np.ndarray, np.ndarray]:
        p = self.p
        if self.numeric and p.n_unique > HISTOGRAM_MIN_UNIQUE:
            edges = np.histogram_bin_edges(np.concatenate([p.values, self.values]), bins="sturges")
            r = np.histogram(p.values, edges)[0] / p.valid
            c = np.histogram(self.values, edges)[0] / self.valid
        else:
            _, rc, cc = self.aligned()
            r, c = rc / p.valid, cc / self.valid
        return (_fill_zeros(r), _fill_zeros(c)) if smooth else (r, c)


def _run_test(test: str, w: _Window) -> tuple[float, float | None]:
    """Returns (statistic, p_value or None for distance tests)."""
    from scipy import stats  # here, not at the code location's load (scipy.stats is a third of a second)
    from scipy.spatial import distance

    p = w.p
    if test == "ks":
        return ks_test(p.values, w.values)
    if test == "wasserstein":
        return wasserstein(p.values, w.values) / max(p.std, 0.001), None
    if test == "chisquare":
        _, r, c = w.aligned()
        with np.errstate(divide="ignore", invalid="ignore"):  # unseen category -> inf, p = 0
            res = stats.chisquare(c, r * (w.valid / p.valid))
        return float(res.statistic), float(res.pvalue)
    if test == "z":
        keys, r, c = w.aligned()
        try:
            first = min(range(len(keys)), key=keys.__getitem__)  # Evidently: sorted(keys)[0]
        except TypeError:
            first = min(range(len(keys)), key=lambda i: str(keys[i]))
        n1, n2 = p.valid, w.valid
        p1, p2 = 1 - r[first] / n1, 1 - c[first] / n2
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        denom = np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
        if denom == 0:
            return 0.0, 1.0
        z = float((p1 - p2) / denom)
        return z, float(2 * (1 - stats.norm.cdf(abs(z))))
    r, c = w.shares(smooth=test != "jensenshannon")
    if test == "jensenshannon":
        return float(distance.jensenshannon(r, c)), None
    if test == "psi":
        return float(np.sum((r - c) * np.log(r / c))), None
    return float(stats.entropy(r, c)), None  # kl_div


def _default_test(numeric: bool, ref_valid: int, n_values: int, mode: str = "compatible") -> str:
    if numeric and n_values > LOW_CARDINALITY:
        return "ks" if ref_valid <= SMALL_REFERENCE_ROWS else "wasserstein"
    # Strict: Evidently's JS distance misses a binary rate moving 0.20 -> 0.30 on large windows; p-value tests
    # (whose power grows with the sample) catch it, so categories keep chi-square / Z at any size.
    if ref_valid <= SMALL_REFERENCE_ROWS or mode == "strict":
        return "z" if n_values <= 2 else "chisquare"
    return "jensenshannon"


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _column_drift(
    p: ColumnProfile,
    s: pd.Series | None,
    cur_rows: int,
    test: str | None,
    threshold: float | None,
    mode: str = "compatible",
) -> ColumnDrift:
    w = None if s is None or cur_rows == 0 else _Window(p, s)
    cur_valid = 0 if w is None else w.valid

    def make(
        kind: str, test_: str, stat: float | None, pv: float | None, drifted: bool, verdict: str, new: list
    ) -> ColumnDrift:
        thr = threshold if threshold is not None else DEFAULT_THRESHOLDS.get(test_, 0.0)
        nulls = (_share(p.nulls, p.rows), _share(cur_rows - cur_valid, cur_rows))
        return ColumnDrift(p.name, kind, test_, stat, pv, thr, bool(drifted), verdict, p.rows, cur_rows, *nulls, new)

    if cur_rows == 0:
        return make(p.kind, "none", None, None, False, "no data", [])
    if s is None:  # column vanished from the window: treated like an all-null column
        return make(p.kind, "none", None, None, p.valid > 0, "missing column", [])
    if cur_valid == 0:
        return make(p.kind, "none", None, None, p.valid > 0, "all null", [])
    if p.valid == 0:  # nothing to compare against; values appearing is a change
        return make(p.kind, "none", None, None, True, "reference all null", [])

    assert w is not None  # every case without a window returned above
    n_values, n_cur = w.n_values()
    kind = _kind(w.numeric, n_values)
    test = test or _default_test(w.numeric, p.valid, n_values, mode)
    new: list = []
    if kind != "numeric":  # low-cardinality numerics are categories too
        keys, r, _ = w.aligned()
        new = keys[r == 0][:MAX_NEW_CATEGORIES].tolist()
    if p.n_unique == 1 and n_cur == 1 and n_values == 1:
        # Tests are degenerate (chi2 dof 0 -> NaN); an unchanged constant is by definition no drift.
        return make(kind, test, 0.0, 1.0 if test in P_VALUE_TESTS else None, False, "constant", new)
    stat, pv = _run_test(test, w)
    thr = threshold if threshold is not None else DEFAULT_THRESHOLDS[test]
    if np.isnan(stat) or (pv is not None and np.isnan(pv)):
        return make(kind, test, None, None, False, "test undefined", new)
    # Evidently's ks_stattest flags p <= threshold; chi-square and Z use p < threshold.
    p_value_drift = pv is not None and (pv <= thr if test == "ks" else pv < thr)
    drifted = p_value_drift if test in P_VALUE_TESTS else stat >= thr
    if p.n_unique == 1 and n_cur == 1:
        return make(kind, test, stat, pv, True, "constant changed", new)
    return make(kind, test, stat, pv, drifted, "drift" if drifted else "no drift", new)


def _canonical(test: str) -> str:
    name = _ALIASES.get(test.lower(), test.lower())
    if name not in DEFAULT_THRESHOLDS:
        raise ValueError(f"unknown drift test {test!r}; choose from {sorted(DEFAULT_THRESHOLDS)}")
    return name


def detect_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    mode: str = "compatible",
) -> DriftReport:
    """Compare `current` with the reference profile column by column (Evidently DataDriftPreset rules).

    `mode="strict"` keeps p-value tests for categorical and binary columns on large references (see
    `_default_test`); "compatible" gives Evidently's verdicts."""
    if mode not in DRIFT_MODES:
        raise ValueError(f"unknown drift mode {mode!r}; choose from {DRIFT_MODES}")
    methods = {c: _canonical(t) for c, t in (methods or {}).items()}
    thresholds = dict(thresholds or {})
    for col in set(methods) | set(thresholds):
        if col not in profile.columns:
            raise ValueError(f"methods/thresholds name column {col!r} absent from the reference profile")
    for col, test in methods.items():
        if test in _NUMERIC_ONLY and not profile.columns[col].numeric:
            raise ValueError(f"{test} needs a numeric column, {col!r} is not")
    results = [
        _column_drift(
            p,
            current[name] if name in current.columns else None,
            len(current),
            methods.get(name),
            thresholds.get(name),
            mode,
        )
        for name, p in profile.columns.items()
    ]
    n_drifted = sum(r.drifted for r in results)
    share = _share(n_drifted, len(results))
    no_data = len(current) == 0 or not results
    drifted = not no_data and share >= drift_share
    verdict = "no data" if no_data else ("drift" if drifted else "no drift")
    return DriftReport(results, drift_share, profile.rows, len(current), n_drifted, share, drifted, verdict)

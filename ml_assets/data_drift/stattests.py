"""Two-sample tests on sorted arrays, as scipy computes them: KS (its 'auto' method) and the 1-D Wasserstein
distance. Both read the two samples' CDFs from one merge of the sorted arrays."""

from __future__ import annotations

import numpy as np

KS_EXACT_MAX_N = 10_000  # scipy ks_2samp 'auto' uses the exact p-value up to this size


def ks_test(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS on sorted arrays, same numbers as scipy's ks_2samp(method='auto')."""
    from scipy import stats  # here, not at the code location's load (scipy.stats is a third of a second)

    n1, n2 = ref.size, cur.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        # Exact p-value branch: sizes are bounded, so delegating keeps bit-parity cheaply.
        res = stats.ks_2samp(ref, cur)
        return float(res.statistic), float(res.pvalue)
    merged, ref_count, cur_count = _merged_counts(ref, cur)
    last = np.append(merged[1:] != merged[:-1], True)  # a tie's last position holds its right-side counts
    diffs = ref_count[last] / n1 - cur_count[last] / n2
    d = float(max(np.clip(-diffs.min(), 0, 1), diffs.max()))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = stats.distributions.kstwo.sf(d, np.round(m * n / (m + n)))
    return d, float(np.clip(p, 0, 1))


def _merged_counts(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two sorted arrays merged (a stable sort of two sorted runs is one linear merge), and at each position
    how many values of each came so far: the right-side CDF counts wherever the next value differs."""
    both = np.concatenate([ref, cur])
    order = np.argsort(both, kind="stable")
    from_ref = order < ref.size
    ref_count = np.cumsum(from_ref)
    return both[order], ref_count, np.arange(1, both.size + 1) - ref_count


def wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    """1-D Wasserstein via CDF integration on sorted arrays (scipy's _cdf_distance, p=1). One merge instead of a
    binary search per value: where a value repeats, the counts may be partial, but its width (diff) is 0."""
    merged, ref_count, cur_count = _merged_counts(ref, cur)
    u = ref_count[:-1] / ref.size
    v = cur_count[:-1] / cur.size
    return float(np.sum(np.abs(u - v) * np.diff(merged)))

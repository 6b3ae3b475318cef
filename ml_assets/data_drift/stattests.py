"""Two-sample tests on sorted arrays, as scipy computes them: KS (its 'auto' method), from one merge of the sorted
arrays, and the 1-D Wasserstein distance, from their quantile functions, which need no merge of values at all."""

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
    """1-D Wasserstein distance of two sorted samples: the integral over q in [0, 1) of |F_ref^-1(q) - F_cur^-1(q)|,
    which equals scipy's integral of |F_ref - F_cur| over x (both are W1). The quantile functions step at i/n and
    j/m; those grids merge by arithmetic (ceil(i*m/n) of the j/m lie below i/n), so nothing is sorted or searched:
    a few linear passes, where merging the values cost more than sorting the window."""
    n, m = ref.size, cur.size
    if n == m:  # both quantile functions step at i/n
        return float(np.mean(np.abs(ref - cur)))
    i, j = np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64)
    steps = np.empty(n + m, dtype=np.int64)  # the merged grid, in units of 1/(n*m); a tie puts ref's first
    steps[i + (i * m + n - 1) // n] = i * m
    steps[j + (j * n) // m + 1] = j * n
    widths = np.diff(steps, append=n * m)
    return float(np.dot(widths, np.abs(ref[steps // m] - cur[steps // n])) / (n * m))

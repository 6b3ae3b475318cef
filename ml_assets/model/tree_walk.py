"""The compiled forest's prediction in machine code (numba), imported with the first prediction.

numpy walked every (row, tree) pair down one level per step, five array passes a level (~1.5 ms for 100 rows and
300 trees), and a single row paid ~20 numpy calls' overhead. Here one loop decides each row's distinct splits, then
walks it down each tree, a tree's depth in steps with no branch to mispredict (a leaf leads back to itself): ~0.6 ms
for 100 rows, ~25 µs for one. Rows are independent chains, so the processor overlaps their loads. The import
(~0.6 s) and the compilation (~1 s, then cached: beside this file, else in the user's cache directory, else not at
all) are paid by the process that predicts this way, the inference service, when it loads a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np


def _predict(
    X: np.ndarray,  # (rows, features) float64, C order
    split_read: np.ndarray,  # (splits,) the column a numeric split reads; column + features: NaN reads as -inf
    split_cut: np.ndarray,  # (splits,) goes left when value <= cut
    categorical_columns: np.ndarray,  # (k,) input columns that are categorical
    category_values: np.ndarray,  # (u + 1,) sorted union of their categories, then a NaN pad
    category_codes: np.ndarray,  # (k, u + 1) code of category_values[j] in column k, else MISSING
    column_splits: np.ndarray,  # (k + 1,) categorical splits [column_splits[k], column_splits[k + 1]) read column k
    left_by_code: np.ndarray,  # (257, s) bool: code -> whether each categorical split goes left
    decision: np.ndarray,  # (slots,) the split a slot's node reads: a numeric split, or splits + i
    next_slot: np.ndarray,  # (slots,) slot + went left -> the child's slot
    leaf_value: np.ndarray,  # (slots,) a leaf's value (0 elsewhere)
    roots: np.ndarray,  # (trees,) each tree's root slot, in sklearn's tree order
    depth: np.ndarray,  # (trees,) steps that take every row of a tree to its leaf
    out: np.ndarray,  # (rows,) the baseline in; each tree's leaf value is added in tree order
) -> None:
    rows, features = X.shape
    splits = split_cut.size
    width = splits + left_by_code.shape[1]
    went_left = np.empty(rows * width, dtype=np.uint8)
    both = np.empty(2 * features)  # the row, then the row with NaN as -inf
    known = category_values.size - 1
    missing = left_by_code.shape[0] - 1  # a missing or unknown category's code (a global would be frozen in the cache)
    for row in range(rows):
        base = row * width
        for f in range(features):
            value = X[row, f]
            both[f] = value
            both[features + f] = -np.inf if np.isnan(value) else value
        for j in range(splits):
            went_left[base + j] = both[split_read[j]] <= split_cut[j]  # NaN <= cut fails: NaN goes right
        for k in range(categorical_columns.size):  # the OrdinalEncoder: a category's code, else MISSING
            raw = X[row, categorical_columns[k]]
            pos = np.searchsorted(category_values[:known], raw)
            code = category_codes[k, pos] if category_values[pos] == raw else missing
            lo, hi = column_splits[k], column_splits[k + 1]
            went_left[base + splits + lo : base + splits + hi] = left_by_code[code, lo:hi]
    state = np.empty(rows, dtype=np.intp)
    for tree in range(roots.size):
        state[:] = roots[tree]
        for _ in range(depth[tree]):
            for row in range(rows):
                slot = state[row]
                state[row] = next_slot[slot + went_left[row * width + decision[slot]]]
        for row in range(rows):
            out[row] += leaf_value[state[row]]  # sequential, as sklearn adds: bit-identical sums


def _compile(function: Callable[..., None]) -> Any:
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # no writable place for numba's cache (a read-only install): compile in each process
        return numba.njit(nogil=True)(function)


predict = _compile(_predict)

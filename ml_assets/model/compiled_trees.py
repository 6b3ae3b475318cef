"""Exact, low-overhead prediction for a fitted `HistGradientBoostingRegressor` (squared error) on small batches.

sklearn spends ~2.5 ms per `predict` call on validation, the categorical `ColumnTransformer` and OpenMP set-up,
however few rows come in. Here all trees are flattened into shared numpy arrays, which a compiled loop reads
(`tree_walk.py`: each row's distinct splits decided once, then the row walked down every tree): ~25 µs for one row,
~0.6 ms for 100, ~7 ms for 1,000. sklearn's predict on two threads catches up near 2,000 rows.

Semantics reproduced from sklearn 1.9 (`_predictor.pyx`, `gradient_boosting.py`, `binning.py`):
- With categorical features the estimator has a `_preprocessor` (`ColumnTransformer`): an `OrdinalEncoder` maps a
  categorical value to its index in the sorted training categories (`categories_`), any other value (unseen,
  non-integer, negative, > 255) to NaN, and categorical columns are moved first. Trees index that order. (sklearn
  rejects +-inf in a categorical column; here it is just unknown.)
- Numeric split: `x <= num_threshold` goes left (the threshold is +inf for "all non-missing left"); NaN follows
  `missing_go_to_left`.
- Categorical split on code c: left if c is in `raw_left_cat_bitsets[bitset_idx]`, else right if c is known
  (`known_cat_bitsets`: all the encoder's categories, so a category seen only in the early-stopping validation split
  goes right), else the `missing_go_to_left` side; NaN (missing or unseen) goes the `missing_go_to_left` side.
- Prediction: baseline, then each tree's leaf value added in tree order; we add in the same order (bit-identical).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

MISSING = 256  # column of `category_left` for a missing or unknown category (known codes are 0..254)


@dataclass(eq=False)
class CompiledForest:
    n_features: int
    baseline: float
    roots: np.ndarray  # (trees,) global node index of each tree's root
    feature: np.ndarray  # (nodes,) input column split on (0 for leaves)
    threshold: np.ndarray  # (nodes,) numeric threshold (NaN for categorical splits and leaves)
    children: np.ndarray  # (nodes, 2) global left, right child; a leaf points at itself, so extra steps are no-ops
    missing_left: np.ndarray  # (nodes,) bool, sklearn's missing_go_to_left
    is_categorical: np.ndarray  # (nodes,) bool
    value: np.ndarray  # (nodes,) leaf value (0 for internal nodes)
    tree_depth: np.ndarray  # (trees,) steps a tree needs to reach all its leaves
    category_nodes: np.ndarray  # (s,) categorical split nodes, grouped by column
    category_left: np.ndarray  # (s, 257) bool: code -> goes left (known bitset, unknown and missing folded in)
    categorical_columns: np.ndarray  # (k,) input columns that are categorical, in encoder order
    category_values: np.ndarray  # (u + 1,) sorted union of all columns' training categories, then a NaN pad
    category_codes: np.ndarray  # (k, u + 1) code of category_values[j] in column k, else MISSING
    # Walk tables, derived in __post_init__ (see there).
    _split_read: np.ndarray = field(init=False, repr=False)
    _split_cut: np.ndarray = field(init=False, repr=False)
    _column_splits: np.ndarray = field(init=False, repr=False)
    _left_by_code: np.ndarray = field(init=False, repr=False)
    _decision: np.ndarray = field(init=False, repr=False)
    _next: np.ndarray = field(init=False, repr=False)
    _leaf_value: np.ndarray = field(init=False, repr=False)
    _roots: np.ndarray = field(init=False, repr=False)

    @classmethod
    def from_estimator(cls, est: HistGradientBoostingRegressor) -> CompiledForest:
        if not isinstance(est, HistGradientBoostingRegressor) or not hasattr(est, "_predictors"):
            raise ValueError(f"need a fitted HistGradientBoostingRegressor, got {type(est).__name__}")
        if est.loss != "squared_error" or type(est._loss).__name__ != "HalfSquaredError":
            raise ValueError(f"only loss='squared_error' (identity link) is supported, got loss={est.loss!r}")
        if est.n_trees_per_iteration_ != 1 or np.shape(est._baseline_prediction) != (1, 1):
            raise ValueError("only single-output regression is supported")
        n_features = int(est.n_features_in_)
        predictors = [iteration[0] for iteration in est._predictors]

        # Tree feature index -> input column (the ColumnTransformer reorders), and each column's categories.
        source = np.arange(n_features)
        categories: list[np.ndarray] = []
        if est._preprocessor is not None:
            pre = est._preprocessor
            for name, transformer, mask in pre.transformers_:
                if name != "remainder" and not isinstance(transformer, str):
                    source[pre.output_indices_[name]] = np.flatnonzero(mask)
            encoder = pre.named_transformers_["encoder"]
            if encoder._infrequent_enabled:
                raise ValueError("an OrdinalEncoder with infrequent categories is not supported")
            categories = [c[~np.isnan(c)] for c in encoder.categories_]  # NaN is encoded as missing anyway
        union = np.unique(np.concatenate([*categories, np.zeros(0)]))
        category_codes = np.full((len(categories), union.size + 1), MISSING, dtype=np.intp)
        for k, cats in enumerate(categories):
            category_codes[k, np.searchsorted(union, cats)] = np.arange(cats.size)

        nodes = np.concatenate([p.nodes for p in predictors])
        sizes = np.array([len(p.nodes) for p in predictors])
        roots = np.cumsum(sizes) - sizes
        is_leaf = nodes["is_leaf"].astype(bool)
        is_cat = nodes["is_categorical"].astype(bool) & ~is_leaf
        children = np.stack([nodes["left"], nodes["right"]], axis=1).astype(np.intp) + np.repeat(roots, sizes)[:, None]
        children[is_leaf] = np.flatnonzero(is_leaf)[:, None]

        # Categorical splits: fold sklearn's left bitset, the known-category bitset and missing_go_to_left into one
        # 257-entry table per node. Bitsets are numbered per tree, hence the per-tree offsets.
        known_bits, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        raw_bits = [p.raw_left_cat_bitsets.reshape(-1, 8) for p in predictors]
        bit_offsets = np.repeat(np.cumsum([len(b) for b in raw_bits]) - [len(b) for b in raw_bits], sizes)
        tree_feature = nodes["feature_idx"]
        cat_nodes = np.flatnonzero(is_cat)
        cat_nodes = cat_nodes[np.argsort(tree_feature[cat_nodes], kind="stable")]  # grouped by column
        left_bits = np.concatenate([*raw_bits, np.zeros((0, 8), np.uint32)])[
            bit_offsets[cat_nodes] + nodes["bitset_idx"][cat_nodes]
        ]
        known = _unpack(known_bits)[f_idx_map[tree_feature[cat_nodes]]]
        missing_left = nodes["missing_go_to_left"].astype(bool)
        category_left = np.empty((cat_nodes.size, MISSING + 1), dtype=bool)
        category_left[:, :MISSING] = _unpack(left_bits) | (~known & missing_left[cat_nodes, None])
        category_left[:, MISSING] = missing_left[cat_nodes]

        remapped = est._is_categorical_remapped
        return cls(
            n_features=n_features,
            baseline=float(est._baseline_prediction[0, 0]),
            roots=roots,
            feature=np.where(is_leaf, 0, source[tree_feature]),
            threshold=np.where(is_cat | is_leaf, np.nan, nodes["num_threshold"]),
            children=children,
            missing_left=missing_left,
            is_categorical=is_cat,
            value=np.where(is_leaf, nodes["value"], 0.0),
            tree_depth=np.array([p.nodes["depth"].max() for p in predictors], dtype=np.intp),
            category_nodes=cat_nodes,
            category_left=category_left,
            categorical_columns=source[np.flatnonzero(remapped)] if remapped is not None else np.zeros(0, np.intp),
            category_values=np.append(union, np.nan),  # the pad makes searchsorted's past-the-end index valid
            category_codes=category_codes,
        )

    def __post_init__(self) -> None:
        """Tables of the compiled prediction (`tree_walk.py`): per row it decides each distinct split once, then
        walks the trees reading those decisions."""
        nf, n = self.n_features, self.feature.size
        # Numeric splits are few distinct (column, threshold) pairs, thresholds being bin edges. A split whose NaN
        # goes left reads column + nf, X with NaN -> -inf (`-inf <= t` holds); otherwise `NaN <= t` fails and NaN
        # goes right, even when t is +inf.
        numeric = np.flatnonzero(~np.isnan(self.threshold))  # leaves and categorical splits hold NaN
        keys = np.stack([self.feature[numeric] + nf * self.missing_left[numeric], self.threshold[numeric]], axis=1)
        splits, which = np.unique(keys, axis=0, return_inverse=True)
        self._split_read, self._split_cut = splits[:, 0].astype(np.intp), splits[:, 1].copy()
        decision = np.zeros(n, dtype=np.intp)  # leaves read split 0: both their slots lead back to themselves
        decision[numeric] = which.ravel()
        decision[self.category_nodes] = len(splits) + np.arange(self.category_nodes.size)
        # Categorical splits are grouped by column: those of column k are [column_splits[k], column_splits[k + 1]).
        column_of = np.searchsorted(self.categorical_columns, self.feature[self.category_nodes])
        self._column_splits = np.searchsorted(column_of, np.arange(self.categorical_columns.size + 1))
        self._left_by_code = np.ascontiguousarray(self.category_left.T)
        # A row's place in a tree is a slot, 2 * node; slot + went_left indexes the next slot (right child first).
        self._decision = np.repeat(decision, 2)
        self._next = (2 * self.children[:, ::-1]).ravel()
        self._leaf_value = np.repeat(self.value, 2)
        self._roots = 2 * self.roots

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions, equal to `est.predict(X)` for the squared-error loss."""
        from ml_assets.model.tree_walk import predict  # numba: only a process that predicts this way imports it

        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_rows, {self.n_features}), got {X.shape}")
        out = np.full(X.shape[0], self.baseline)
        predict(
            X,
            self._split_read,
            self._split_cut,
            self.categorical_columns,
            self.category_values,
            self.category_codes,
            self._column_splits,
            self._left_by_code,
            self._decision,
            self._next,
            self._leaf_value,
            self._roots,
            self.tree_depth,
            out,
        )
        return out


def _unpack(bitsets: np.ndarray) -> np.ndarray:
    """(n, 8) uint32 sklearn bitsets -> (n, 256) bool: category c is bit c % 32 of word c // 32."""
    bits = (bitsets[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return bits.reshape(len(bitsets), 256).astype(bool)

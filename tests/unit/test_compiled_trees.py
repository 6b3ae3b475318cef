"""The compiled forest predicts exactly what sklearn's HistGradientBoostingRegressor predicts, on the real Ames data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from ml_assets.data.dataset import ames_listings
from ml_assets.model.compiled_trees import CompiledForest
from ml_assets.model.estimator import HousePriceModel

TRAIN_ROWS = 2000


@pytest.fixture(scope="module")
def model() -> HousePriceModel:
    frame = ames_listings().iloc[:TRAIN_ROWS]
    return HousePriceModel.train(frame, frame["price"].to_numpy())


@pytest.fixture(scope="module")
def unseen(model: HousePriceModel) -> np.ndarray:
    """Feature rows of listings the model was not trained on."""
    return model.encoder.transform_frame(ames_listings().iloc[TRAIN_ROWS:])


@pytest.fixture(scope="module")
def categorical(model: HousePriceModel) -> np.ndarray:
    return np.flatnonzero(model.encoder.categorical_mask)


def assert_matches(est: HistGradientBoostingRegressor, X: np.ndarray) -> None:
    compiled = CompiledForest.from_estimator(est).predict(X)
    assert compiled.shape == (X.shape[0],)
    assert np.allclose(compiled, est.predict(X), rtol=1e-12, atol=0)


def test_real_rows(model: HousePriceModel, unseen: np.ndarray) -> None:
    assert_matches(model.estimator, unseen[:300])


def test_bit_identical(model: HousePriceModel, unseen: np.ndarray) -> None:
    """Stricter than needed: leaves are added in sklearn's order, so results agree to the last bit."""
    X = unseen.copy()
    X[np.random.default_rng(5).random(X.shape) < 0.2] = np.nan
    assert np.array_equal(CompiledForest.from_estimator(model.estimator).predict(X), model.estimator.predict(X))


def test_single_rows(model: HousePriceModel, unseen: np.ndarray) -> None:
    compiled = CompiledForest.from_estimator(model.estimator)
    for row in unseen[::47]:
        assert np.allclose(compiled.predict(row[None, :]), model.estimator.predict(row[None, :]), rtol=1e-12, atol=0)


def test_missing_values_in_every_column(model: HousePriceModel, unseen: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    X = unseen[:300].copy()
    X[rng.random(X.shape) < 0.3] = np.nan
    assert np.isnan(X).any(axis=0).all()
    X[0] = np.nan  # and one row with nothing known
    assert_matches(model.estimator, X)


# Codes the encoder never produced: unseen, beyond the 255 codes of a bitset, negative, signed zero, non-integer.
@pytest.mark.parametrize("code", [240.0, 249.0, 255.0, 256.0, 300.0, 1e9, -1.0, -0.0, 2.5])
def test_unknown_categories(model: HousePriceModel, unseen: np.ndarray, categorical: np.ndarray, code: float) -> None:
    X = np.repeat(unseen[:20], len(categorical) + 1, axis=0)
    for i, column in enumerate(categorical):  # one categorical column at a time, then all of them together
        X[i * 20 : (i + 1) * 20, column] = code
    X[-20:, categorical] = code
    assert_matches(model.estimator, X)


def test_without_categorical_features(unseen: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    X = unseen.copy()
    X[rng.random(X.shape) < 0.1] = np.nan
    y = np.log(ames_listings()["price"].to_numpy()[TRAIN_ROWS:])
    est = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(X[:600], y[:600])
    assert est._preprocessor is None
    assert_matches(est, X[600:])
    # Trained with NaNs, some splits send all values left and NaN right: threshold +inf, which +inf still passes.
    assert np.isinf(CompiledForest.from_estimator(est).threshold).any()
    X[600:700:2] = np.inf
    X[601:700:2] = -np.inf
    assert_matches(est, X[600:700])


def test_values_on_thresholds(model: HousePriceModel, unseen: np.ndarray) -> None:
    """`x <= threshold` goes left: rows holding exactly each split's threshold, and infinite numeric values."""
    compiled = CompiledForest.from_estimator(model.estimator)
    X = np.repeat(unseen[:300], 2, axis=0)
    for column in np.flatnonzero(~model.encoder.categorical_mask):
        thresholds = np.unique(compiled.threshold[(compiled.feature == column) & np.isfinite(compiled.threshold)])
        X[: thresholds.size, column] = thresholds
    X[300:, ~model.encoder.categorical_mask] = np.where(np.arange(300)[:, None] % 2, np.inf, -np.inf)
    assert_matches(model.estimator, X)


def test_tiny_estimator(model: HousePriceModel, unseen: np.ndarray) -> None:
    frame = ames_listings().iloc[:TRAIN_ROWS]
    X = model.encoder.transform_frame(frame)
    est = HistGradientBoostingRegressor(max_iter=3, categorical_features=model.encoder.categorical_mask)
    est.fit(X, np.log(frame["price"].to_numpy()))
    assert_matches(est, unseen)
    assert_matches(est, unseen[:1])


def test_many_categories(model: HousePriceModel, unseen: np.ndarray, categorical: np.ndarray) -> None:
    """Codes up to 249 use all eight words of sklearn's bitsets (the real columns have fewer than 32 categories)."""
    frame = ames_listings().iloc[:TRAIN_ROWS]
    rng = np.random.default_rng(11)
    X = model.encoder.transform_frame(frame)
    X[:, categorical[0]] = (X[:, categorical[0]] * 9 + rng.integers(0, 9, len(X))) % 250
    est = HistGradientBoostingRegressor(max_iter=80, categorical_features=model.encoder.categorical_mask)
    est.fit(X, np.log(frame["price"].to_numpy()))
    assert est._preprocessor.named_transformers_["encoder"].categories_[0].size > 200
    held_out = unseen.copy()
    held_out[:, categorical[0]] = rng.integers(0, 256, len(held_out)).astype(float)
    assert_matches(est, held_out)


def test_categories_the_trees_never_saw(model: HousePriceModel, categorical: np.ndarray) -> None:
    """With early stopping the encoder (and so the bin mapper's known categories) sees validation rows, the trees do
    not: a category only in the validation split is known, so it goes right, not the missing way."""
    frame = ames_listings().iloc[:TRAIN_ROWS]
    X = model.encoder.transform_frame(frame)
    X[:10, categorical[0]] = np.arange(100.0, 110.0)  # ten one-row categories: about half only in validation
    est = HistGradientBoostingRegressor(
        max_iter=50,
        categorical_features=model.encoder.categorical_mask,
        early_stopping=True,
        validation_fraction=0.5,
        n_iter_no_change=50,
        random_state=1,
    ).fit(X, np.log(frame["price"].to_numpy()))
    n_codes = est._preprocessor.named_transformers_["encoder"].categories_[0].size
    assert np.array_equal(est._bin_mapper.bin_thresholds_[0], np.arange(n_codes))
    X[10:20] = X[:10]
    X[10:20, categorical[1:]] = np.nan  # the same, with the other categorical columns missing
    assert_matches(est, X[:20])


def test_refuses_unsupported_estimators(unseen: np.ndarray) -> None:
    y = np.arange(100.0)
    for est in (
        HistGradientBoostingRegressor(loss="absolute_error", max_iter=3).fit(unseen[:100], y),
        HistGradientBoostingRegressor(loss="poisson", max_iter=3).fit(unseen[:100], y + 1),
        HistGradientBoostingClassifier(max_iter=3).fit(unseen[:100], np.arange(100) % 3),
        HistGradientBoostingRegressor(),
    ):
        with pytest.raises(ValueError, match=r"squared_error|HistGradientBoostingRegressor"):
            CompiledForest.from_estimator(est)
    compiled = CompiledForest.from_estimator(HistGradientBoostingRegressor(max_iter=3).fit(unseen[:100], y))
    with pytest.raises(ValueError, match="shape"):
        compiled.predict(unseen[:5, :-1])


def test_compiles_without_a_cache_where_numba_can_write_none() -> None:
    """A function with no source file has no cache locator, as in a read-only install: compiled all the same."""
    from ml_assets.model.tree_walk import _compile

    namespace: dict[str, object] = {}
    exec("def add_one(out):\n    out[0] += 1\n", namespace)
    add_one = _compile(namespace["add_one"])
    out = np.zeros(1)
    add_one(out)
    assert out[0] == 1 and add_one.targetoptions["nogil"]

"""Promotion rules, holdout, outliers, metrics and features, on the real Ames data where data is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_assets.data.dataset import ames_listings
from ml_assets.defs.model.registry import decide_promotion
from ml_assets.model.estimator import HousePriceModel, pip_requirements
from ml_assets.model.features import CATEGORICAL, FEATURES, FeatureEncoder
from ml_assets.schema import COLUMNS, Listing
from ml_assets.steps.train import Metrics, drop_price_outliers, evaluate, holdout_mask


def _metrics(rmse_log: float, r2_log: float = 0.8) -> Metrics:
    return Metrics(rmse_log=rmse_log, r2_log=r2_log, rmse=1.0, mae=1.0, rows=10)


@pytest.mark.parametrize(
    ("challenger", "champion", "floor", "improvement", "promote", "words"),
    [
        (_metrics(0.2, r2_log=0.7), None, 0.5, 0.0, True, "first model"),
        (_metrics(0.2, r2_log=0.4), None, 0.5, 0.0, False, "below floor"),
        (_metrics(0.19), _metrics(0.20), 0.5, 0.0, True, "< champion"),
        (_metrics(0.20), _metrics(0.20), 0.5, 0.0, False, "does not beat"),
        (_metrics(0.21), _metrics(0.20), 0.5, 0.0, False, "does not beat"),
        (_metrics(0.195), _metrics(0.20), 0.5, 0.05, False, "5%"),
        (_metrics(0.18), _metrics(0.20), 0.5, 0.05, True, "5%"),
    ],
)
def test_promotion_rules(
    challenger: Metrics, champion: Metrics | None, floor: float, improvement: float, promote: bool, words: str
) -> None:
    decision = decide_promotion(challenger, champion, floor, improvement)
    assert decision.promote is promote
    assert words in decision.reason


def test_holdout_is_stable_as_batches_accumulate() -> None:
    data = ames_listings()
    first, both = data.head(300), data.head(600)
    assert np.array_equal(holdout_mask(first, 20), holdout_mask(both, 20)[:300])
    share = holdout_mask(data, 20).mean()
    assert 0.15 < share < 0.25


def test_price_outliers_are_dropped_but_expensive_houses_kept() -> None:
    data = ames_listings().head(500).copy()
    data.loc[0, "price"] = 12.0  # a data-entry error
    cleaned = drop_price_outliers(data)
    assert 12.0 not in cleaned["price"].to_numpy()
    assert cleaned["price"].max() == data["price"].max()
    assert len(data) - 1 - len(cleaned) <= 5, "at most 1% of real sales may look like outliers"


def test_evaluate_perfect_and_biased_predictions() -> None:
    truth = np.array([100_000.0, 200_000.0, 300_000.0])
    perfect = evaluate(truth.copy(), truth)
    assert perfect.rmse == 0 and perfect.r2_log == 1 and perfect.rows == 3
    biased = evaluate(truth * 1.1, truth)
    assert biased.rmse_log == pytest.approx(np.log(1.1))
    assert biased.mae == pytest.approx(20_000.0)


def test_encoder_maps_unseen_categories_to_missing_and_accepts_any_zip_spelling() -> None:
    encoder = FeatureEncoder.fit(ames_listings())
    base = {
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.2,
        "house_size": 1500,
        "brokered_by": 16000.0,
        "status": "sold",
        "city": "Ames",
        "state": "Iowa",
        "zip_code": 50010.0,
        "prev_sold_date": "2010-05-01",
    }
    known = encoder.transform_records([base])[0]
    as_text = encoder.transform_records([{**base, "zip_code": "50010"}])[0]
    unseen = encoder.transform_records([{**base, "city": "Springfield"}])[0]
    assert np.array_equal(known, as_text, equal_nan=True)
    assert np.isnan(unseen[FEATURES.index("city")]) and not np.isnan(known[FEATURES.index("city")])
    assert known[FEATURES.index("sold_year")] == 2010
    assert encoder.categorical_mask.sum() == len(CATEGORICAL)


def test_fast_path_equals_pandas_path_and_the_model_learns() -> None:
    data = ames_listings()
    train, test = data.iloc[:2000], data.iloc[2000:2300]
    model = HousePriceModel.train(train, train["price"].to_numpy())
    frame_prices = model.predict(None, test)
    records = test.drop(columns="price").to_dict("records")
    assert np.allclose(model.predict_records(records), frame_prices, rtol=1e-12)
    assert evaluate(frame_prices, test["price"].to_numpy()).r2_log > 0.6
    explanation = model.explain_record(records[0])
    assert set(explanation["contributions_log"]) == set(FEATURES)
    assert explanation["prediction"] == pytest.approx(frame_prices[0])


def test_named_requirements_are_what_mlflow_would_infer(tmp_path: Path) -> None:
    """Training names the model's requirements instead of letting MLflow load the model in a subprocess to find
    them: the two lists must stay the same (a new import in the model breaks this test, not a serving image)."""
    import mlflow

    data = ames_listings().iloc[:300]
    model = HousePriceModel.train(data, data["price"].to_numpy())
    mlflow.pyfunc.save_model(tmp_path / "inferred", python_model=model)  # MLflow infers, as it did in training
    inferred = (tmp_path / "inferred" / "requirements.txt").read_text().split()
    assert [line for line in inferred if not line.startswith("mlflow==")] == pip_requirements()


def test_dataset_matches_the_seed_schema_and_listing_model() -> None:
    data = ames_listings()
    assert list(data.columns) == list(COLUMNS) and len(data) == 2930
    assert data["price"].notna().all() and (data["price"] > 0).all()
    for record in data.drop(columns="price").head(50).to_dict("records"):
        Listing(**{k: (None if pd.isna(v) else v) for k, v in record.items()})

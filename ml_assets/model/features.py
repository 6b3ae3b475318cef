"""Features from listings, as plain numpy so training and serving share one code path with no pandas on the hot path.

Categorical columns become integer codes from a vocabulary learned at training (HistGradientBoosting's native
categorical support); an unseen category becomes NaN, which the model treats as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NUMERIC = ("bed", "bath", "acre_lot", "house_size")
CATEGORICAL = ("brokered_by", "status", "city", "state", "zip_code")
DERIVED = ("sold_year",)  # trees need no log transforms: they are invariant to monotone maps
FEATURES = (*NUMERIC, *DERIVED, *CATEGORICAL)
MAX_CATEGORIES = 250  # HistGradientBoosting bins categories into at most 255 codes


def _as_float(values: Sequence[object]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _year(dates: Sequence[object]) -> np.ndarray:
    return np.array([float(d[:4]) if isinstance(d, str) and d[:4].isdigit() else np.nan for d in dates])


def _code(vocabulary: dict[str, int], value: object) -> float:
    """The category's code, NaN for a missing value or a category not seen in training."""
    key = _key(value)
    return np.nan if key is None else vocabulary.get(key, np.nan)


def _key(value: object) -> str | None:
    """Category key: 50010.0 and "50010" are the same zip code."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class FeatureEncoder:
    vocabularies: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> FeatureEncoder:
        vocabularies = {}
        for column in CATEGORICAL:
            keys = pd.Series([_key(v) for v in frame[column].tolist()]).dropna()
            top = keys.value_counts().index[:MAX_CATEGORIES]
            vocabularies[column] = {key: code for code, key in enumerate(sorted(top))}
        return cls(vocabularies)

    @property
    def categorical_mask(self) -> np.ndarray:
        return np.array([name in CATEGORICAL for name in FEATURES])

    def transform_columns(self, columns: Mapping[str, Sequence[object]]) -> np.ndarray:
        """(rows, len(FEATURES)) float64 matrix from column lists (missing columns count as all-missing)."""
        rows = len(next(iter(columns.values()))) if columns else 0
        blank = [None] * rows
        numeric = {name: _as_float(columns.get(name, blank)) for name in NUMERIC}
        derived = {"sold_year": _year(columns.get("prev_sold_date", blank))}
        coded = {
            name: np.array([_code(self.vocabularies[name], v) for v in columns.get(name, blank)], dtype=np.float64)
            for name in CATEGORICAL
        }
        merged = {**numeric, **derived, **coded}
        return np.column_stack([merged[name] for name in FEATURES]) if rows else np.empty((0, len(FEATURES)))

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray:
        columns = {
            name: frame[name].astype(object).where(frame[name].notna(), None).tolist()
            for name in (*NUMERIC, *CATEGORICAL, "prev_sold_date")
            if name in frame
        }
        return self.transform_columns(columns)

    def transform_records(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        names = (*NUMERIC, *CATEGORICAL, "prev_sold_date")
        return self.transform_columns({name: [r.get(name) for r in records] for name in names})

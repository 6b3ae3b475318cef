"""A reference profile as bytes (npz, no pickle): what the drift tests need, without the raw reference rows."""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.data_drift.engine import ColumnProfile, ReferenceProfile

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    pass

_HEADER = "header.json"
FORMAT_VERSION = 1


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def profile_to_bytes(profile: ReferenceProfile) -> bytes:
    columns, arrays = [], {}
    for i, col in enumerate(profile.columns.values()):
        entry = {
            "name": col.name,
            "kind": col.kind,
            "numeric": col.numeric,
            "rows": col.rows,
            "nulls": col.nulls,
            "n_unique": col.n_unique,
            "std": col.std,
        }
        if col.sorted_values is not None:
            arrays[f"values_{i}"] = np.asarray(col.sorted_values, dtype=np.float64)
        if col.counts is not None:
            entry["counts"] = [[_plain(k), int(v)] for k, v in col.counts.items()]
        columns.append(entry)
    header = {"format": FORMAT_VERSION, "rows": profile.rows, "columns": columns}
    arrays[_HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def profile_digest(profile: ReferenceProfile) -> str:
    """Content hash of a profile (its npz bytes carry zip timestamps, so they are not stable)."""
    digest = hashlib.sha256(str(profile.rows).encode())
    for col in profile.columns.values():
        digest.update(repr((col.name, col.kind, col.numeric, col.rows, col.nulls, col.n_unique, col.std)).encode())
        if col.sorted_values is not None:
            digest.update(np.ascontiguousarray(col.sorted_values, dtype=np.float64).tobytes())
        if col.counts is not None:
            digest.update(repr([(_plain(k), int(v)) for k, v in col.counts.items()]).encode())
    return digest.hexdigest()[:16]


def profile_from_bytes(data: bytes) -> ReferenceProfile:
    import pandas as pd

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(npz[_HEADER].tobytes())
        if header.get("format") != FORMAT_VERSION:
            raise ValueError(f"reference profile format {header.get('format')!r}, expected {FORMAT_VERSION}")
        columns = {}
        for i, entry in enumerate(header["columns"]):
            counts = entry.pop("counts", None)
            values = npz[f"values_{i}"] if f"values_{i}" in npz.files else None
            series = None
            if counts is not None:
                series = pd.Series([c for _, c in counts], index=[k for k, _ in counts], dtype=np.int64)
            columns[entry["name"]] = ColumnProfile(**entry, sorted_values=values, counts=series)
    return ReferenceProfile(columns, header["rows"])

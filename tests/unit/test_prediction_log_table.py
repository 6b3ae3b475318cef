"""The prediction log's rows as written to Parquet: the request's fields, the price, the version, the time."""

from __future__ import annotations

from datetime import UTC, datetime

from ml_assets.serving.prediction_log import SCHEMA, _Batch, to_table


def test_the_table_keeps_every_row_in_order_with_its_batch_fields() -> None:
    first, second = datetime(2026, 12, 7, 8, 0, tzinfo=UTC), datetime(2026, 12, 7, 8, 1, tzinfo=UTC)
    rows = [{"city": "Ames", "bed": 3.0}, {"city": None, "house_size": 1200.0}]
    table = to_table([_Batch(rows, [1.5, 2.5], "7", first), _Batch(rows[:1], [3.5], "8", second)])
    assert table.schema.equals(SCHEMA)
    assert table.column("city").to_pylist() == ["Ames", None, "Ames"]
    assert table.column("bed").to_pylist() == [3.0, None, 3.0]  # a field a record lacks is null
    assert table.column("predicted_price").to_pylist() == [1.5, 2.5, 3.5]
    assert table.column("model_version").to_pylist() == ["7", "7", "8"]
    assert table.column("predicted_at").to_pylist() == [first, first, second]

"""`raw_batches` and `validated_batches`: a day's batch fetched into the datasets bucket, then checked and copied."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_assets.data.source import SOURCE_SETTINGS
from ml_assets.data.store import TableStore
from ml_assets.steps.base import Step, StepInputs, StepRefused, StepResult, typed
from platform_core.results import NO_CHANGE

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

PREVIEW_ROWS = 5


def stored_table(store: TableStore, key: str, frame: pd.DataFrame, **extra: object) -> StepResult:
    """Write the table (a no-op when equal content is already there) and describe it for the UI."""
    stored = store.put(key, frame)
    columns = [{"name": name, "type": str(dtype)} for name, dtype in frame.dtypes.items()]
    metadata = {
        "change": f"wrote {stored.bytes} bytes" if stored.written else NO_CHANGE,
        "uri": store.uri(key),
        "rows": len(frame),
        "content_hash": stored.content_hash,
        "schema": typed("table_schema", {"columns": columns}),
        "preview": typed("md", frame.head(PREVIEW_ROWS).to_markdown(index=False)),
        **extra,
    }
    return StepResult(metadata, data_version=stored.content_hash)


def fetch_raw(inputs: StepInputs) -> StepResult:
    batch = inputs.source.fetch_batch(inputs.integer("day"))
    return stored_table(inputs.datasets, inputs.text("raw_key"), batch.frame, batch_number=batch.batch_number)


def validate(inputs: StepInputs) -> StepResult:
    """The blocking check stops an invalid batch in a job; a direct run must not slip past it either."""
    from ml_assets.data.validation import validate_batch  # numpy: when the step runs, not at definitions load

    frame = inputs.datasets.get(inputs.text("raw_key"))
    report = validate_batch(frame)
    if not report.passed:
        raise StepRefused(f"day {inputs.integer('day')} is invalid: {report.summary()}")
    return stored_table(inputs.datasets, inputs.text("validated_key"), frame)


RAW = Step(
    "raw_batches", fetch_raw, ("day", "raw_key", "datasets_bucket", "s3_endpoint", "source_url", *SOURCE_SETTINGS)
)
VALIDATED = Step("validated_batches", validate, ("day", "raw_key", "validated_key", "datasets_bucket", "s3_endpoint"))

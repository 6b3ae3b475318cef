"""What the inference service needs to run, independent of where it came from (platform config or a test)."""

from __future__ import annotations

from pydantic import BaseModel, Field

# where the prediction log writes in its bucket (and the `prediction_log` observation reads): a constant here, so
# reading it does not import the log's own pyarrow and boto3
PREDICTION_LOG_PREFIX = "predictions"


class ServingSettings(BaseModel):
    tracking_uri: str
    model_name: str
    alias: str = "champion"
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str = Field(repr=False)
    predictions_bucket: str
    threads: int = Field(1, ge=1)
    max_batch_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    log_flush_rows: int = Field(10_000, ge=1)
    flush_interval_seconds: float = Field(10, gt=0)

"""Parquet tables in S3 (the `datasets` bucket), written as the `ml` identity, idempotently.

Each object carries the content hash of its frame in its S3 metadata, so writing an equal frame again is
recognised as "no change" without downloading anything.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_assets.data.blobs import HASH_KEY, BlobStore

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd
    from botocore.client import BaseClient


def frame_hash(frame: pd.DataFrame) -> str:
    """Stable across runs and machines: row hashes plus column names and dtypes."""

    import pandas as pd

    digest = hashlib.sha256()
    digest.update(str([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PutResult:
    key: str
    content_hash: str
    written: bool  # False: an equal frame was already there
    bytes: int


class TableStore:
    def __init__(self, s3: BaseClient, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def stored_hash(self, key: str) -> str | None:
        return BlobStore(self.s3, self.bucket).digest(key)  # the same tag, under the same metadata key

    def holds(self, key: str, frame: pd.DataFrame) -> bool:
        """Whether `key` already holds exactly this table (what `put` writes only when it does not)."""
        return self.stored_hash(key) == frame_hash(frame)

    def put(self, key: str, frame: pd.DataFrame) -> PutResult:
        content_hash = frame_hash(frame)
        if self.holds(key, frame):
            return PutResult(key, content_hash, written=False, bytes=0)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        body = buffer.getvalue()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata={HASH_KEY: content_hash})
        return PutResult(key, content_hash, written=True, bytes=len(body))

    def get(self, key: str) -> pd.DataFrame:
        import pandas as pd

        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return pd.read_parquet(io.BytesIO(body))

    def keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return sorted(
            obj["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        )

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

"""Bytes in a bucket (reports, reference profiles), each tagged with its sha256 so an equal rewrite is a no-op."""

from __future__ import annotations

import hashlib

from botocore.client import BaseClient
from botocore.exceptions import ClientError

HASH_KEY = "content-sha256"
_MISSING = {"404", "NoSuchKey", "NotFound"}


class BlobStore:
    def __init__(self, s3: BaseClient, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes, content_type: str, digest: str | None = None) -> bool:
        """Write unless identical content is there already; returns whether it wrote. Pass `digest` when the
        bytes are not deterministic (zip timestamps) but their content is."""
        digest = digest or hashlib.sha256(body).hexdigest()
        if self.digest(key) == digest:
            return False
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata={HASH_KEY: digest}
        )
        return True

    def digest(self, key: str) -> str | None:
        """The sha256 `put` tagged the object with; None when there is no such object (or it has no tag)."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        found: str | None = head.get("Metadata", {}).get(HASH_KEY)
        return found

    def get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

"""Bytes in a bucket (reports, reference profiles), each tagged with its sha256 so an equal rewrite is a no-op."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # botocore where a client is made: the definitions import this module
    from botocore.client import BaseClient

T = TypeVar("T")
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
        head = _unless_missing(lambda: self.s3.head_object(Bucket=self.bucket, Key=key))
        found: str | None = None if head is None else head.get("Metadata", {}).get(HASH_KEY)
        return found

    def get(self, key: str) -> bytes | None:
        return _unless_missing(lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())


def _unless_missing(call: Callable[[], T]) -> T | None:
    """`call`'s answer; None when S3 says the object is not there (any other error is raised)."""
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise

"""The `reports` bucket: reference profiles and drift reports, written as the bucket's owner, idempotently."""

from __future__ import annotations

import hashlib
from pathlib import Path

from botocore.exceptions import ClientError

from platform_assets.resources_base import PlatformResource
from platform_assets.storage.seaweedfs import READONLY, SeaweedFSResource

HASH_KEY = "content-sha256"
LINK_SECONDS = 7 * 24 * 3600  # SigV4's longest presigned lifetime


class ReportsResource(PlatformResource):
    """Bytes in the reports bucket, each tagged with its sha256 so an equal rewrite is a no-op."""

    def _client(self):
        cfg = self.cfg
        seaweed = SeaweedFSResource(config_path=self.config_path, state_dir=self.state_dir)
        return seaweed.client(cfg.bucket(cfg.ml.reports_bucket).owner)

    @property
    def bucket(self) -> str:
        return self.cfg.ml.reports_bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes, content_type: str, digest: str | None = None) -> bool:
        """Write unless identical content is there already; returns whether it wrote. Pass `digest` when the
        bytes are not deterministic (zip timestamps) but their content is."""
        digest = digest or hashlib.sha256(body).hexdigest()
        client = self._client()
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
            if head.get("Metadata", {}).get(HASH_KEY) == digest:
                return False
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
                raise
        client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata={HASH_KEY: digest})
        return True

    def get(self, key: str) -> bytes | None:
        try:
            return self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def link(self, key: str) -> str:
        """A browser link to the object: the bucket is private, so a GET presigned by the `readonly` identity,
        which can read and nothing else (the link carries its access key ID, never a secret key)."""
        seaweed = SeaweedFSResource(config_path=self.config_path, state_dir=self.state_dir)
        return seaweed.client(READONLY).generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=LINK_SECONDS
        )

    def local_copy(self, key: str, body: bytes) -> Path:
        """The same file under the state directory, for a UI link that never expires."""
        path = self.state.root / "reports" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != body:
            path.write_bytes(body)
        return path

"""The `reports` bucket: reference profiles and drift reports, written as the bucket's owner, idempotently."""

from __future__ import annotations

from pathlib import Path

from ml_assets.data.blobs import BlobStore
from platform_core.resource import PlatformResource
from platform_core.services.seaweedfs import READONLY, SeaweedFSResource

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

    def store(self) -> BlobStore:
        return BlobStore(self._client(), self.bucket)

    def put(self, key: str, body: bytes, content_type: str, digest: str | None = None) -> bool:
        """Write unless identical content is there already (see BlobStore.put); returns whether it wrote."""
        return self.store().put(key, body, content_type, digest)

    def get(self, key: str) -> bytes | None:
        return self.store().get(key)

    def link(self, key: str) -> str:
        """A browser link to the object: the bucket is private, so a GET presigned by the `readonly` identity,
        which can read and nothing else (the link carries its access key ID, never a secret key)."""
        seaweed = SeaweedFSResource(config_path=self.config_path, state_dir=self.state_dir)
        return seaweed.client(READONLY).generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=LINK_SECONDS
        )

    def local_path(self, key: str) -> Path:
        return self.state.root / "reports" / key

    def local_copy(self, key: str, body: bytes) -> Path:
        """The same file under the state directory, for a UI link that never expires."""
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != body:
            path.write_bytes(body)
        return path

"""Where the ML data lives: Parquet tables in the datasets bucket, written by the bucket's owner identity."""

from ml_assets.data.store import TableStore
from platform_core.resource import PlatformResource
from platform_core.services.seaweedfs import SeaweedFSResource


class DatasetsResource(PlatformResource):
    def store(self) -> TableStore:
        cfg = self.cfg
        bucket = cfg.ml.datasets_bucket
        seaweed = SeaweedFSResource(config_path=self.config_path, state_dir=self.state_dir)
        return TableStore(seaweed.client(cfg.bucket(bucket).owner), bucket)

    def raw_key(self, day: int) -> str:
        return f"raw/group={self.cfg.ml.group_number}/day={day:04d}.parquet"

    def validated_key(self, day: int) -> str:
        return f"validated/group={self.cfg.ml.group_number}/day={day:04d}.parquet"

    def validated_days(self) -> list[int]:
        return self.stored_days("validated")

    def stored_days(self, stage: str) -> list[int]:
        """The days stored under ``stage`` ("raw" or "validated"), as raw_key / validated_key name them."""
        prefix = f"{stage}/group={self.cfg.ml.group_number}/day="
        return [int(key.removeprefix(prefix).removesuffix(".parquet")) for key in self.store().keys(prefix)]

    @property
    def features_key(self) -> str:
        return f"features/group={self.cfg.ml.group_number}/training.parquet"

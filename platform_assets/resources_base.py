"""The base every local-target resource shares: where the config is and where the state lives."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dagster as dg

from platform_assets.config import PlatformConfig, load_config
from platform_assets.services.supervisor import Supervisor
from platform_assets.state import StateDir


@lru_cache(maxsize=8)
def _cached_config(path: str, mtime_ns: int) -> PlatformConfig:
    return load_config(path)


@lru_cache(maxsize=8)
def _prepared_state(root: str) -> StateDir:
    return StateDir(Path(root)).ensure()


def read_config(path: str) -> PlatformConfig:
    """Parse once per file version: resources are rebuilt per step, the file rarely changes."""
    return _cached_config(path, Path(path).stat().st_mtime_ns)


class PlatformResource(dg.ConfigurableResource):
    """Knows the stack's description (`config_path`) and its state directory (`state_dir`)."""

    config_path: str
    state_dir: str

    @property
    def cfg(self) -> PlatformConfig:
        return read_config(self.config_path)

    @property
    def state(self) -> StateDir:
        return _prepared_state(self.state_dir)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.state.run, self.state.logs)

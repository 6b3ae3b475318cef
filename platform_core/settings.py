"""The one place that reads the environment: which config file and which state directory."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "PLATFORM_CONFIG"
STATE_DIR_ENV = "PLATFORM_STATE_DIR"
DEFAULT_CONFIG = "platform.yaml"


def config_path() -> Path:
    """`PLATFORM_CONFIG`, else `platform.yaml` in the working directory."""
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)).expanduser().resolve()


def state_dir_override() -> Path | None:
    """`PLATFORM_STATE_DIR` wins over `state_dir` in platform.yaml, so tests and users can relocate a stack."""
    raw = os.environ.get(STATE_DIR_ENV)
    return Path(raw).expanduser().resolve() if raw else None

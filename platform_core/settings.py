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


# Set in the pods of the k3s target's orchestrator (code servers, run pods): the platform's Secret is mounted at
# CLUSTER_SECRET_DIR (platform.yaml, credentials.json), services answer at their cluster DNS names and the
# Kubernetes API through the pod's service account.
IN_CLUSTER_ENV = "PLATFORM_IN_CLUSTER"
CLUSTER_SECRET_DIR = Path("/etc/platform")


def in_cluster() -> bool:
    return os.environ.get(IN_CLUSTER_ENV) == "true"

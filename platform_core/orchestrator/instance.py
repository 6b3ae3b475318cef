"""The stack's Dagster instance: its `dagster.yaml`, stored in the platform's Postgres, and how to open it.

The role's password reaches Dagster only through the environment (`{env: DAGSTER_PG_PASSWORD}`): the UI shows the
instance's configuration, so a password written into `dagster.yaml` would be on a web page.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml

from platform_core.config import PlatformConfig
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV
from platform_core.state import StateDir
from platform_core.supervisor import write_private

PASSWORD_ENV = "DAGSTER_PG_PASSWORD"
INSTANCE_FILE = "dagster.yaml"


def instance_role(cfg: PlatformConfig) -> str:
    return next(db.owner for db in cfg.databases if db.name == cfg.orchestrator.database)


def instance_yaml(cfg: PlatformConfig) -> str:
    """`dagster.yaml`. Local: Postgres storage (runs, events, schedules, sensor cursors); compute logs stay
    Dagster's default, files under `<state>/dagster_home/storage`. k3s: files in the state directory until the
    instance moves into the cluster."""
    config: dict[str, object] = {"telemetry": {"enabled": False}}
    if cfg.target == "local":
        storage = {
            "username": instance_role(cfg),
            "password": {"env": PASSWORD_ENV},
            "hostname": "127.0.0.1",
            "db_name": cfg.orchestrator.database,
            "port": cfg.services.postgres.port,
            "scheme": "postgresql+psycopg2",  # SQLAlchemy's default for postgresql:// is psycopg 3, not installed
        }
        config["storage"] = {"postgres": {"postgres_db": storage}}
    # runs stuck in STARTING or CANCELING (their launch died with a killed daemon) are failed after a timeout
    config["run_monitoring"] = {"enabled": True, "poll_interval_seconds": 30}
    header = "# Written by platformctl from platform.yaml (orchestrator.database); edits are overwritten.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def instance_file(state: StateDir) -> Path:
    return state.dagster_home / INSTANCE_FILE


def instance_env(cfg: PlatformConfig, state: StateDir, config_path: Path) -> dict[str, str]:
    """What every Dagster process of this stack needs in its environment to open the instance and the stack."""
    env = {"DAGSTER_HOME": str(state.dagster_home), CONFIG_ENV: str(config_path), STATE_DIR_ENV: str(state.root)}
    if cfg.target == "local":
        env[PASSWORD_ENV] = state.credentials.postgres_password(instance_role(cfg))
    return env


def write_instance_yaml(cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE) -> None:
    write_private(state.dagster_home / name, instance_yaml(cfg))


def load_instance(cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE) -> dg.DagsterInstance:
    """The instance (the caller disposes of it), with the password in this process's environment only while
    Dagster reads its config."""
    if cfg.target != "local":
        return dg.DagsterInstance.from_config(str(state.dagster_home), config_filename=name)
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = state.credentials.postgres_password(instance_role(cfg))
    try:
        return dg.DagsterInstance.from_config(str(state.dagster_home), config_filename=name)
    finally:
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


@contextmanager
def open_instance(cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE) -> Iterator[dg.DagsterInstance]:
    instance = load_instance(cfg, state, name)
    try:
        yield instance
    finally:
        instance.dispose()


def sqlite_history(state: StateDir) -> Path | None:
    """The run database of a state directory from before the instance moved to Postgres, if one is there."""
    runs = state.dagster_home / "history" / "runs.db"
    return runs if runs.exists() else None

"""The stack's Dagster instance: its `dagster.yaml`, stored in the platform's Postgres, and how to open it (its
storage section, the role and the password's variable: platform_core/dagster_storage.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml

from platform_core.cluster.kube_error import KubeError
from platform_core.cluster.render_storage import POSTGRES_PORT
from platform_core.config import PlatformConfig
from platform_core.dagster_storage import HOST_ENV, PASSWORD_ENV, PORT_ENV, instance_role, instance_storage
from platform_core.resource import recorded_endpoints, service_address
from platform_core.settings import CONFIG_ENV, STATE_DIR_ENV
from platform_core.state import StateDir
from platform_core.supervisor import write_private

# on the runs platformctl executes itself (the host's name): the cluster's run monitoring leaves them alone
WORKSTATION_RUN_TAG = "mlops-platform/workstation"
DAGSTER_ENDPOINT = "dagster"  # the in-cluster webserver's entry in endpoints.json
INSTANCE_FILE = "dagster.yaml"


def storage_errors() -> tuple[type[Exception], ...]:
    """What opening the instance raises when its storage does not answer: Postgres down, or in the k3s target no
    way to the cluster's (no address recorded, the port-forward's API server gone). A function: the Postgres
    storage's modules (sqlalchemy, alembic) are a fifth of a second, and the code locations' definitions, which
    import this module, never open an instance while they load."""
    import psycopg2
    import sqlalchemy.exc
    from dagster_postgres.utils import DagsterPostgresException

    return (psycopg2.Error, sqlalchemy.exc.SQLAlchemyError, DagsterPostgresException, KubeError, OSError, RuntimeError)


def in_cluster_instance(cfg: PlatformConfig, state: StateDir) -> bool:
    """k3s: once the `dagster` asset deployed Dagster in the cluster (and recorded how to reach it), the
    workstation records its runs in that instance too: one history, in the cluster's Postgres (bootstrap.py)."""
    return cfg.target == "k3s" and DAGSTER_ENDPOINT in recorded_endpoints(state)


def instance_yaml(cfg: PlatformConfig, cluster_storage: bool = False) -> str:
    """`dagster.yaml`. Local: Postgres storage (runs, events, schedules, sensor cursors); compute logs stay
    Dagster's default, files under `<state>/dagster_home/storage`. k3s: with `cluster_storage`, the cluster's
    Postgres, reached as the platform reaches it (port-forward or LoadBalancer, known only when a process opens
    it, hence from the environment); without, files in the state directory."""
    config: dict[str, object] = {"telemetry": {"enabled": False}}
    if cfg.target == "local":
        config |= instance_storage(cfg, "127.0.0.1", cfg.services.postgres.port)
    elif cluster_storage:
        config |= instance_storage(cfg, {"env": HOST_ENV}, {"env": PORT_ENV})
    # runs stuck in STARTING or CANCELING (their launch died with a killed daemon) are failed after a timeout
    config["run_monitoring"] = {"enabled": True, "poll_interval_seconds": 30}
    header = "# Written by platformctl from platform.yaml (orchestrator.database); edits are overwritten.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def instance_file(state: StateDir, name: str = INSTANCE_FILE) -> Path:
    return state.dagster_home / name


def in_postgres(state: StateDir, name: str = INSTANCE_FILE) -> bool:
    """Whether the instance file names Postgres storage (else Dagster's sqlite files in the state directory)."""
    path = instance_file(state, name)
    return path.exists() and "postgres_db" in path.read_text()


def storage_env(cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE) -> dict[str, str]:
    """What the instance's storage needs from the environment: the role's password, and in the k3s target where
    the cluster's Postgres answers for this process (opening the port-forward)."""
    if cfg.target == "local":
        return {PASSWORD_ENV: state.credentials.postgres_password(instance_role(cfg))}
    if not in_postgres(state, name):
        return {}
    host, port = service_address(cfg, state, "postgres", POSTGRES_PORT)
    password = state.credentials.postgres_password(instance_role(cfg))
    return {PASSWORD_ENV: password, HOST_ENV: host, PORT_ENV: str(port)}


def instance_env(cfg: PlatformConfig, state: StateDir, config_path: Path) -> dict[str, str]:
    """What every Dagster process of this stack needs in its environment to open the instance and the stack."""
    env = {"DAGSTER_HOME": str(state.dagster_home), CONFIG_ENV: str(config_path), STATE_DIR_ENV: str(state.root)}
    return env | storage_env(cfg, state)


def write_instance_yaml(
    cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE, cluster_storage: bool = False
) -> None:
    write_private(state.dagster_home / name, instance_yaml(cfg, cluster_storage))


def load_instance(cfg: PlatformConfig, state: StateDir, name: str = INSTANCE_FILE) -> dg.DagsterInstance:
    """The instance (the caller disposes of it), with the storage's password (and address) in this process's
    environment only while Dagster reads its config."""
    env = storage_env(cfg, state, name)
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return dg.DagsterInstance.from_config(str(state.dagster_home), config_filename=name)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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

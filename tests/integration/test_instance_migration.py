"""A state directory from before the Dagster instance moved to Postgres: its sqlite history (runs, events, the
sensors' cursors) is copied into the platform's Postgres (the bootstrap every `platformctl` command runs first does
this; e2e runs it whole), so an upgraded stack neither loses its history nor alerts twice."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

# No public way to write a sensor's stored state but the daemon's own types: the daemon writes exactly these.
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)

from platform_core.orchestrator.bootstrap import MIGRATING, legacy_sqlite_instance, migrate_sqlite
from platform_core.orchestrator.instance import instance_file, open_instance, sqlite_history, write_instance_yaml
from platform_core.state import StateDir, load_platform

pytestmark = pytest.mark.integration
CURSOR = '{"service_down:postgres": {"onset": 1.0, "subject": "postgres"}}'


def _sensor_origin() -> RemoteInstigatorOrigin:
    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("platform_assets"), "__repository__")
    return RemoteInstigatorOrigin(repository, "infra_drift_sensor")


def _seed(state: StateDir) -> str:
    """The sqlite instance an older platformctl left: one materialization and a sensor with a cursor."""
    home = state.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    instance_file(state).write_text("telemetry:\n  enabled: false\n")

    @dg.asset(name="before_the_move")
    def before() -> None:
        return None

    with dg.DagsterInstance.from_config(str(home)) as old:
        run_id = dg.materialize([before], instance=old).run_id
        data = SensorInstigatorData(cursor=CURSOR)
        old.add_instigator_state(
            InstigatorState(_sensor_origin(), InstigatorType.SENSOR, InstigatorStatus.RUNNING, data)
        )
    return run_id


def test_the_sqlite_history_moves_into_postgres_once(stack, tmp_path: Path) -> None:
    """Into the stack's own Postgres (its platform_up made the `dagster` database and role), from a state
    directory of its own holding the stack's credentials: the stack's services are not touched."""
    cfg, _ = load_platform(stack.config_path)
    state = StateDir(tmp_path / "upgraded")
    state.ensure()
    state.secrets_file.write_text(stack.resource("postgres_resource").state.secrets_file.read_text())
    run_id = _seed(state)

    old = legacy_sqlite_instance(state)
    assert old is not None, "the seeded state directory does not read as an sqlite instance"
    try:
        write_instance_yaml(cfg, state, MIGRATING)
        line = migrate_sqlite(cfg, state, old)
    finally:
        old.dispose()
    assert line.startswith("instance moved from sqlite to postgres: 1 runs with"), line
    assert sqlite_history(state) is None  # moved aside, kept
    assert list(state.dagster_home.glob("sqlite-before-postgres-*/history/runs.db"))
    origin = _sensor_origin()
    with open_instance(cfg, state, MIGRATING) as new:
        assert new.get_run_by_id(run_id) is not None
        assert new.fetch_materializations(dg.AssetKey("before_the_move"), limit=1).records
        moved = new.get_instigator_state(origin.get_id(), origin.get_selector().get_id())
    assert moved is not None and moved.instigator_data.cursor == CURSOR  # type: ignore[union-attr]

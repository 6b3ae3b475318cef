"""Before any Dagster run of the stack can be recorded, the instance's storage must be up: Postgres, its
`orchestrator.database` and role, and `dagster.yaml` pointing at them. `platformctl` does this first, in process,
with the same functions the `postgres` and `postgres_databases` assets use (they then report "no change").

A state directory from before the instance moved to Postgres holds its history in sqlite: its runs, their event
logs (materializations, check results) and the sensors' and schedules' cursors are copied into Postgres once, and
the sqlite files are kept aside, so no alert fires twice and no history is lost.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dagster as dg
import psycopg2

from platform_core.config import PlatformConfig
from platform_core.orchestrator.instance import instance_file, open_instance, sqlite_history, write_instance_yaml
from platform_core.results import change_text
from platform_core.services.postgres import PostgresResource
from platform_core.state import StateDir
from platform_core.supervisor import ServiceStartError


class BootstrapError(RuntimeError):
    """The instance's storage could not be brought up: one line naming what failed."""


def bootstrap_instance(cfg: PlatformConfig, state: StateDir, config_path: Path) -> list[str]:
    """Make the instance's storage ready; returns what changed, a line each (nothing when nothing did)."""
    lines: list[str] = []
    if cfg.target == "local":
        lines += _storage_up(cfg, state, config_path)
    old = _sqlite_instance(state) if cfg.target == "local" else None
    if old is None:
        write_instance_yaml(cfg, state)
        return lines
    try:
        write_instance_yaml(cfg, state)
        lines.append(migrate_sqlite(cfg, state, old))
    finally:
        old.dispose()
    return lines


def _sqlite_instance(state: StateDir) -> dg.DagsterInstance | None:
    """The instance as its dagster.yaml still has it, when that predates the move to Postgres (sqlite)."""
    current = instance_file(state).read_text() if instance_file(state).exists() else ""
    if sqlite_history(state) is None or "postgres_db" in current:
        return None
    return dg.DagsterInstance.from_config(str(state.dagster_home))


def _storage_up(cfg: PlatformConfig, state: StateDir, config_path: Path) -> list[str]:
    postgres = PostgresResource(config_path=str(config_path), state_dir=str(state.root))
    database = next(db for db in cfg.databases if db.name == cfg.orchestrator.database)
    try:
        result, _ = postgres.ensure_server()
        change = postgres.ensure_database(database)
    except (ServiceStartError, psycopg2.Error) as err:
        raise BootstrapError(f"the Dagster instance's storage (postgres) did not come up: {err}") from err
    lines = [f"instance storage: postgres {change_text(result)}"] if result.action != "unchanged" else []
    return lines + [f"instance storage: database {database.name}: {'; '.join(change.changes)}"] * bool(change.changes)


def migrate_sqlite(cfg: PlatformConfig, state: StateDir, old: dg.DagsterInstance) -> str:
    """Copy the sqlite instance's runs, events and instigator states (sensor cursors) into Postgres, then move its
    databases aside. A run already in Postgres is skipped, so a migration cut short resumes where it stopped."""
    runs = events = 0
    with open_instance(cfg, state) as new:
        for run in reversed(old.get_runs()):  # oldest first: the newest run stays the newest
            if new.has_run(run.run_id):
                continue
            _copy_snapshots(old, new, run)
            new.add_run(run)
            for entry in old.all_logs(run.run_id):
                new.store_event(entry)
                events += 1
            runs += 1
        for instigator in old.all_instigator_state():
            if new.get_instigator_state(instigator.instigator_origin_id, instigator.selector_id) is None:
                new.add_instigator_state(instigator)
    home = state.dagster_home
    kept = home / f"sqlite-before-postgres-{time.strftime('%Y%m%d%H%M%S')}"
    (kept / "storage").mkdir(parents=True)
    moved = [home / "history", home / "schedules", *(home / "storage").glob("*.db*")]  # compute logs stay
    for path in (p for p in moved if p.exists()):
        shutil.move(str(path), str(kept / path.relative_to(home)))
    return (
        f"instance moved from sqlite to postgres: {runs} runs with {events} events and the sensor cursors "
        f"copied; the sqlite databases are kept in {kept}"
    )


def _copy_snapshots(old: dg.DagsterInstance, new: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """A run refers to its job's snapshot (and that one to its parent's) and its execution plan's by id."""
    job_ids = [run.job_snapshot_id] if run.job_snapshot_id else []
    if job_ids and (lineage := old.get_job_snapshot(job_ids[0]).lineage_snapshot) is not None:
        job_ids.append(lineage.parent_snapshot_id)
    for snapshot_id in job_ids:
        if not new.has_job_snapshot(snapshot_id):
            new.add_snapshot(old.get_job_snapshot(snapshot_id))
    plan_id = run.execution_plan_snapshot_id
    if plan_id and not new.has_snapshot(plan_id):
        new.add_snapshot(old.get_execution_plan_snapshot(plan_id))

"""Before any Dagster run of the stack can be recorded, the instance's storage must be up: Postgres, its
`orchestrator.database` and role, and `dagster.yaml` pointing at them. `platformctl` does this first, in process,
with the same functions the `postgres` and `postgres_databases` assets use (they then report "no change").

A state directory from before the instance moved to Postgres holds its history in sqlite: its runs, their event
logs (materializations, check results) and the sensors' and schedules' cursors are copied into Postgres once, and
the sqlite files are kept aside, so no alert fires twice and no history is lost.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg2
import sqlalchemy.exc
from dagster import DagsterError

from platform_core.cluster.kube_error import KubeError
from platform_core.config import PlatformConfig
from platform_core.orchestrator.instance import (
    in_cluster_instance,
    in_postgres,
    open_instance,
    sqlite_history,
    write_instance_yaml,
)
from platform_core.orchestrator.services import DagsterResource
from platform_core.redact import redact
from platform_core.results import change_text
from platform_core.services.postgres import PostgresResource
from platform_core.state import StateDir
from platform_core.supervisor import ServiceStartError


class BootstrapError(RuntimeError):
    """The instance's storage could not be brought up: one line naming what failed."""


MIGRATING = ".dagster-postgres.yaml"  # the Postgres instance's config while the sqlite one is copied into it


def bootstrap_instance(
    cfg: PlatformConfig, state: StateDir, config_path: Path, restarts_orchestrator: bool
) -> list[str]:
    """Make the instance's storage ready; returns what changed, a line each (nothing when nothing did).
    `restarts_orchestrator`: the command's last step starts the webserver, daemon and watchdog again."""
    if cfg.target != "local":
        return _cluster_instance(cfg, state, config_path)
    lines = _storage_up(cfg, state, config_path)
    if restarts_orchestrator:
        lines += _pause_stale_orchestrator(DagsterResource(config_path=str(config_path), state_dir=str(state.root)))
    return lines + _adopt_postgres(cfg, state)


def _adopt_postgres(cfg: PlatformConfig, state: StateDir, cluster_storage: bool = False) -> list[str]:
    """Point dagster.yaml at Postgres, copying a sqlite history into it first (once)."""
    lines = []
    old = legacy_sqlite_instance(state)
    if old is not None:
        try:
            write_instance_yaml(cfg, state, MIGRATING, cluster_storage)
            lines.append(migrate_sqlite(cfg, state, old))
        except (DagsterError, psycopg2.Error, sqlalchemy.exc.SQLAlchemyError, OSError) as err:
            msg = f"copying the sqlite instance into postgres failed, nothing lost (the next run resumes): {err}"
            raise BootstrapError(" ".join(msg.split())) from err
        finally:
            old.dispose()
            (state.dagster_home / MIGRATING).unlink(missing_ok=True)
    # only now: until the copy is whole, dagster.yaml still names the sqlite one
    write_instance_yaml(cfg, state, cluster_storage=cluster_storage)
    return lines


def _cluster_instance(cfg: PlatformConfig, state: StateDir, config_path: Path) -> list[str]:
    """k3s: the state directory's sqlite instance until Dagster runs in the cluster; from then on the cluster's
    instance, with what was recorded here before copied into it, so there is one history. While the cluster's
    Postgres does not answer (a cluster being rebuilt), this command records here again, copied in later."""
    if not in_cluster_instance(cfg, state):
        write_instance_yaml(cfg, state)
        return []
    postgres = PostgresResource(config_path=str(config_path), state_dir=str(state.root))
    database = next(db for db in cfg.databases if db.name == cfg.orchestrator.database)
    try:
        # as the superuser, through the same way in: a rotated role password is set before the role logs in
        change = postgres.ensure_database(database)
    except (psycopg2.Error, RuntimeError, OSError, KubeError) as err:
        reason = redact(" ".join(str(err).split()))
        if "authentication failed" in reason:  # it answers, and refuses: recording elsewhere would hide that
            raise BootstrapError(f"the cluster's Postgres refused the platform's superuser: {reason}") from err
        write_instance_yaml(cfg, state)
        return [
            f"instance: the cluster's Postgres does not answer ({reason}); this command records in "
            f"{state.dagster_home}, copied into the cluster's instance once it answers"
        ]
    lines = [f"instance storage: database {database.name}: {'; '.join(change.changes)}"] if change.changes else []
    return lines + _adopt_postgres(cfg, state, cluster_storage=True)


def legacy_sqlite_instance(state: StateDir) -> dg.DagsterInstance | None:
    """The instance as its dagster.yaml still has it, when that predates the move to Postgres (sqlite)."""
    if sqlite_history(state) is None or in_postgres(state):
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
    lines = [] if result.action == "unchanged" else [f"instance storage: postgres {change_text(result)}"]
    if change.changes:
        lines.append(f"instance storage: database {database.name}: {'; '.join(change.changes)}")
    return lines


def _pause_stale_orchestrator(dagster: DagsterResource) -> list[str]:
    """A webserver or daemon whose config changed (a rotated password) fails every call until the last step
    restarts it, and the watchdog would restart it meanwhile: stop it on purpose now, the last step starts it."""
    supervisor, lines = dagster.supervisor, []
    for spec in (dagster.watchdog_spec(), dagster.daemon_spec(), dagster.webserver_spec()):
        status = supervisor.status(spec.name)
        if status.running and status.config_hash != spec.config_hash:
            supervisor.stop(spec.name, spec.stop_signal, spec.stop_timeout)
            lines.append(f"orchestrator: stopped {spec.name} until the last step starts it (its config changed)")
    return lines


def migrate_sqlite(cfg: PlatformConfig, state: StateDir, old: dg.DagsterInstance) -> str:
    """Copy the sqlite instance's runs (with their creation times), events and instigator states (sensor
    cursors) into Postgres, then move its databases aside. A run copied whole is skipped and one cut short is
    copied again, so a migration that failed midway resumes."""
    runs = events = 0
    with open_instance(cfg, state, MIGRATING) as new:
        for record in reversed(old.get_run_records()):  # oldest first: the newest run stays the newest
            copied = _copy_run(old, new, record)
            runs, events = runs + (copied is not None), events + (copied or 0)
        for instigator in old.all_instigator_state():
            if new.get_instigator_state(instigator.instigator_origin_id, instigator.selector_id) is None:
                new.add_instigator_state(instigator)
    home = state.dagster_home
    # k3s moves a history twice in a second when the cluster's Postgres comes back at once: never the same folder
    kept = Path(tempfile.mkdtemp(prefix=f"sqlite-before-postgres-{time.strftime('%Y%m%d%H%M%S')}-", dir=home))
    (kept / "storage").mkdir()
    moved = [home / "history", home / "schedules", *(home / "storage").glob("*.db*")]  # compute logs stay
    for path in (p for p in moved if p.exists()):
        shutil.move(str(path), str(kept / path.relative_to(home)))
    return (
        f"instance moved from sqlite to postgres: {runs} runs with {events} events and the sensor cursors "
        f"copied; the sqlite databases are kept in {kept}"
    )


def _copy_run(old: dg.DagsterInstance, new: dg.DagsterInstance, record: dg.RunRecord) -> int | None:
    """The run and its events, unless already copied whole (None); returns how many events were copied."""
    run, entries = record.dagster_run, old.all_logs(record.dagster_run.run_id)
    if new.has_run(run.run_id):
        whole = len(entries) + (not run.is_finished)  # an unfinished one got its failure when copied
        if len(new.all_logs(run.run_id)) == whole:
            return None
        new.delete_run(run.run_id)  # cut short by a failed migration: again, whole
    _copy_snapshots(old, new, run)
    new.run_storage.add_historical_run(run, record.create_timestamp)
    for entry in entries:
        new.store_event(entry)
    copied = new.get_run_by_id(run.run_id)
    if copied is not None and not copied.is_finished:  # its process is gone; STARTED, it would hold a queue slot
        new.report_run_failed(copied, "copied unfinished from the state directory: the process running it is gone")
    return len(entries)


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

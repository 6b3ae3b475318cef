"""The Dagster instance's storage as platform.yaml describes it: its database's role, dagster-postgres's
`postgres_db` section, and the environment variables it reads. Both the local instance (orchestrator/instance.py)
and the in-cluster one (cluster/render_dagster.py) are written from here.

The role's password reaches Dagster only through the environment (`{env: DAGSTER_PG_PASSWORD}`): the UI shows the
instance's configuration, so a password written into `dagster.yaml` would be on a web page.
"""

from __future__ import annotations

from platform_core.config import PlatformConfig

PASSWORD_ENV = "DAGSTER_PG_PASSWORD"
# the event log that remembers its schema (orchestrator/event_log_storage.py); named, not imported: this module
# is read where dagster-postgres is not loaded
EVENT_LOG_STORAGE = ("platform_core.orchestrator.event_log_storage", "SchemaCachingEventLogStorage")
HOST_ENV, PORT_ENV = "DAGSTER_PG_HOST", "DAGSTER_PG_PORT"  # k3s workstation: where the cluster's Postgres answers


def instance_role(cfg: PlatformConfig) -> str:
    return next(db.owner for db in cfg.databases if db.name == cfg.orchestrator.database)


def postgres_storage(
    cfg: PlatformConfig, hostname: str | dict[str, str], port: int | dict[str, str]
) -> dict[str, object]:
    """dagster-postgres's `postgres_db`: the orchestrator's database and role, the password from the environment."""
    return {
        "username": instance_role(cfg),
        "password": {"env": PASSWORD_ENV},
        "hostname": hostname,
        "db_name": cfg.orchestrator.database,
        "port": port,
        "scheme": "postgresql+psycopg2",  # SQLAlchemy's default for postgresql:// is psycopg 3, not installed
        # A run writes each event in a transaction of its own (~1,300 commits in a no-op `make up`), each waiting for
        # its WAL flush. Off, for the instance's connections only (runs, events, sensor cursors): a crash of Postgres
        # or the host may lose their last ~0.6 s of writes (3 x wal_writer_delay), never consistency (Postgres docs,
        # "Asynchronous Commit"); a run whose last events were lost shows as still started.
        # No-op `up` 6.0 -> 5.4 s (farm-bench, median of 7).
        "params": {"options": "-c synchronous_commit=off"},
    }


def instance_storage(
    cfg: PlatformConfig, hostname: str | dict[str, str], port: int | dict[str, str]
) -> dict[str, object]:
    """`dagster.yaml`'s storage sections, each in Postgres: runs and schedules as dagster-postgres has them, the
    event log as `EVENT_LOG_STORAGE` (Dagster's `storage: postgres:` shorthand cannot name another class)."""
    classes = {
        "run_storage": ("dagster_postgres.run_storage", "PostgresRunStorage"),
        "event_log_storage": EVENT_LOG_STORAGE,
        "schedule_storage": ("dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
    }
    # a section each (not one shared dict, which YAML would write as an anchor and aliases)
    return {
        section: {"module": module, "class": name, "config": {"postgres_db": postgres_storage(cfg, hostname, port)}}
        for section, (module, name) in classes.items()
    }

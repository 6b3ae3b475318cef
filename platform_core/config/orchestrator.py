"""The orchestrator's own settings: where the Dagster instance keeps its runs, events and sensor cursors, and how
often the watchdog (the one thing that does not depend on Dagster) looks at it."""

from __future__ import annotations

from pydantic import Field

from platform_core.config.base import Port, _Model


class DagsterService(_Model):
    """The Dagster webserver (the UI and its GraphQL API) and one gRPC code server per code location, which the
    webserver and the daemon share, on 127.0.0.1 like every local service."""

    webserver_port: Port = 3000
    platform_code_port: Port = 4000  # the platform_assets location's code server
    ml_code_port: Port = 4001  # the ml_assets location's


class OrchestratorConfig(_Model):
    # Runs, event logs, schedules and sensor cursors live in this database of the platform's Postgres, so the
    # daemon, the webserver and every `platformctl`/CLI run share one instance safely (sqlite does not).
    database: str = "dagster"
    # The watchdog restarts Postgres (the instance's storage) and the daemon when they die: nothing inside Dagster
    # can notice that Dagster itself has stopped.
    watchdog_seconds: int = Field(10, strict=True, ge=2, le=300)

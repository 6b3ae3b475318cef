"""Who watches the watcher: a small loop outside Dagster that keeps the orchestrator's own footing.

Every alert of the platform comes from sensors that the dagster-daemon evaluates against the instance in Postgres.
When Postgres or the daemon dies, no sensor can say so. The watchdog probes them (and the webserver) every
`orchestrator.watchdog_seconds`, restarts what died through the same supervisor `make up` uses, and alerts
through the same alerts resource: one alert when a finding appears, one when it clears (cursor in a file, so a
restarted watchdog repeats nothing). Everything else stays the sensors' job.

Run as the supervised service `watchdog` (`python -m platform_core.watchdog`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from platform_core.alerting.alerts import AlertsResource
from platform_core.alerting.findings import Finding, track
from platform_core.alerting.service_drift import credentials_finding
from platform_core.catalog import SERVICE_ASSETS
from platform_core.orchestrator.services import CODE_SERVERS, WATCHDOG_BEAT, DagsterResource
from platform_core.redact import redact
from platform_core.services.postgres import PostgresResource
from platform_core.settings import config_path
from platform_core.state import StateDir, load_platform
from platform_core.supervisor import ServiceSpec, ServiceStartError, write_private
from platform_core.targets import build_resources

log = logging.getLogger("platform.watchdog")
RESTARTED = "restarted by the watchdog"
UNHEALTHY_ROUNDS = 3  # a running service failing its probe this many rounds in a row is restarted


@dataclass
class Watched:
    """One service the watchdog keeps: its spec, and how to (re)start it."""

    asset: str
    spec: Callable[[], ServiceSpec]
    heal: Callable[[], str]  # (re)starts it if it is not running and healthy; the supervisor's action
    failed_rounds: int = 0


def beat_file(state: StateDir) -> Path:
    return state.run / WATCHDOG_BEAT


def cursor_file(state: StateDir) -> Path:
    return state.run / "watchdog-cursor.json"


class Watchdog:
    def __init__(self, postgres: PostgresResource, dagster: DagsterResource, alerts: AlertsResource) -> None:
        self.supervisor, self.state, self.alerts = postgres.supervisor, postgres.state, alerts
        ensure = self.supervisor.ensure
        self.watched = [  # the instance's storage first: nothing else can be judged while it is down
            Watched("postgres", postgres.service_spec, lambda: postgres.ensure_server()[0].action),
            *(self._code_server(dagster, location) for location in CODE_SERVERS),  # what the two below load
            Watched("dagster_daemon", dagster.daemon_spec, lambda: ensure(dagster.daemon_spec()).action),
            Watched("dagster_webserver", dagster.webserver_spec, lambda: ensure(dagster.webserver_spec()).action),
        ]

    def _code_server(self, dagster: DagsterResource, location: str) -> Watched:
        def spec() -> ServiceSpec:
            return next(s for s in dagster.code_server_specs() if s.name == CODE_SERVERS[location])

        # named by its asset, as the drift findings on the same process are (catalog.SERVICE_ASSETS)
        return Watched(SERVICE_ASSETS[CODE_SERVERS[location]], spec, lambda: self.supervisor.ensure(spec()).action)

    def round(self) -> list[Finding]:
        """Probe each watched service in order, restart the dead, alert on what appeared or cleared."""
        stale = credentials_finding(self.state)  # then every probe fails: restarting would only lock owners out
        findings = [stale] if stale else []
        for watched in [] if stale else self.watched:
            finding = self._look(watched)
            if finding is not None:
                findings.append(finding)
                if watched.asset == "postgres" and "restart failed" in finding.message:
                    break  # the daemon and webserver read the instance in Postgres: judge them once it is back
        cursor = cursor_file(self.state)
        sent, new_cursor = track(cursor.read_text() if cursor.exists() else None, findings, time.time(), "watchdog")
        for alert in sent:
            self.alerts.send(alert)
        write_private(cursor, new_cursor)
        beat = {"time": time.time(), "findings": [f.key for f in findings]}
        write_private(beat_file(self.state), json.dumps(beat))
        return findings

    def _look(self, watched: Watched) -> Finding | None:
        spec = watched.spec()
        state = self.supervisor.inspect(spec)
        if not state.status.deployed:
            return None  # never brought up, or stopped on purpose (`platformctl down`)
        if state.status.running and (state.healthy or state.status.starting(spec.start_timeout)):
            watched.failed_rounds = 0
            return None  # healthy, or a start (`make up`'s, say) still waiting for its first healthy probe
        watched.failed_rounds += 1
        if state.status.running and watched.failed_rounds < UNHEALTHY_ROUNDS:
            return None  # one failed probe under load is not yet an outage
        if not state.status.running:
            what = "is down (its process is gone)"
        else:
            what = (
                f"is stopped (pid {', '.join(map(str, state.stopped))}, SIGSTOP)" if state.stopped else "is unhealthy"
            )
        outcome = self._heal(watched)
        if outcome == "unchanged":
            watched.failed_rounds = 0
            return None  # healthy again by the time it was looked at twice (a run restarted it, say)
        watched.failed_rounds = 0 if outcome == RESTARTED else watched.failed_rounds
        return Finding(
            f"watchdog:{spec.name}",
            watched.asset,
            f"{spec.name} {what}",
            f"{outcome}; the sensors and schedules depend on it",
            inhibitable=False,
        )

    @staticmethod
    def _heal(watched: Watched, attempts: int = 3) -> str:
        """Restart, a few times: right after a kill -9 of Postgres its backends still hold the data directory
        for a moment ("lock file postmaster.pid already exists")."""
        failure: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(2.0)
            try:
                action = watched.heal()
                return "unchanged" if action == "unchanged" else RESTARTED
            except (ServiceStartError, OSError) as err:
                failure = err
        return f"restart failed: {failure}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    path = config_path()
    cfg, state = load_platform(path)
    where = {"config_path": str(path), "state_dir": str(state.root)}
    alerts = build_resources(cfg, state, path)["alerts"]
    assert isinstance(alerts, AlertsResource)
    dog = Watchdog(PostgresResource(**where), DagsterResource(**where), alerts)
    log.info(
        "watching postgres, the code servers, dagster_daemon and dagster_webserver every %ss",
        cfg.orchestrator.watchdog_seconds,
    )
    while True:
        started = time.monotonic()
        try:
            for finding in dog.round():
                log.warning("%s: %s", finding.title, finding.message)
        except Exception as err:  # one failed round (a lost credentials file, a full disk) must not end the watch
            log.error("round failed: %s", redact(" ".join(str(err).split())))
        time.sleep(max(0.0, cfg.orchestrator.watchdog_seconds - (time.monotonic() - started)))


if __name__ == "__main__":
    main()

"""The orchestrator on the platform it builds (local target): Dagster's webserver and daemon as supervised
services on the instance in the platform's Postgres, and the watchdog that restarts them (and Postgres) when
they die, since no sensor can notice that the daemon evaluating it has stopped."""

import time

import dagster as dg

from platform_assets.defs.orchestrator.in_cluster import in_cluster_definitions
from platform_assets.defs.storage.assets import postgres_databases
from platform_core.alerting.service_drift import spec_change
from platform_core.catalog import PLATFORM_OWNERS
from platform_core.config import PlatformConfig
from platform_core.decisions import decides
from platform_core.host.resource import HostResource
from platform_core.orchestrator.services import (
    WATCHDOG_STALE_ROUNDS,
    WATCHED_DAEMONS,
    DagsterResource,
    heartbeat_ages,
    unloaded_locations,
)
from platform_core.results import check_errors_fail, loopback_only, service_result
from platform_core.supervisor import ServiceSpec

GROUP = "orchestrator"
WEBSERVER, DAEMON, WATCHDOG = "dagster_webserver", "dagster_daemon", "orchestrator_watchdog"


def _ensure(dagster_resource: DagsterResource, spec: ServiceSpec, metadata: dict[str, object]) -> dg.MaterializeResult:
    supervisor = dagster_resource.supervisor
    if supervisor.inspect(spec).action == "restart":
        dagster_resource.refuse_self_restart(spec.name)  # a run launched by this very service
    return service_result(supervisor, spec.name, supervisor.ensure(spec), metadata)


@dg.asset(
    name=WEBSERVER,
    group_name=GROUP,
    kinds={"dagster"},
    owners=PLATFORM_OWNERS,
    deps=[postgres_databases],
    description="dagster-webserver (the UI and GraphQL API) on 127.0.0.1, on the instance in Postgres.",
)
def dagster_webserver(dagster_resource: DagsterResource) -> dg.MaterializeResult:
    return _ensure(
        dagster_resource, dagster_resource.webserver_spec(), {"url": dg.MetadataValue.url(dagster_resource.url)}
    )


@dg.asset(
    name=DAEMON,
    group_name=GROUP,
    kinds={"dagster"},
    owners=PLATFORM_OWNERS,
    deps=[postgres_databases, WEBSERVER],  # its sensors' first ticks judge a stack that is whole
    description="dagster-daemon: runs every sensor (drift, freshness, failed checks) and the health schedule.",
)
def dagster_daemon(dagster_resource: DagsterResource) -> dg.MaterializeResult:
    return _ensure(dagster_resource, dagster_resource.daemon_spec(), {"watched_daemons": ", ".join(WATCHED_DAEMONS)})


@dg.asset(
    name=WATCHDOG,
    group_name=GROUP,
    kinds={"python"},
    owners=PLATFORM_OWNERS,
    deps=[DAEMON, WEBSERVER],
    description="Restarts Postgres, the daemon and the webserver when they die, and alerts: outside Dagster.",
)
def orchestrator_watchdog(dagster_resource: DagsterResource) -> dg.MaterializeResult:
    interval = dagster_resource.cfg.orchestrator.watchdog_seconds
    return _ensure(dagster_resource, dagster_resource.watchdog_spec(), {"interval_seconds": interval})


@decides(WEBSERVER, reads=("postgres",), target="local", when_down=f"would start {WEBSERVER}")
def webserver_change(dagster_resource: DagsterResource, host_resource: HostResource) -> str:
    return spec_change(dagster_resource.supervisor, dagster_resource.webserver_spec(), host_resource)


@decides(DAEMON, reads=("postgres",), target="local", when_down=f"would start {DAEMON}")
def daemon_change(dagster_resource: DagsterResource, host_resource: HostResource) -> str:
    return spec_change(dagster_resource.supervisor, dagster_resource.daemon_spec(), host_resource)


@decides(WATCHDOG, reads=("postgres",), target="local", when_down=f"would start {WATCHDOG}")
def watchdog_change(dagster_resource: DagsterResource, host_resource: HostResource) -> str:
    return spec_change(dagster_resource.supervisor, dagster_resource.watchdog_spec(), host_resource)


@dg.asset_check(
    asset=WEBSERVER,
    blocking=True,
    description="The webserver answers a GraphQL query listing both code locations, loaded.",
)
@check_errors_fail
def webserver_serves_both_locations(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    listed, problems = unloaded_locations(dagster_resource.graphql())
    return dg.AssetCheckResult(
        passed=not problems, description="; ".join(problems) or f"locations {', '.join(listed)} loaded"
    )


@dg.asset_check(asset=WEBSERVER, blocking=True, description="The webserver listens on 127.0.0.1 only.")
@check_errors_fail
def webserver_loopback_only(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    return loopback_only(dagster_resource.supervisor, "dagster_webserver")


@dg.asset_check(
    asset=DAEMON,
    blocking=True,
    description="The sensor and schedule daemons' heartbeats in the instance are fresh, and the webserver says so.",
)
@check_errors_fail
def daemon_heartbeats_fresh(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    ages, stale = heartbeat_ages(dagster_resource.heartbeats(), time.time())
    problems = [f"{name} stale" for name in stale]
    # what the UI's daemon page shows: a daemon that is down is reported there too, not only here
    statuses = dagster_resource.graphql()["instance"]["daemonHealth"]["allDaemonStatuses"]  # type: ignore[index]
    unhealthy = [s["daemonType"] for s in statuses if s["daemonType"] in WATCHED_DAEMONS and not s["healthy"]]
    problems += [f"the webserver reports {name} unhealthy" for name in unhealthy]
    shown = ", ".join(f"{name} {age:.0f}s ago" for name, age in ages.items()) or "no heartbeat at all"
    return dg.AssetCheckResult(
        passed=not problems, description=f"heartbeats: {shown}" + "".join(f"; {p}" for p in problems)
    )


@dg.asset_check(asset=WATCHDOG, blocking=True, description="The watchdog completed a round within three intervals.")
@check_errors_fail
def watchdog_rounds_fresh(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    beat, age = dagster_resource.watchdog_beat(), dagster_resource.watchdog_round_age()
    fresh = age <= WATCHDOG_STALE_ROUNDS * dagster_resource.cfg.orchestrator.watchdog_seconds
    return dg.AssetCheckResult(
        passed=fresh, description=f"last round {age:.0f}s ago; findings then: {beat.get('findings') or 'none'}"
    )


def orchestrator_definitions(cfg: PlatformConfig) -> dg.Definitions:
    """Local: supervised processes. k3s: Argo CD deploys Dagster in the cluster (in_cluster.py)."""
    if cfg.target != "local":
        return in_cluster_definitions()
    return dg.Definitions(
        assets=[dagster_webserver, dagster_daemon, orchestrator_watchdog],
        asset_checks=[
            webserver_serves_both_locations,
            webserver_loopback_only,
            daemon_heartbeats_fresh,
            watchdog_rounds_fresh,
        ],
    )

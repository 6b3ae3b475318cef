"""The orchestrator on the platform it builds (local target): a gRPC code server per code location, Dagster's
webserver and daemon loading from them, as supervised services on the instance in the platform's Postgres, and
the watchdog that restarts them (and Postgres) when they die, since no sensor can notice that the daemon
evaluating it has stopped."""

import hashlib
import time
from collections.abc import Iterator

import dagster as dg

from platform_assets.defs.orchestrator.in_cluster import in_cluster_definitions
from platform_assets.defs.storage.assets import postgres_databases
from platform_core.alerting.service_drift import spec_change
from platform_core.catalog import PLATFORM_OWNERS
from platform_core.config import PlatformConfig
from platform_core.decisions import decides
from platform_core.host.resource import HostResource
from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG
from platform_core.orchestrator.services import CODE_SERVERS as CODE_SERVER_SERVICES
from platform_core.orchestrator.services import (
    LOCATIONS,
    WATCHDOG_STALE_ROUNDS,
    WATCHED_DAEMONS,
    DagsterResource,
    heartbeat_ages,
    unloaded_locations,
)
from platform_core.results import NO_CHANGE, change_text, check_errors_fail, loopback_only, service_result
from platform_core.supervisor import EnsureResult, ServiceSpec, Supervisor

GROUP = "orchestrator"
WEBSERVER, DAEMON, WATCHDOG = "dagster_webserver", "dagster_daemon", "orchestrator_watchdog"
CODE_SERVERS = "dagster_code_servers"
RUN_DRAIN_SECONDS = 600  # how long a code server's restart waits for the runs it carries
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


ORCHESTRATOR_SPECS = [
    dg.AssetSpec(
        CODE_SERVERS,
        group_name=GROUP,
        kinds={"dagster"},
        owners=PLATFORM_OWNERS,
        deps=[postgres_databases],
        description="One gRPC code server per code location (`dagster api grpc`), shared by the webserver and the "
        "daemon: each location's definitions load once, not in a fresh process of the daemon every minute.",
    ),
    dg.AssetSpec(
        WEBSERVER,
        group_name=GROUP,
        kinds={"dagster"},
        owners=PLATFORM_OWNERS,
        deps=[CODE_SERVERS],
        description="dagster-webserver (the UI and GraphQL API) on 127.0.0.1, on the instance in Postgres.",
    ),
    dg.AssetSpec(
        DAEMON,
        group_name=GROUP,
        kinds={"dagster"},
        owners=PLATFORM_OWNERS,
        deps=[CODE_SERVERS],
        description="dagster-daemon: runs every sensor (drift, freshness, failed checks) and the health schedule.",
    ),
    dg.AssetSpec(
        WATCHDOG,
        group_name=GROUP,
        kinds={"python"},
        owners=PLATFORM_OWNERS,
        deps=[DAEMON, WEBSERVER],
        description="Restarts Postgres, the code servers, the daemon and the webserver when they die, and alerts: "
        "outside Dagster.",
    ),
]


@dg.multi_asset(specs=ORCHESTRATOR_SPECS, can_subset=True, name="orchestrator_processes")
def orchestrator_processes(
    context: dg.AssetExecutionContext, dagster_resource: DagsterResource
) -> Iterator[dg.MaterializeResult]:
    """The selected processes, in two waves: the code servers, then the webserver, the daemon and the watchdog.
    Within a wave every process that must (re)start is spawned before the first is waited for: the webserver and
    the daemon each take seconds to start, and neither needs the other up (a sensor's tick meanwhile sees a
    service starting, not one down)."""
    supervisor, wanted = dagster_resource.supervisor, {key.to_user_string() for key in context.selected_asset_keys}
    for wave in _waves(dagster_resource, context.instance):
        services = [entry for entry in wave if entry[0] in wanted]
        restarting = [spec for _, spec, _ in services if supervisor.inspect(spec).action == "restart"]
        for spec in restarting:
            dagster_resource.refuse_self_restart(spec.name)  # a run launched under this very service
        if any(name == CODE_SERVERS and spec in restarting for name, spec, _ in services):
            _wait_for_launched_runs(context)
        results = supervisor.ensure_together([spec for _, spec, _ in services])
        yield from _results(supervisor, list(zip(services, results, strict=True)))


def _wait_for_launched_runs(context: dg.AssetExecutionContext) -> None:
    """Runs launched from the UI or by a sensor run as children of a code server: restarting it would kill them
    halfway. Wait for them to finish (runs `platformctl` executes itself are not a code server's)."""
    deadline = time.monotonic() + RUN_DRAIN_SECONDS
    while True:
        runs = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
        launched = [r.run_id for r in runs if r.run_id != context.run_id and WORKSTATION_RUN_TAG not in r.tags]
        if not launched:
            return
        if time.monotonic() > deadline:
            raise dg.Failure(
                f"{len(launched)} launched run(s) still in progress ({', '.join(i[:8] for i in launched)}): the code "
                "servers restart once they are done; run `make up` again then"
            )
        context.log.info(f"waiting for {len(launched)} launched run(s) before restarting the code servers")
        time.sleep(5)


def _waves(
    dagster_resource: DagsterResource, instance: dg.DagsterInstance
) -> list[list[tuple[str, ServiceSpec, dict[str, object]]]]:
    """(asset, one of its services, what its materialization shows), wave by wave; the daemon's health read from
    the run's `instance`."""
    interval = dagster_resource.cfg.orchestrator.watchdog_seconds
    ports = {name: dagster_resource.code_port(name) for name in LOCATIONS}
    return [
        [
            (CODE_SERVERS, spec, {"ports": dg.MetadataValue.json(ports)})
            for spec in dagster_resource.code_server_specs()
        ],
        [
            (WEBSERVER, dagster_resource.webserver_spec(), {"url": dg.MetadataValue.url(dagster_resource.url)}),
            (DAEMON, dagster_resource.daemon_spec(instance), {"watched_daemons": ", ".join(WATCHED_DAEMONS)}),
            (WATCHDOG, dagster_resource.watchdog_spec(), {"interval_seconds": interval}),
        ],
    ]


def _results(
    supervisor: Supervisor, results: list[tuple[tuple[str, ServiceSpec, dict[str, object]], EnsureResult]]
) -> Iterator[dg.MaterializeResult]:
    """One materialization per asset; an asset of several processes reports each one's change."""
    by_asset: dict[str, list[tuple[ServiceSpec, dict[str, object], EnsureResult]]] = {}
    for (name, spec, metadata), result in results:
        by_asset.setdefault(name, []).append((spec, metadata, result))
    for name, entries in by_asset.items():
        spec, metadata, result = entries[0]
        if len(entries) == 1:
            yield service_result(supervisor, spec.name, result, metadata, asset_key=name)
            continue
        texts = {s.name: change_text(r) for s, _, r in entries}
        # the same change for all (a first start) is said once; else each process that changed, by name
        same = len(set(texts.values())) == 1
        changes = [next(iter(texts.values()))] if same else [f"{n}: {t}" for n, t in texts.items() if t != NO_CHANGE]
        hashes = "+".join(r.config_hash for _, _, r in entries)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "change": "; ".join(changes),
                "pids": ", ".join(str(r.pid) for _, _, r in entries),
                **metadata,  # type: ignore[dict-item]
            },
            data_version=dg.DataVersion(hashlib.sha256(hashes.encode()).hexdigest()[:16]),
        )


@decides(CODE_SERVERS, reads=("postgres",), target="local", when_down=f"would start {CODE_SERVERS}")
def code_servers_change(dagster_resource: DagsterResource, host_resource: HostResource) -> str:
    changes = [
        spec_change(dagster_resource.supervisor, spec, host_resource) for spec in dagster_resource.code_server_specs()
    ]
    return "; ".join(change for change in changes if change != NO_CHANGE) or NO_CHANGE


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


@dg.asset_check(asset=CODE_SERVERS, blocking=True, description="Each code server listens on 127.0.0.1 only.")
@check_errors_fail
def code_servers_loopback_only(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    verdicts = [loopback_only(dagster_resource.supervisor, name) for name in CODE_SERVER_SERVICES.values()]
    return dg.AssetCheckResult(
        passed=all(v.passed for v in verdicts), description="; ".join(str(v.description) for v in verdicts)
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
def daemon_heartbeats_fresh(
    context: dg.AssetCheckExecutionContext, dagster_resource: DagsterResource
) -> dg.AssetCheckResult:
    ages, stale = heartbeat_ages(dagster_resource.heartbeats(context.instance), time.time())
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
        assets=[orchestrator_processes],
        asset_checks=[
            code_servers_loopback_only,
            webserver_serves_both_locations,
            webserver_loopback_only,
            daemon_heartbeats_fresh,
            watchdog_rounds_fresh,
        ],
    )

"""The orchestrator in the k3s target: Argo CD deploys Dagster's webserver, daemon and code servers from infra/
(platform_core/cluster/render_dagster.py), with the instance in the cluster's Postgres; from then on the daemon in
the cluster runs the sensors and schedules. Its checks ask the webserver, through the port-forward."""

import time

import dagster as dg

from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.orchestrator.services import HEARTBEAT_STALE_SECONDS, LOCATIONS, WATCHED_DAEMONS, DagsterResource
from platform_core.results import check_errors_fail

GROUP = "orchestrator"
DAGSTER = "dagster"

dagster_in_cluster = cluster_service_asset(
    cluster_spec(
        DAGSTER,
        GROUP,
        ["gitops", "postgres_databases"],
        "Dagster in the cluster (webserver, daemon, a gRPC code server per location) on the instance in the "
        "cluster's Postgres; runs are Kubernetes Jobs (K8sRunLauncher). Its UI is cluster-only unless "
        "k3s.exposure.dagster says lan.",
        ["dagster"],
    )
)


def daemon_problems(statuses: list[dict[str, object]], now: float) -> tuple[list[str], list[str]]:
    """(each watched daemon's heartbeat age, what is wrong) from the webserver's daemonHealth."""
    by_type = {str(s["daemonType"]): s for s in statuses}
    ages, problems = [], []
    for name in WATCHED_DAEMONS:
        status = by_type.get(name)
        beat = status.get("lastHeartbeatTime") if status else None
        if beat is None:
            problems.append(f"{name} never beat")
            continue
        age = now - float(beat)  # type: ignore[arg-type]
        ages.append(f"{name} {age:.0f}s ago")
        if not status or not status["healthy"] or age > HEARTBEAT_STALE_SECONDS:
            problems.append(f"{name} unhealthy")
    return ages, problems


@dg.asset_check(
    asset=DAGSTER,
    blocking=True,
    description="The in-cluster webserver answers GraphQL with both code locations loaded, and its sensor and "
    "schedule daemons' heartbeats are fresh.",
)
@check_errors_fail
def dagster_serves_and_daemon_beats(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    data = dagster_resource.graphql()
    entries = data["workspaceOrError"]["locationEntries"]  # type: ignore[index]
    loaded = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
    problems = [
        f"{name}: {loaded.get(name, 'missing')}" for name in LOCATIONS if loaded.get(name) != "RepositoryLocation"
    ]
    statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]  # type: ignore[index]
    ages, daemon = daemon_problems(statuses, time.time())
    shown = f"locations {', '.join(sorted(loaded))}; heartbeats: {', '.join(ages) or 'none'}"
    return dg.AssetCheckResult(passed=not problems + daemon, description="; ".join([shown, *problems, *daemon]))


def in_cluster_definitions() -> dg.Definitions:
    return dg.Definitions(assets=[dagster_in_cluster], asset_checks=[dagster_serves_and_daemon_beats])

"""The orchestrator in the k3s target: Argo CD deploys Dagster's webserver, daemon and code servers from infra/
(platform_core/cluster/render_dagster.py), with the instance in the cluster's Postgres; from then on the daemon in
the cluster runs the sensors and schedules. Its checks ask the webserver, through the port-forward."""

import time

import dagster as dg

from platform_core.cluster.reconcile import cluster_service_asset, cluster_spec
from platform_core.orchestrator.services import (
    CLUSTER_DAEMONS,
    DagsterResource,
    heartbeat_ages,
    unloaded_locations,
)
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
    """(each watched daemon's heartbeat age, what is wrong) from the webserver's daemonHealth: the same judgement
    as the local daemon's check, over the daemons a cluster deployment needs (runs are queued, then launched and
    watched as Jobs)."""
    beats = {str(s["daemonType"]): float(s["lastHeartbeatTime"]) for s in statuses if s.get("lastHeartbeatTime")}  # type: ignore[arg-type]
    ages, stale = heartbeat_ages(beats, now, CLUSTER_DAEMONS)
    unhealthy = {str(s["daemonType"]) for s in statuses if not s.get("healthy")}
    problems = [f"{name} {'never beat' if name not in ages else 'stale'}" for name in stale]
    problems += [f"{name} unhealthy" for name in CLUSTER_DAEMONS if name in unhealthy and name not in stale]
    return [f"{name} {age:.0f}s ago" for name, age in ages.items()], problems


@dg.asset_check(
    asset=DAGSTER,
    blocking=True,
    description="The in-cluster webserver answers GraphQL with both code locations loaded, and the sensor, "
    "schedule, run queue and run monitoring daemons' heartbeats are fresh.",
)
@check_errors_fail
def dagster_serves_and_daemon_beats(dagster_resource: DagsterResource) -> dg.AssetCheckResult:
    data = dagster_resource.graphql()
    listed, problems = unloaded_locations(data)
    statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]  # type: ignore[index]
    ages, daemon = daemon_problems(statuses, time.time())
    shown = f"locations {', '.join(listed)}; heartbeats: {', '.join(ages) or 'none'}"
    return dg.AssetCheckResult(passed=not problems + daemon, description="; ".join([shown, *problems, *daemon]))


def in_cluster_definitions() -> dg.Definitions:
    return dg.Definitions(assets=[dagster_in_cluster], asset_checks=[dagster_serves_and_daemon_beats])

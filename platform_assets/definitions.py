"""Code location `platform_assets`: the host, storage and tracking services of the platform, for the target
platform.yaml names (local processes, or a K3s cluster with Argo CD)."""

from pathlib import Path

import dagster as dg

from platform_assets.defs.cluster.assets import cluster_definitions
from platform_assets.defs.cluster.cluster_drift import cluster_drift_sensor
from platform_assets.defs.host.assets import host_definitions
from platform_assets.defs.monitoring.infra_drift import infra_drift_sensor
from platform_assets.defs.orchestrator.assets import GROUP as ORCHESTRATOR
from platform_assets.defs.orchestrator.assets import orchestrator_definitions
from platform_assets.defs.storage.assets import storage_definitions
from platform_assets.defs.tracking.assets import tracking_definitions
from platform_core.alerting.freshness_alerts import freshness_alert_sensor
from platform_core.alerting.lineage import publish as publish_lineage
from platform_core.alerting.sensors import check_failure_sensor
from platform_core.cluster.resource import HOST_ASSETS
from platform_core.config.base import config_errors_in_one_line
from platform_core.freshness import with_default_freshness
from platform_core.settings import config_path
from platform_core.source_links import with_code_links
from platform_core.state import load_platform
from platform_core.targets import build_resources


def health_schedule(job_name: str, window_minutes: int) -> dg.ScheduleDefinition:
    every = min(30, max(1, window_minutes // 2))
    return dg.ScheduleDefinition(
        name="platform_health",
        job_name=job_name,
        cron_schedule=f"*/{every} * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Re-materialize the platform every {every} min (freshness window {window_minutes} min).",
    )


def build_definitions(path: Path) -> dg.Definitions:
    config_errors_in_one_line()
    cfg, state = load_platform(path)
    # Not the orchestrator's own services: the health schedule launches this job from the daemon, and a run
    # cannot restart the process it runs under (`platformctl up` brings those up, last).
    # k3s: the daemon runs in the cluster, whose pods do not reach the host (the workstation does that part)
    from_workstation = HOST_ASSETS if cfg.target == "k3s" else ()
    platform_up = dg.define_asset_job(
        "platform_up",
        selection=dg.AssetSelection.all()
        - dg.AssetSelection.groups(ORCHESTRATOR)
        - dg.AssetSelection.assets(*from_workstation),
        description="Bring up (or heal) every platform service.",
    )
    # each domain picks its own assets for the target
    domains = [
        host_definitions(cfg),
        storage_definitions(cfg),
        tracking_definitions(cfg),
        cluster_definitions(cfg),
        orchestrator_definitions(cfg),
    ]
    drift = [cluster_drift_sensor] if cfg.target == "k3s" else [infra_drift_sensor]
    common = dg.Definitions(
        jobs=[platform_up],
        # Platform health has a cadence shorter than its freshness window: an idempotent pass reports
        # "no change" and keeps the assets fresh, so a stale alert means the pass itself failed.
        schedules=[health_schedule(platform_up.name, cfg.freshness.platform_minutes)],
        sensors=[*drift, check_failure_sensor, freshness_alert_sensor],
        resources=build_resources(cfg, state, path),
        # Services are long-lived processes; one step process per asset would only add start-up cost.
        executor=dg.in_process_executor,
    )
    defs = with_default_freshness(
        with_code_links(dg.Definitions.merge(*domains, common)),
        cfg.freshness.platform_minutes,
        except_assets=from_workstation,
    )
    publish_lineage(state.lineage, "platform_assets", defs)
    return defs


defs = build_definitions(config_path())

"""Code location `platform_assets`: the host, storage and tracking services of the platform, for the target
platform.yaml names (local processes, or a K3s cluster with Argo CD)."""

from pathlib import Path

import dagster as dg

from platform_assets.defs.cluster.assets import CLUSTER_CHECKS, build_cluster_assets, mlflow_server_asset
from platform_assets.defs.cluster.cluster_drift import cluster_drift_sensor
from platform_assets.defs.host.assets import config_valid, disk_space, host, ports_available
from platform_assets.defs.monitoring.infra_drift import infra_drift_sensor
from platform_assets.defs.storage.assets import local_storage, shared_storage
from platform_assets.defs.tracking.assets import build_mlflow_server_asset, mlflow_loopback_only, mlflow_round_trip
from platform_core.alerting.freshness_alerts import freshness_alert_sensor
from platform_core.alerting.lineage import publish as publish_lineage
from platform_core.alerting.sensors import check_failure_sensor
from platform_core.config import PlatformConfig
from platform_core.config.base import config_errors_in_one_line
from platform_core.freshness import with_default_freshness
from platform_core.settings import config_path
from platform_core.source_links import with_code_links
from platform_core.state import load_platform
from platform_core.targets import build_resources


def local_platform(cfg: PlatformConfig) -> dg.Definitions:
    """Assets, checks and drift sensor of the local target: supervised processes on this machine."""
    tracking = dg.Definitions(
        assets=[host, build_mlflow_server_asset(cfg.mlflow.artifact_bucket)],
        asset_checks=[ports_available, disk_space, config_valid, mlflow_round_trip, mlflow_loopback_only],
        sensors=[infra_drift_sensor],
    )
    return dg.Definitions.merge(local_storage(cfg), tracking)


def k3s_platform(cfg: PlatformConfig) -> dg.Definitions:
    """The k3s target: host, K3s, MetalLB, Argo CD and the services it deploys, with the same function checks."""
    cluster = dg.Definitions(
        assets=[*build_cluster_assets(), mlflow_server_asset(cfg.mlflow.artifact_bucket)],
        asset_checks=[*CLUSTER_CHECKS, mlflow_round_trip],
        sensors=[cluster_drift_sensor],
    )
    return dg.Definitions.merge(cluster, shared_storage(cfg))


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
    platform_up = dg.define_asset_job(
        "platform_up", selection=dg.AssetSelection.all(), description="Bring up (or heal) every platform service."
    )
    target = (k3s_platform if cfg.target == "k3s" else local_platform)(cfg)
    common = dg.Definitions(
        jobs=[platform_up],
        # Platform health has a cadence shorter than its freshness window: an idempotent pass reports
        # "no change" and keeps the assets fresh, so a stale alert means the pass itself failed.
        schedules=[health_schedule(platform_up.name, cfg.freshness.platform_minutes)],
        sensors=[check_failure_sensor, freshness_alert_sensor],
        resources=build_resources(cfg, state, path),
        # Services are long-lived processes; one step process per asset would only add start-up cost.
        executor=dg.in_process_executor,
    )
    defs = with_default_freshness(with_code_links(dg.Definitions.merge(target, common)), cfg.freshness.platform_minutes)
    publish_lineage(state.lineage, "platform_assets", defs)
    return defs


defs = build_definitions(config_path())

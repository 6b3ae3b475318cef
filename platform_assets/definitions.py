"""Code location `platform_assets`: the host, storage and tracking services of the platform."""

from pathlib import Path

import dagster as dg

from platform_assets.drift.freshness_alerts import freshness_alert_sensor
from platform_assets.drift.sensors import check_failure_sensor, infra_drift_sensor
from platform_assets.freshness import with_default_freshness
from platform_assets.host.assets import config_valid, disk_space, host, ports_available
from platform_assets.resources import build_resources
from platform_assets.settings import config_path
from platform_assets.state import load_platform
from platform_assets.storage.assets import build_storage_definitions
from platform_assets.tracking.assets import build_mlflow_server_asset, mlflow_loopback_only, mlflow_round_trip


def build_definitions(path: Path) -> dg.Definitions:
    cfg, state = load_platform(path)
    storage_assets, storage_checks = build_storage_definitions(cfg)
    return with_default_freshness(
        dg.Definitions(
            assets=[host, *storage_assets, build_mlflow_server_asset(cfg.mlflow.artifact_bucket)],
            asset_checks=[
                ports_available,
                disk_space,
                config_valid,
                *storage_checks,
                mlflow_round_trip,
                mlflow_loopback_only,
            ],
            jobs=[
                dg.define_asset_job(
                    "platform_up",
                    selection=dg.AssetSelection.all(),
                    description="Bring up (or heal) every platform service.",
                )
            ],
            sensors=[infra_drift_sensor, check_failure_sensor, freshness_alert_sensor],
            resources=build_resources(cfg, state, path),
            # Services are long-lived processes; one step process per asset would only add start-up cost.
            executor=dg.in_process_executor,
        ),
        cfg.freshness.platform_minutes,
    )


defs = build_definitions(config_path())

"""Code location `ml_assets`: the model pipeline, on top of the platform location's services."""

from pathlib import Path

import dagster as dg

from ml_assets.experiment import build_experiment_asset, experiment_resolves
from platform_assets.drift.sensors import check_failure_sensor
from platform_assets.freshness import with_default_freshness
from platform_assets.resources import build_resources
from platform_assets.settings import config_path
from platform_assets.state import load_platform
from platform_assets.storage.assets import bucket_key


def build_definitions(path: Path) -> dg.Definitions:
    cfg, state = load_platform(path)
    return with_default_freshness(
        dg.Definitions(
            assets=[build_experiment_asset(bucket_key("datasets"))],
            asset_checks=[experiment_resolves],
            jobs=[dg.define_asset_job("ml_up", selection=dg.AssetSelection.all())],
            sensors=[check_failure_sensor],  # each location alerts on its own checks
            resources=build_resources(cfg, state, path),
            executor=dg.in_process_executor,
        ),
        cfg.freshness.model_minutes,
    )


defs = build_definitions(config_path())

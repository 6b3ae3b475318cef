"""Code location `ml_assets`: the model pipeline, on top of the platform location's services."""

from __future__ import annotations

import dagster as dg

from ml_assets.experiment import build_experiment_asset, experiment_resolves
from platform_assets.freshness import with_default_freshness
from platform_assets.resources import build_resources
from platform_assets.settings import config_path
from platform_assets.state import load_platform
from platform_assets.storage.assets import bucket_key

cfg, state = load_platform()

defs = with_default_freshness(
    dg.Definitions(
        assets=[build_experiment_asset(bucket_key("datasets"))],
        asset_checks=[experiment_resolves],
        resources=build_resources(cfg, state, config_path()),
        executor=dg.in_process_executor,
    ),
    cfg.freshness.model_minutes,
)

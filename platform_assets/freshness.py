"""One default FreshnessPolicy per code location, applied to every asset that does not set its own."""

import warnings
from datetime import timedelta

import dagster as dg


def with_default_freshness(defs: dg.Definitions, minutes: int) -> dg.Definitions:
    policy = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=minutes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # map_asset_specs is the documented way, still "preview"
        return defs.map_asset_specs(func=lambda spec: dg.apply_freshness_policy(spec, policy, overwrite_existing=False))

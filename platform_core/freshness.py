"""One FreshnessPolicy per asset group, applied to every asset that does not set its own."""

import warnings
from collections.abc import Collection, Mapping
from datetime import timedelta

import dagster as dg


def with_default_freshness(
    defs: dg.Definitions,
    minutes: int,
    minutes_by_group: Mapping[str, int] | None = None,
    except_assets: Collection[str] = (),
) -> dg.Definitions:
    """`minutes` for every asset, unless its group has its own window in `minutes_by_group`; none for
    `except_assets` (what nothing refreshes on a cadence)."""
    windows = dict(minutes_by_group or {})

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key.to_user_string() in except_assets:
            return spec
        window = timedelta(minutes=windows.get(spec.group_name or "", minutes))
        policy = dg.FreshnessPolicy.time_window(fail_window=window)
        applied: dg.AssetSpec = dg.apply_freshness_policy(spec, policy, overwrite_existing=False)
        return applied

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # map_asset_specs is the documented way, still "preview"
        return defs.map_asset_specs(func=apply)

"""A two-asset code location for the freshness sensor test, loaded by the real freshness daemon code."""

from datetime import timedelta

import dagster as dg


@dg.asset(freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=5)))
def upstream_table() -> None:
    return None


@dg.asset(deps=[upstream_table], freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=5)))
def downstream_report() -> None:
    return None


defs = dg.Definitions(assets=[upstream_table, downstream_report])

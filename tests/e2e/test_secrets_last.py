"""Last of the e2e session: no generated secret, webhook credential or the instance's password reaches a log,
an alert, the run history, asset metadata or the UI."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from ml_assets.definitions import build_definitions as build_ml_definitions
from platform_assets.definitions import build_definitions as build_platform_definitions
from tests.e2e.conftest import WEBHOOK_PASSWORD, WEBHOOK_TOKEN, stack_instance
from tests.webhook import Receiver

pytestmark = pytest.mark.e2e


def test_no_secret_reaches_a_log_an_alert_or_the_run_history(stack_config: Path, receiver: Receiver) -> None:
    """Last: after everything above (up, plan, batches, a refused batch, the daemon's drift alert, killed
    services), with one more alert whose delivery fails, so the failure is logged too."""
    import logging

    from platform_core.alerting.alerts import Alert
    from platform_core.state import load_platform
    from tests.secret_scan import generated_secrets, leaks, readable_places

    _, state = load_platform(stack_config)
    handler = logging.FileHandler(state.logs / "alerts-e2e.log")
    logging.getLogger("platform.alerts").addHandler(handler)
    receiver.always_status = 500
    try:
        alerts = build_platform_definitions(stack_config).resources["alerts"]
        assert (
            alerts.send(Alert("e2e:undelivered", "firing", "e2e", "delivery fails", "e2e", "host", time.time()))
            is False
        )
    finally:
        receiver.always_status = None
        logging.getLogger("platform.alerts").removeHandler(handler)
        handler.close()
    assert "did not accept alert e2e:undelivered" in (state.logs / "alerts-e2e.log").read_text()
    secrets = generated_secrets(state) | {WEBHOOK_PASSWORD, WEBHOOK_TOKEN}
    with stack_instance(stack_config) as instance:
        places = readable_places(state, instance)
        for defs in (build_platform_definitions(stack_config), build_ml_definitions(stack_config)):
            for key in defs.resolve_asset_graph().get_all_asset_keys():
                records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=50).records
                places[f"metadata of {key.to_user_string()}"] = "".join(
                    str(r.asset_materialization.metadata) for r in records
                )
            places["resource config the UI shows"] = str({k: repr(v) for k, v in defs.resources.items()})
    dagster = build_platform_definitions(stack_config).resources["dagster_resource"]
    info = requests.post(f"{dagster.url}/graphql", json={"query": "{ instance { info } }"}, timeout=30).json()
    assert "run_monitoring" in str(info), info  # the page the UI shows the instance's configuration on
    places["the UI's instance configuration"] = str(info)
    assert len(places) > 10 and any("alerts.jsonl" in where for where in places)
    assert leaks(places, secrets) == []

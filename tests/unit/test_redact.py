"""One redaction helper for every URL that can reach a log, an alert, run metadata or the UI, and the places that
used to print one in clear: a failed webhook delivery, a failed batch fetch, the resource config the UI shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ml_assets.data.source import BatchSourceResource, SourceError, source_for
from platform_core.alerting.alerts import AlertsResource
from platform_core.config import parse_config
from platform_core.redact import redact, redact_url
from platform_core.state import StateDir
from platform_core.targets import build_resources
from tests.unit.test_alerts import closed_port, firing
from tests.webhook import Receiver

PASSWORD = "s3cr3t-Passw0rd"
TOKEN = "xoxb0123456789abcdefABCDEF"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"https://bot:{PASSWORD}@hooks.example.com/services/T0?token={TOKEN}",
            "https://***@hooks.example.com/services/T0?token=***",
        ),
        (
            f"http://u:{PASSWORD}@10.0.0.5:8001/data?group_number=1&day=3",
            "http://***@10.0.0.5:8001/data?group_number=1&day=3",
        ),
        (f"https://h/x?X-Amz-Signature={TOKEN}&X-Amz-Expires=60", "https://h/x?X-Amz-Signature=***&X-Amz-Expires=60"),
        (f"https://h/x?q={TOKEN}&page=2", "https://h/x?q=***&page=2"),  # token-like whatever its key
        ("http://127.0.0.1:5000/#/models/housing-price", "http://127.0.0.1:5000/#/models/housing-price"),
        ("http://[::1]:99999/", "***"),  # not a URL after all: nothing of it is shown
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_finds_urls_in_text() -> None:
    text = f"day 3 from http://u:{PASSWORD}@h:1/data?day=3&api_key=abc failed: HTTP 500"
    assert redact(text) == "day 3 from http://***@h:1/data?day=3&api_key=*** failed: HTTP 500"


def test_a_failed_webhook_delivery_logs_no_userinfo_path_or_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://bot:{PASSWORD}@127.0.0.1:{closed_port()}/hooks/{TOKEN}?token={TOKEN}"
    alerts = AlertsResource(log_file=str(tmp_path / "alerts.jsonl"), webhook_url=url, retries=0)
    with caplog.at_level(logging.WARNING, logger="platform.alerts"):
        assert alerts.send(firing(message=f"fetch from {url} failed")) is False
    logged = caplog.text + (tmp_path / "alerts.jsonl").read_text()
    assert "did not accept alert" in caplog.text and "127.0.0.1" in caplog.text
    assert PASSWORD not in logged and TOKEN not in logged


def test_a_failed_fetch_names_the_source_without_its_credentials() -> None:
    url = f"http://reader:{PASSWORD}@127.0.0.1:{closed_port()}/?api_token={TOKEN}"
    source = BatchSourceResource(base_url=url, group_number=1, retries=0)
    with pytest.raises(SourceError) as caught:
        source.fetch_batch(0)
    assert "connection failed" in str(caught.value)
    assert PASSWORD not in str(caught.value) and TOKEN not in str(caught.value)


def test_secret_urls_stay_out_of_the_resource_config_the_ui_shows(tmp_path: Path) -> None:
    receiver = Receiver().start()
    try:
        hook = receiver.url.replace("http://", f"http://bot:{PASSWORD}@") + f"?token={TOKEN}"
        source = f"http://reader:{PASSWORD}@127.0.0.1:9/"
        config = tmp_path / "platform.yaml"
        config.write_text(f"alerts:\n  webhook_url: '{hook}'\nml:\n  source_url: '{source}'\n")
        cfg = parse_config({"alerts": {"webhook_url": hook}, "ml": {"source_url": source}})
        state = StateDir(tmp_path / "state")
        alerts = build_resources(cfg, state, config)["alerts"]
        batches = source_for(cfg, {"config_path": str(config), "state_dir": str(state.root)})
        shown = repr(alerts) + repr(batches) + str(alerts.__dict__) + str(batches.__dict__)
        assert PASSWORD not in shown and TOKEN not in shown
        assert alerts.send(firing()) is True and receiver.requests == 1  # and both still reach their URLs
        assert batches.root() == source
    finally:
        receiver.stop()

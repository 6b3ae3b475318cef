"""Unit tests for platform_core.alerting.alerts against a real local webhook receiver and a real JSONL file."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.alerting.alerts import Alert, AlertsResource
from tests.webhook import Receiver

ONSET = 1_700_000_000.0  # 2023-11-14T22:13:20+00:00
ONSET_ISO = "2023-11-14T22:13:20+00:00"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "alerts.jsonl"  # parent does not exist yet: send() creates it


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit, and nothing listens on it


def firing(key: str = "service_down:postgres", **overrides: object) -> Alert:
    fields: dict = {
        "key": key,
        "status": "firing",
        "title": "postgres down",
        "message": "no answer on 127.0.0.1:55432",
        "source": "infra_drift_sensor",
        "subject": "platform/postgres",
        "onset": ONSET,
        "details": {"remedy": "self-healable"},
    }
    fields.update(overrides)
    return Alert(**fields)


def resolved(key: str = "service_down:postgres") -> Alert:
    return firing(key, status="resolved", resolved_at=ONSET + 90.0)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def resource(log_file: Path, url: str | None, **kwargs: float) -> AlertsResource:
    options = {"timeout_seconds": 2.0, "retries": 3, "backoff_seconds": 0.01, **kwargs}
    return AlertsResource(log_file=str(log_file), webhook_url=url, **options)


def test_send_logs_jsonl_and_posts_structured_slack_payload(receiver: Receiver, log_file: Path) -> None:
    assert resource(log_file, receiver.url).send(firing()) is True

    assert receiver.requests == 1
    body = receiver.bodies[0]
    assert isinstance(body["text"], str)
    assert body["text"] == f"[ERROR] postgres down: no answer on 127.0.0.1:55432 (since {ONSET_ISO})"
    assert body["key"] == "service_down:postgres"
    assert body["status"] == "firing"
    assert body["subject"] == "platform/postgres"
    assert body["source"] == "infra_drift_sensor"
    assert body["severity"] == "error"
    assert body["onset_iso"] == ONSET_ISO
    assert body["details"] == {"remedy": "self-healable"}
    assert body["resolved_at"] is None and body["duration_seconds"] is None

    (line,) = lines(log_file)
    assert line["key"] == "service_down:postgres"
    assert line["status"] == "firing"
    assert line["text"] == body["text"]
    assert line["onset_iso"] == ONSET_ISO
    assert line["webhook_delivered"] is True


def test_warning_severity_in_text(receiver: Receiver, log_file: Path) -> None:
    resource(log_file, receiver.url).send(firing(severity="warning"))

    assert receiver.bodies[0]["severity"] == "warning"
    assert receiver.bodies[0]["text"].startswith("[WARNING] postgres down:")


def test_retries_with_backoff_on_500_then_succeeds(receiver: Receiver, log_file: Path) -> None:
    receiver.fail_first = 2

    assert resource(log_file, receiver.url, retries=3, backoff_seconds=0.01).send(firing()) is True

    assert receiver.requests == 3
    gaps = [later - earlier for earlier, later in zip(receiver.times, receiver.times[1:], strict=False)]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02  # backoff_seconds * 2**attempt
    assert all(body == receiver.bodies[0] for body in receiver.bodies)  # the same payload each time
    assert lines(log_file)[0]["webhook_delivered"] is True


def test_429_is_retried(receiver: Receiver, log_file: Path) -> None:
    receiver.fail_first, receiver.fail_status = 1, 429

    assert resource(log_file, receiver.url).send(firing()) is True

    assert receiver.requests == 2


def test_400_is_not_retried_and_still_logged(receiver: Receiver, log_file: Path) -> None:
    receiver.always_status = 400

    assert resource(log_file, receiver.url, retries=3).send(firing()) is False

    assert receiver.requests == 1
    (line,) = lines(log_file)
    assert line["key"] == "service_down:postgres"
    assert line["webhook_delivered"] is False


def test_retries_are_bounded(receiver: Receiver, log_file: Path) -> None:
    receiver.always_status = 500

    assert resource(log_file, receiver.url, retries=2).send(firing()) is False

    assert receiver.requests == 3
    assert lines(log_file)[0]["webhook_delivered"] is False


def test_receiver_down_returns_false_without_raising(log_file: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    started = time.monotonic()

    assert resource(log_file, url, retries=2).send(firing()) is False

    assert time.monotonic() - started < 5.0
    (line,) = lines(log_file)
    assert line["key"] == "service_down:postgres"
    assert line["status"] == "firing"
    assert line["webhook_delivered"] is False


def test_slow_receiver_times_out_and_returns_false(receiver: Receiver, log_file: Path) -> None:
    receiver.delay = 1.5
    started = time.monotonic()

    assert resource(log_file, receiver.url, retries=0, timeout_seconds=0.2).send(firing()) is False

    assert time.monotonic() - started < 1.2
    assert lines(log_file)[0]["webhook_delivered"] is False


def test_no_webhook_configured_logs_with_null_delivery(log_file: Path) -> None:
    assert resource(log_file, None).send(firing()) is True

    (line,) = lines(log_file)
    assert line["key"] == "service_down:postgres"
    assert "webhook_delivered" in line and line["webhook_delivered"] is None


def test_resolved_alert_text_has_resolved_and_duration(receiver: Receiver, log_file: Path) -> None:
    alert = resolved()
    assert alert.duration_seconds == 90.0

    resource(log_file, receiver.url).send(alert)

    body = receiver.bodies[0]
    assert "RESOLVED" in body["text"]
    assert "lasted 90.0s" in body["text"]
    assert ONSET_ISO in body["text"]
    assert body["status"] == "resolved"
    assert body["duration_seconds"] == 90.0
    assert body["resolved_at_iso"] == "2023-11-14T22:14:50+00:00"
    assert lines(log_file)[0]["text"] == body["text"]


def test_history_reads_back_every_line_in_order(receiver: Receiver, log_file: Path) -> None:
    alerts = resource(log_file, receiver.url)
    assert alerts.history() == []  # no file yet

    alerts.send(firing("a"))
    alerts.send(firing("b"))
    alerts.send(resolved("a"))
    resource(log_file, None).send(firing("c"))  # a second resource appends to the same file

    history = alerts.history()
    assert [(h["key"], h["status"]) for h in history] == [
        ("a", "firing"),
        ("b", "firing"),
        ("a", "resolved"),
        ("c", "firing"),
    ]
    assert [h["webhook_delivered"] for h in history] == [True, True, True, None]
    assert history == lines(log_file)

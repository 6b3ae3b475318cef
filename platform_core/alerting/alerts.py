"""The one way the platform raises its voice: a log line, a JSONL alert file and, if configured, a webhook.

Open-source Dagster has no alerting of its own, so every sensor that finds something wrong sends an `Alert`
here. Webhook delivery never raises: a down receiver costs a logged warning, and the alert is still in the
JSONL file.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import requests

from platform_core.config import load_config
from platform_core.redact import redact, redact_url

log = logging.getLogger("platform.alerts")

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    key: str  # stable identity of the finding, e.g. "service_down:postgres"
    status: Status
    title: str
    message: str
    source: str  # the sensor that found it
    subject: str  # the asset the finding is about
    onset: float  # unix time the finding was first seen
    severity: Literal["warning", "error"] = "error"
    resolved_at: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float | None:
        return None if self.resolved_at is None else round(self.resolved_at - self.onset, 1)

    def text(self) -> str:
        """One human line, Slack-compatible."""
        since = _iso(self.onset)
        if self.status == "resolved":
            return f"[RESOLVED] {self.title}: {self.message} (since {since}, lasted {self.duration_seconds}s)"
        return f"[{self.severity.upper()}] {self.title}: {self.message} (since {since})"

    def payload(self) -> dict[str, object]:
        body = asdict(self)
        body.update(text=self.text(), onset_iso=_iso(self.onset), duration_seconds=self.duration_seconds)
        if self.resolved_at is not None:
            body["resolved_at_iso"] = _iso(self.resolved_at)
        return body


def redacted(value: object) -> Any:
    """``value`` with every URL in its strings redacted, however deeply nested."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]  # its type parameter is Dagster-internal
    """Sends alerts to the log, to `log_file` (JSONL) and to `webhook_url` when set."""

    log_file: str
    webhook_url: str | None = None
    timeout_seconds: float = 5.0
    retries: int = 3
    backoff_seconds: float = 0.5
    config_path: str | None = None  # where the webhook URL is read from
    lineage_dir: str | None = None  # both locations' published lineage, to name causes (alerting/causes.py)

    def webhook(self) -> str | None:
        """The webhook URL, read from platform.yaml when the platform built this resource: as resource config the
        UI would show it, and a webhook URL is often a credential."""
        if self.webhook_url or not self.config_path:
            return self.webhook_url
        configured = load_config(self.config_path).alerts.webhook_url
        return str(configured) if configured else None

    def send(self, alert: Alert) -> bool:
        """Record and deliver one alert. Returns whether the webhook (if any) accepted it."""
        payload = redacted(alert.payload())  # findings quote errors, and errors quote URLs
        level = logging.INFO if alert.status == "resolved" else logging.WARNING
        log.log(level, "%s", payload["text"])
        webhook = self.webhook()
        delivered = self._post(webhook, payload) if webhook else True
        payload["webhook_delivered"] = delivered if webhook else None
        path = Path(self.log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
        return delivered

    def _post(self, webhook: str, payload: dict[str, object]) -> bool:
        for attempt in range(self.retries + 1):
            try:
                response = requests.post(webhook, json=payload, timeout=self.timeout_seconds)
                if response.status_code < 300:
                    return True
                reason = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses this payload; retrying will not change its mind
            except requests.RequestException as err:
                reason = type(err).__name__
            if attempt < self.retries:
                time.sleep(self.backoff_seconds * 2**attempt)
        # the host only: a webhook URL's path is often its secret token, and its userinfo a password
        shown = redact_url(webhook, keep_path=False)
        log.warning("webhook at %s did not accept alert %s: %s", shown, payload["key"], reason)
        return False

    def history(self) -> list[dict[str, object]]:
        path = Path(self.log_file)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

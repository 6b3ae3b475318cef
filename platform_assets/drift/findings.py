"""Findings and their life cycle: a finding fires once when it appears and resolves once when it clears.

The state between sensor ticks lives in the sensor cursor (JSON), so restarts of the daemon neither repeat an
alert nor forget one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from platform_assets.alerts import Alert

Remedy = Literal["self-healable", "manual", "needs-rebuild"]


@dataclass(frozen=True)
class Finding:
    key: str  # stable across ticks, e.g. "service_down:postgres"
    subject: str  # the asset key it is about, as a "/"-joined string
    title: str
    message: str
    remedy: Remedy = "self-healable"


def track(cursor: str | None, findings: list[Finding], now: float, source: str) -> tuple[list[Alert], str]:
    """Alerts for findings that appeared or cleared since the cursor, and the new cursor."""
    previous: dict[str, dict] = json.loads(cursor) if cursor else {}
    current = {finding.key: finding for finding in findings}
    alerts: list[Alert] = []
    state: dict[str, dict] = {}
    for key, finding in current.items():
        onset = previous.get(key, {}).get("onset", now)
        state[key] = {"onset": onset, "subject": finding.subject, "title": finding.title, "message": finding.message}
        if key not in previous:
            alerts.append(
                Alert(
                    key=key,
                    status="firing",
                    title=finding.title,
                    message=finding.message,
                    source=source,
                    subject=finding.subject,
                    onset=onset,
                    details={"remedy": finding.remedy},
                )
            )
    for key, seen in previous.items():
        if key not in current:
            alerts.append(
                Alert(
                    key=key,
                    status="resolved",
                    title=seen["title"],
                    message=seen["message"],
                    source=source,
                    subject=seen["subject"],
                    onset=seen["onset"],
                    resolved_at=now,
                )
            )
    return alerts, json.dumps(state, sort_keys=True)

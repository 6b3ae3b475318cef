"""Findings and their life cycle: a finding fires once when it appears and resolves once when it clears.

The state between sensor ticks lives in the sensor cursor (JSON), so restarts of the daemon neither repeat an
alert nor forget one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from platform_core.alerting.alerts import Alert
from platform_core.alerting.causes import CauseFinder

Remedy = Literal["self-healable", "manual", "needs-rebuild"]


@dataclass(frozen=True)
class Finding:
    key: str  # stable across ticks, e.g. "service_down:postgres"
    subject: str  # the asset key it is about, as a "/"-joined string
    title: str
    message: str
    remedy: Remedy = "self-healable"
    inhibitable: bool = True  # False: alert even when an upstream alert explains it (and name that cause)
    severity: Literal["warning", "error"] = "error"


def track(
    cursor: str | None, findings: list[Finding], now: float, source: str, causes: CauseFinder | None = None
) -> tuple[list[Alert], str]:
    """Alerts for findings that appeared or cleared since the cursor, and the new cursor.

    With `causes`, a new finding explained by an open alert on its asset or upstream of it is held back
    (inhibited) while that alert is open, and fires with its original onset if it outlives it; a finding that
    is not inhibitable names the cause instead, and a root finding names what depends on it."""
    previous: dict[str, dict[str, Any]] = json.loads(cursor) if cursor else {}
    if causes is not None:  # roots first, so a finding below one that fires in this same tick can name it
        findings = sorted(findings, key=lambda f: len(causes.upstream(f.subject)))
    current = {finding.key: finding for finding in findings}
    alerts: list[Alert] = []
    state: dict[str, dict[str, Any]] = {}
    for key, finding in current.items():
        seen = previous.get(key, {})
        entry = {
            "onset": seen.get("onset", now),
            "subject": finding.subject,
            "title": finding.title,
            "message": finding.message,
        }
        state[key] = entry
        if key in previous and "inhibited_by" not in seen:
            continue  # alerted already
        cause = causes.cause(finding.subject, key) if causes else None
        if cause is not None and finding.inhibitable:
            entry["inhibited_by"] = cause.key
            continue
        note = f" ← {cause.text()}" if cause else (causes.affected(finding.subject) if causes else "")
        alerts.append(
            Alert(
                key=key,
                status="firing",
                title=finding.title,
                message=finding.message + note,
                source=source,
                subject=finding.subject,
                onset=entry["onset"],
                severity=finding.severity,
                details={"remedy": finding.remedy, **({"cause": cause.key} if cause else {})},
            )
        )
        if causes is not None:
            causes.opened(alerts[-1])
    for key, seen in previous.items():
        if key not in current and "inhibited_by" not in seen:  # an inhibited finding never fired: nothing to clear
            alerts.append(
                Alert(
                    key=key,
                    status="resolved",
                    title=seen.get("title", key),
                    message=seen.get("message", ""),
                    source=source,
                    subject=seen.get("subject", ""),
                    onset=seen["onset"],
                    resolved_at=now,
                )
            )
    return alerts, json.dumps(state, sort_keys=True)

"""Cause links across both code locations: which earlier, still-open alert explains a new finding.

The asset graph is the union of both locations' graphs (the ML location names platform assets as deps by key);
open alerts come from the alert log, which every sensor of both locations writes. A new finding whose asset, or
an asset upstream of it, already has an open alert is *inhibited* (folded into that alert, as Alertmanager's
inhibition rules do) unless the finding asks to be told anyway (staleness, a dead process, data drift), in which
case it names the cause:
"deployed_model is stale ← postgres: postgres is down since 10:42 UTC".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from platform_core.alerting.alerts import Alert, AlertsResource
from platform_core.alerting.lineage import Lineage, published

MAX_LISTED = 8  # downstream assets named in a root alert


@dataclass(frozen=True)
class Cause:
    key: str
    subject: str
    title: str
    onset: float

    def text(self) -> str:
        since = datetime.fromtimestamp(self.onset, UTC).strftime("%H:%M UTC")
        return f"{self.subject}: {self.title} since {since}"


def open_alerts(history: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Alerts fired and not yet resolved, by key, from the alert log."""
    open_: dict[str, dict[str, object]] = {}
    for entry in history:
        if entry.get("status") == "firing":
            open_[str(entry["key"])] = entry
        else:
            open_.pop(str(entry.get("key")), None)
    return open_


class CauseFinder:
    def __init__(self, parents: dict[str, frozenset[str]], open_: dict[str, dict[str, object]]) -> None:
        self.parents = parents
        self.open = open_

    @classmethod
    def load(cls, alerts: AlertsResource, own: Lineage | None = None) -> CauseFinder:
        """Every location's published lineage plus `own`, the calling sensor's location as it runs now."""
        parents = {k: set(v) for k, v in (published(Path(alerts.lineage_dir)) if alerts.lineage_dir else {}).items()}
        for child, ups in (own or {}).items():
            parents.setdefault(child, set()).update(ups)
        return cls({k: frozenset(v) for k, v in parents.items()}, open_alerts(alerts.history()))

    def opened(self, alert: Alert) -> None:
        """An alert sent during this tick becomes a possible cause for the findings after it."""
        self.open[alert.key] = {"key": alert.key, "subject": alert.subject, "title": alert.title, "onset": alert.onset}

    def upstream(self, subject: str) -> set[str]:
        """The subject and every asset above it."""
        seen, queue = {subject}, deque([subject])
        while queue:
            for parent in self.parents.get(queue.popleft(), ()):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return seen

    def downstream(self, subject: str) -> list[str]:
        children: dict[str, set[str]] = {}
        for child, parents in self.parents.items():
            for parent in parents:
                children.setdefault(parent, set()).add(child)
        seen, queue = set(), deque([subject])
        while queue:
            for child in children.get(queue.popleft(), ()):
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        return sorted(seen)

    def cause(self, subject: str, key: str) -> Cause | None:
        """The earliest open alert (other than `key` itself) on the subject or upstream of it."""
        above = self.upstream(subject)
        candidates = [
            Cause(k, str(a["subject"]), str(a["title"]), float(str(a["onset"])))
            for k, a in self.open.items()
            if k != key and a.get("subject") in above
        ]
        return min(candidates, key=lambda c: c.onset, default=None)

    def affected(self, subject: str) -> str:
        """`"; downstream: a, b, c"` for a root alert, or "" when nothing depends on the subject."""
        below = self.downstream(subject)
        if not below:
            return ""
        more = f" and {len(below) - MAX_LISTED} more" if len(below) > MAX_LISTED else ""
        return f"; downstream: {', '.join(below[:MAX_LISTED])}{more}"

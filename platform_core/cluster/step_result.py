"""What one reconcile step did (or, in plan mode, would do), and the metadata its asset records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepResult:
    changes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def change(self, plan: bool) -> str:
        if not self.changes:
            return "no change"
        return ("would: " if plan else "") + "; ".join(self.changes)

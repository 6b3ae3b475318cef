"""Which upstream versions the platform can install: the pins in ``infra/upstream.yaml``, read at config load so
that an unpinned ``versions.*`` is refused before the host is touched, not inside the step that needs its files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

DEFAULT_PINS = Path(__file__).resolve().parents[2] / "infra" / "upstream.yaml"


@cache
def pinned_versions(path: Path = DEFAULT_PINS) -> dict[str, tuple[str, ...]]:
    """``{"k3s": (...), "argocd": (...), "metallb": (...)}``; empty when the pins file cannot be read (the step that
    reads it says why, in its own words)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        pinned: dict[str, tuple[str, ...]] = {"k3s": (str(data["k3s"]["version"]),)}
        pinned.update({str(c): tuple(map(str, v)) for c, v in data["manifests"].items()})
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}
    return pinned


def unpinned(component: str, version: str) -> str | None:
    """Why ``version`` of ``component`` cannot be installed, or None when it is pinned."""
    known = pinned_versions().get(component)
    if known is None or version in known:
        return None
    where = DEFAULT_PINS.relative_to(DEFAULT_PINS.parents[1])
    return f"{version} is not pinned in {where} (pinned: {', '.join(known)})"

"""Field-level comparison of a live Kubernetes object with what an apply would make of it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# Written by the API server, never by an apply: comparing them would report noise as drift.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "managedFields", "creationTimestamp", "selfLink")
_ABSENT = object()


@dataclass(frozen=True)
class FieldChange:
    """One field an apply would change: its dotted path, the live value and the desired one (None = absent)."""

    path: str
    live: Any
    desired: Any

    def __str__(self) -> str:
        return f"{self.path}: {self.live!r} -> {self.desired!r}"


def normalize(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without server-populated fields and status: what field managers decide."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    return out


def _named(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)
        and len({i["name"] for i in value}) == len(value)
    )


def _walk(live: Any, want: Any, path: str, out: list[FieldChange]) -> None:
    if isinstance(live, dict) and isinstance(want, dict):
        for key in list(dict.fromkeys([*live, *want])):
            _walk(live.get(key, _ABSENT), want.get(key, _ABSENT), f"{path}.{key}" if path else key, out)
    elif _named(live) and _named(want):  # lists of named items (containers, ports, env) compare by name
        lmap, wmap = {i["name"]: i for i in live}, {i["name"]: i for i in want}
        for name in list(dict.fromkeys([*lmap, *wmap])):
            _walk(lmap.get(name, _ABSENT), wmap.get(name, _ABSENT), f"{path}[{name}]", out)
    elif live != want:
        out.append(FieldChange(path, None if live is _ABSENT else live, None if want is _ABSENT else want))


def changes(live: dict[str, Any], result: dict[str, Any]) -> list[FieldChange]:
    """What differs between the live object and the result of applying the desired one (server dry run)."""
    out: list[FieldChange] = []
    _walk(normalize(live), normalize(result), "", out)
    return out

"""Each code location's lineage (asset -> its direct upstream assets), kept as data in the state directory.

A cause can sit in the other code location ("deployed_model is stale ← postgres"), but a location must not import
the other: each location publishes its own graph when its definitions are built, and the cause finder reads every
published graph.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from platform_core.state import is_planning

Lineage = dict[str, frozenset[str]]


def graph_lineage(graph: Any) -> Lineage:
    """Asset -> its direct upstream assets, from a resolved asset graph (`Definitions.resolve_asset_graph()` or a
    sensor's `repository_def.asset_graph`; Dagster exports no name for its type)."""
    return {
        key.to_user_string(): frozenset(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }


def publish(lineage_dir: Path, location: str, defs: dg.Definitions) -> None:
    """Write `location`'s lineage, atomically and only when it changed (both locations load it often); a plan
    writes nothing."""
    if is_planning():
        return
    parents = graph_lineage(defs.resolve_asset_graph())
    text = json.dumps({k: sorted(v) for k, v in parents.items()}, sort_keys=True, indent=1)
    path = lineage_dir / f"{location}.json"
    if path.exists() and path.read_text() == text:
        return
    lineage_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)


def published(lineage_dir: Path) -> Lineage:
    """The union of every location's published lineage."""
    parents: dict[str, set[str]] = {}
    for path in sorted(lineage_dir.glob("*.json")) if lineage_dir.is_dir() else ():
        for child, ups in json.loads(path.read_text()).items():
            parents.setdefault(child, set()).update(ups)
    return {child: frozenset(ups) for child, ups in parents.items()}

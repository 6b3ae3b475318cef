"""`platformctl plan`: what materializing each asset of both code locations would change, changing nothing (the
Terraform `plan` of this platform).

Each answer is the asset's own decision (platform_core/decisions.py), the function the asset acts on, called
inside `state.planning()`, the one plan switch: the state directory is read and never written (a credential a real
run would generate first is made up for the plan and listed), host commands are recorded instead of run, and
Kubernetes writes are server-side dry runs (k3s target). What a decision reads through a service that is down is
said to come once it is up, instead of being asked. Each answer is about the asset as things stand now: an asset
below one that would change answers for what it finds today (after that change, the next plan tells).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from ml_assets.defs.serving.observe import OBSERVED_ONLY
from platform_assets.defs.host.assets import LOCAL_HOST
from platform_core.catalog import SERVICES
from platform_core.config import PlatformConfig
from platform_core.decisions import Decision, Looking, decision_of
from platform_core.results import NO_CHANGE, first_line
from platform_core.runs import recorded_instance
from platform_core.state import StateDir, planning

Planned = Iterator[tuple[str, str]]
Assets = dict[str, list[str] | None]  # asset -> its partition keys, None when unpartitioned


class PlanError(ValueError):
    """A selection that names no asset of the platform."""


def location_definitions(cfg_path: Path) -> list[dg.Definitions]:
    """Both code locations, built for this config (their decisions register as they are built)."""
    from ml_assets.definitions import build_definitions as ml_definitions
    from platform_assets.definitions import build_definitions as platform_definitions

    return [platform_definitions(cfg_path), ml_definitions(cfg_path)]


def plannable(defs: list[dg.Definitions]) -> Assets:
    """Asset -> its partition keys (None when unpartitioned): each location's own assets in dependency order, and
    among those free to go, in the order the location defines them."""
    assets: Assets = {}
    for location in defs:
        graph = location.resolve_asset_graph()
        defined = [key for asset in location.assets or [] for key in _keys(asset)]
        todo = [key for key in dict.fromkeys(defined) if graph.get(key).is_executable]  # not the other location's
        while todo:
            key = next(k for k in todo if graph.get(k).parent_keys.isdisjoint(todo))  # the graph has no cycle
            todo.remove(key)
            partitions = graph.get(key).partitions_def
            assets[key.to_user_string()] = list(partitions.get_partition_keys()) if partitions else None
    return assets


def _keys(asset: object) -> list[dg.AssetKey]:
    """The keys an entry of `Definitions.assets` defines (an assets definition, a spec or a source asset)."""
    return list(asset.keys) if isinstance(asset, dg.AssetsDefinition) else [getattr(asset, "key")]  # noqa: B009


def reachable(cfg: PlatformConfig, resources: Mapping[str, Any]) -> set[str]:
    """The service assets that accept a connection now; decisions read only through those (no retry storms)."""
    up = set()
    for service in SERVICES:
        port = getattr(getattr(cfg.services, service.name), service.port_field)
        if resources[service.resource].answers(service.asset, port):
            up.add(service.asset)
    return up


def answer(looking: Looking, decision: Decision, partitions: list[str] | None, up: set[str]) -> str:
    down = [service for service in decision.reads if service not in up]
    if down:
        waits = f"once {' and '.join(down)} {'is' if len(down) == 1 else 'are'} up"
        return f"{decision.when_down} ({waits})" if decision.when_down else f"would run {waits}"
    try:
        if partitions is None:
            return looking.decide(decision)
        by_change: dict[str, list[str]] = {}
        for partition in partitions:
            by_change.setdefault(looking.decide(decision, partition), []).append(partition)
    except Exception as err:  # what blocks one asset does not hide the others
        return f"{decision.unknown}: {first_line(err)}"
    todo = [f"{change} days {', '.join(keys)}" for change, keys in by_change.items() if change != NO_CHANGE]
    return "; ".join(todo) or NO_CHANGE


def exit_code(lines: list[str]) -> int:
    """As `terraform plan -detailed-exitcode`: 0 nothing to do, 2 changes to make, 1 something blocks a step."""
    changes = [line.split(": ", 1)[1] for line in lines]
    if any(change.startswith("blocked:") for change in changes):
        return 1
    return 0 if all(change in (NO_CHANGE, LOCAL_HOST, OBSERVED_ONLY) for change in changes) else 2


def plan(cfg: PlatformConfig, state: StateDir, cfg_path: Path, selection: list[str] | None) -> list[str]:
    """One "asset: change" line per selected asset, then what would be written to the state directory."""
    with planning() as writes:
        state.ensure()  # notes the directory a first run would create
        defs = location_definitions(cfg_path)
        assets = plannable(defs)
        unknown = sorted(set(selection or []) - set(assets))
        if unknown:
            raise PlanError(f"--select: no asset named {', '.join(unknown)} (known: {', '.join(assets)})")
        lines = [f"{asset}: {change}" for asset, change in answers(cfg, state, defs, assets, set(selection or assets))]
    return lines + [f"state: {line}" for line in writes]


def answers(
    cfg: PlatformConfig,
    state: StateDir,
    defs: list[dg.Definitions],
    assets: dict[str, list[str] | None],
    picked: set[str],
) -> Planned:
    resources: dict[str, Any] = {k: v for location in defs for k, v in (location.resources or {}).items()}
    with recorded_instance(cfg, state) as instance:
        looking, up = Looking(resources, instance), reachable(cfg, resources)
        for asset, partitions in assets.items():
            decision = decision_of(asset, cfg.target)
            if asset in picked:
                yield asset, answer(looking, decision, partitions, up) if decision else "blocked: no decision"
    cluster = resources.get("cluster")
    for line in getattr(cluster.executor, "planned", []) if cluster is not None else []:
        yield "host commands", line


def known_assets(cfg_path: Path) -> list[str]:
    with planning():
        return list(plannable(location_definitions(cfg_path)))

"""One decision per asset: the change materializing it would make now, desired state against live state, or
"no change".

The asset calls its decision and acts on the answer; `platformctl plan` calls the same function and only reports
it, so plan and apply cannot disagree. A decision registers under its asset's key where the asset is defined
(`@decides("postgres_databases", reads=("postgres",))`), for one target or both; a test holds every asset of
both code locations, in each target, to having one, so a new asset has plan support by construction.

A decision's parameters are filled by name, as Dagster fills an asset's resources: a resource key, `previous`
(the metadata of the asset's latest materialization), `latest` (the same for any asset, by key) and `partition`
for a partitioned asset. It reads and never writes; in plan mode (`state.planning()`) the resources themselves
refuse to write.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg

from platform_core.results import latest_metadata

Decide = Callable[..., str]
UNKNOWN_YET = "cannot tell yet"  # a data decision failing: what it reads is made by an upstream asset first
Target = Literal["local", "k3s"]


@dataclass(frozen=True)
class Decision:
    asset: str
    decide: Decide
    reads: tuple[str, ...]  # service assets the answer is read through: while one is down, plan says so instead
    partitioned: bool  # decided per partition (`partition` parameter); plan lists the partitions per change
    when_down: str | None  # what to say while a read service is down ("would create s3://x"), else "would run"
    unknown: str  # what an error while deciding means: "blocked" (the step would fail the same way) or, for data
    # that upstream assets make first, "cannot tell yet"


_REGISTRY: dict[tuple[str, Target | None], Decision] = {}


def decides(
    asset: str,
    reads: tuple[str, ...] = (),
    target: Target | None = None,
    partitioned: bool = False,
    when_down: str | None = None,
    unknown: str = "blocked",
) -> Callable[[Decide], Decide]:
    """Register the decorated function as `asset`'s decision (in `target` only, or in both)."""

    def register(decide: Decide) -> Decide:
        _REGISTRY[(asset, target)] = Decision(asset, decide, reads, partitioned, when_down, unknown)
        return decide

    return register


def decision_of(asset: str, target: Target) -> Decision | None:
    return _REGISTRY.get((asset, target)) or _REGISTRY.get((asset, None))


@dataclass(frozen=True)
class Looking:
    """What plan hands a decision: the resources by key and the instance's record of earlier runs."""

    resources: Mapping[str, Any]
    instance: dg.DagsterInstance | None  # None: no run recorded yet

    def previous(self, asset: str, partition: str | None = None) -> dict[str, object]:
        """Metadata values of the asset's (partition's) latest materialization, {} if none."""
        if self.instance is None:
            return {}
        found = latest_metadata(self.instance, dg.AssetKey.from_user_string(asset), partition)
        return {key: value.value for key, value in found.items()}

    def decide(self, decision: Decision, partition: str | None = None) -> str:
        args: dict[str, Any] = {}
        for name in inspect.signature(decision.decide).parameters:
            if name == "previous":
                args[name] = self.previous(decision.asset, partition)
            elif name == "partition":
                args[name] = partition
            elif name == "latest":  # another asset's latest materialization
                args[name] = self.previous
            elif name in self.resources:
                args[name] = self.resources[name]
            else:
                raise TypeError(f"the decision of {decision.asset} asks for {name!r}, which is no resource")
        return decision.decide(**args)

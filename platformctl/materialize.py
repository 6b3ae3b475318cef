"""One `platformctl` step: a selection of one code location materialized in this process, into the stack's
instance, as `dagster asset materialize` would (the same implicit asset job, so the run shows in the UI under its
location with its logs and checks), without a Dagster process per command and a process per asset step: each
location's definitions are loaded once per command, and a step that changes nothing costs its checks only."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # `platformctl down` and `status` do without Dagster's import
    import dagster as dg


@dataclass(frozen=True)
class Step:
    """One materialization: a code location, a selection (Dagster's selection syntax), optionally one partition."""

    title: str
    location: str
    selection: str
    partition: str | None = None


@cache
def location_definitions(location: str, config: Path) -> dg.Definitions:
    """The location's definitions as its code server loads them, once per command."""
    if location == "platform_assets.definitions":
        from platform_assets.definitions import build_definitions
    elif location == "ml_assets.definitions":
        from ml_assets.definitions import build_definitions
    else:
        raise ValueError(f"unknown code location {location!r}")
    return build_definitions(config)


def materialize(instance: dg.DagsterInstance, step: Step, config: Path, log: Path) -> bool:
    """Run the step into `instance`, its Dagster log in `log`; True when the run succeeded."""
    import dagster as dg

    defs = location_definitions(step.location, config)
    keys = dg.AssetSelection.from_string(step.selection).resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    with log.open("w") as handle, _output_to(handle):
        result = job.execute_in_process(
            instance=instance, asset_selection=sorted(keys), partition_key=step.partition, raise_on_error=False
        )
    return result.success


@contextlib.contextmanager
def _output_to(handle: IO[str]) -> Iterator[None]:
    """This process's stdout and stderr (Dagster's console log, any library's prints) go to the step's log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fileno = handle.fileno()
    try:
        os.dup2(fileno, 1)
        os.dup2(fileno, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])

"""One `platformctl` step: a selection of one code location materialized in this process, into the stack's
instance, as `dagster asset materialize` would (the same implicit asset job, so the run shows in the UI under its
location with its logs and checks), without a Dagster process per step: each location's definitions load once
per command instead of once per step."""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
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


def location_definitions(location: str) -> dg.Definitions:
    """The location's definitions as its code server loads them (the module's `defs`, built on import from the
    config `platformctl` was given), once per process."""
    definitions: dg.Definitions = importlib.import_module(location).defs
    return definitions


@dataclass(frozen=True)
class Ran:
    run_id: str
    success: bool


def materialize(instance: dg.DagsterInstance, step: Step, log: Path) -> Ran:
    """Run the step into `instance`, its Dagster log in `log`: which run it was, and whether it succeeded."""
    import dagster as dg

    from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG

    defs = location_definitions(step.location)
    with warnings.catch_warnings():  # the selection parser's own use of a beta parameter, not ours to heed
        warnings.simplefilter("ignore", dg.BetaWarning)
        keys = dg.AssetSelection.from_string(step.selection).resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    gc.freeze()  # see below
    gc.enable()  # paused while the command loaded (collector_paused)
    with log.open("w") as handle, _output_to(handle):
        result = job.execute_in_process(
            instance=instance,
            asset_selection=sorted(keys),
            partition_key=step.partition,
            raise_on_error=False,
            tags={WORKSTATION_RUN_TAG: socket.gethostname()},
        )
    ran = Ran(result.run_id, result.success)
    del result  # the run's events and outputs are the instance's now
    # What lives on (Dagster, the definitions, the libraries a step imported) lives until the command ends: out of
    # the cyclic collector's sight, its full collections scan only what the next step allocates, and the
    # interpreter's exit skips a last one (a no-op `up` spent 1.3 s collecting and 1 s exiting before). Cycles
    # the step left that no collection reached yet are frozen with it: a short command's bounded cost
    gc.freeze()
    return ran


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off while a command imports and loads (the first `materialize` resumes it), as it was
    after, in any case."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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

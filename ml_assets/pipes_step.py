"""The step pods' entrypoint (target k3s): ``python -m ml_assets.pipes_step <step>``, started by K8sPipesStepRunner.

What to do and where services answer arrive as Pipes extras; the S3 keys only from the environment, filled from
Secrets through envFrom, because extras are logged. The step's outcome goes back as one Pipes custom message,
``{"result": <StepResult>}`` or ``{"refused": <reason>}``, which the orchestrator turns into the same events as
the in-process runner (custom rather than Pipes' own check report, which has no description).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from dagster_pipes import PipesContext, open_dagster_pipes

from ml_assets.steps.base import Step, StepInputs, StepRefused
from ml_assets.steps.catalog import STEPS


def step_named(argv: Sequence[str]) -> Step:
    if len(argv) != 1 or argv[0] not in STEPS:
        raise ValueError(f"usage: python -m ml_assets.pipes_step <step>, one of {', '.join(STEPS)}; got {list(argv)}")
    return STEPS[argv[0]]


def run(pipes: PipesContext, argv: Sequence[str], environ: Mapping[str, str]) -> None:
    step = step_named(argv)
    inputs = StepInputs(step, pipes.extras, environ)  # every input checked before anything is read or written
    pipes.log.info(f"{step.name}: running with extras {sorted(pipes.extras)}")
    try:
        result = step.work(inputs)
    except StepRefused as refused:  # the pod succeeds: refusing bad input is the step's answer, not a crash
        pipes.report_custom_message({"refused": str(refused)})
        return
    pipes.report_custom_message({"result": result.to_json()})


def main(argv: Sequence[str] | None = None) -> None:
    with open_dagster_pipes() as pipes:  # an exception here is reported to Dagster, then fails the pod
        run(pipes, sys.argv[1:] if argv is None else argv, os.environ)


if __name__ == "__main__":
    main()

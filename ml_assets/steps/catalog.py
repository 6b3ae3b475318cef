"""Every step by name: what the pod entrypoint's argument and the runners look up."""

from __future__ import annotations

from ml_assets.steps.base import Step
from ml_assets.steps.batches import RAW, VALIDATED
from ml_assets.steps.drift_report import DRIFT
from ml_assets.steps.train import TRAIN

STEPS: dict[str, Step] = {step.name: step for step in (RAW, VALIDATED, DRIFT, TRAIN)}

"""`platformctl`'s step: a selection of one location materialized in process, recorded as the workstation's."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import dagster as dg
import pytest

from platform_core.orchestrator.instance import WORKSTATION_RUN_TAG
from platformctl.materialize import Step, materialize

LOCATION = """
import dagster as dg

@dg.asset
def first() -> None:
    return None

@dg.asset(deps=[first])
def second() -> None:
    return None

defs = dg.Definitions(assets=[first, second])
"""


def test_a_step_runs_its_selection_tagged_as_the_workstations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny_location.py").write_text(LOCATION)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tiny_location", raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        ran = materialize(instance, Step("tiny", "tiny_location", "key:second"), tmp_path / "step.log")
        [run] = instance.get_runs()
        assert ran.success and ran.run_id == run.run_id  # the run it reports is the run it made
        assert run.tags[WORKSTATION_RUN_TAG] == socket.gethostname()  # the cluster's run monitoring spares it
        materialized = {key.to_user_string() for key in instance.get_asset_keys()}
    assert materialized == {"second"}

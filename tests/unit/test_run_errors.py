"""A failed step is reported by its own first line, not by Dagster's wrapper; a definitions load error by its one
line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from platform_core.runs import run_report


@dg.asset
def refuses() -> None:
    raise ValueError("host.address: 10.0.0.9 did not answer\nsecond line of detail")


def test_a_failed_step_reports_its_own_first_line() -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([refuses], instance=instance, raise_on_error=False)
        report = run_report(instance, result.run_id)
    assert report.status == "FAILURE"
    (line,) = report.failures.values()
    assert line == "ValueError: host.address: 10.0.0.9 did not answer"


def test_a_bad_platform_yaml_is_one_line_from_dagster_asset_materialize(tmp_path: Path) -> None:
    config = tmp_path / "platform.yaml"
    config.write_text("services:\n  mlflow:\n    port: abc\n")
    (tmp_path / "home").mkdir()
    env = {**os.environ, "PLATFORM_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path / "home")}
    dagster = str(Path(sys.executable).parent / "dagster")
    done = subprocess.run(
        [dagster, "asset", "materialize", "-m", "platform_assets.definitions", "--select", "*"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == f"error: {config}: services.mlflow.port: must be a valid integer (got 'abc')"

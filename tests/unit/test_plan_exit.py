"""`platformctl plan` exit codes (as `terraform plan -detailed-exitcode`) and a second stack whose ports are taken:
refused as blocked, not planned as "would start"."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

from platformctl.plan import exit_code
from tests.stacks import write_stack_config


def _plan(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platformctl.cli", "--config", str(config), "plan", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_exit_code_reads_the_lines() -> None:
    assert (
        exit_code(
            ["postgres: no change", "host: records facts only (the local target changes nothing on this machine)"]
        )
        == 0
    )
    assert exit_code(["postgres: no change", "seaweedfs: would start seaweedfs"]) == 2
    assert exit_code(["state: would create the state directory /x"]) == 2
    assert exit_code(["postgres: would start postgres", "mlflow_server: blocked: port 5000 is held"]) == 1


def test_a_port_taken_by_another_process_blocks_the_plan(tmp_path: Path) -> None:
    config = write_stack_config(tmp_path)
    port = yaml.safe_load(config.read_text())["services"]["mlflow"]["port"]
    with socket.socket() as squatter:  # another stack, or any process that is not this stack's
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = _plan(config, "--select", "host,postgres,mlflow_server")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    held = f"services.mlflow.port port {port} is held by "
    assert lines["mlflow_server"].startswith(f"blocked: {held}") and lines["host"].startswith(f"blocked: {held}")
    assert lines["postgres"] == "would start postgres"
    assert not (tmp_path / "state").exists()  # a plan writes nothing


def test_a_fresh_stack_plans_changes(tmp_path: Path) -> None:
    done = _plan(write_stack_config(tmp_path), "--select", "host,postgres")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "postgres: would start postgres" in done.stdout


def test_every_asset_of_both_locations_has_a_decision_in_the_local_target(tmp_path: Path) -> None:
    """Plan support by construction: an asset without a registered decision fails here, not in a user's plan."""
    from platform_core.decisions import decision_of
    from platformctl.plan import known_assets

    assets = known_assets(write_stack_config(tmp_path))
    assert {"host", "postgres", "buckets/datasets", "trained_model", "drift_report", "prediction_log"} <= set(assets)
    assert [asset for asset in assets if decision_of(asset, "local") is None] == []
    assert not (tmp_path / "state").exists()  # listing the assets writes nothing either

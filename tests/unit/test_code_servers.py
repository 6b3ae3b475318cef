"""The local code servers: the webserver and the daemon load both locations from them (no server of their own),
and what a server loads (the code, platform.yaml) is part of its spec, so an edit restarts it at the next `up`."""

from __future__ import annotations

from pathlib import Path

import yaml

from platform_core.orchestrator.services import LOCATIONS, DagsterResource
from tests.stacks import write_stack_config


def _dagster(config: Path) -> DagsterResource:
    data = yaml.safe_load(config.read_text())
    return DagsterResource(config_path=str(config), state_dir=data["state_dir"])


def _hashes(config: Path) -> dict[str, str]:
    return {spec.name: spec.config_hash for spec in _dagster(config).code_server_specs()}


def test_the_workspace_names_the_shared_servers(tmp_path: Path) -> None:
    dagster = _dagster(write_stack_config(tmp_path))
    specs = dagster.code_server_specs()
    workspace = yaml.safe_load(specs[0].files[dagster.workspace_file])
    servers = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert [s["location_name"] for s in servers] == list(LOCATIONS)
    assert [(s["host"], s["port"]) for s in servers] == [("127.0.0.1", spec.ports[0]) for spec in specs]
    assert all("127.0.0.1" in spec.argv and "grpc" in spec.argv for spec in specs)


def test_an_edited_config_restarts_the_code_servers_and_nothing_else_does(tmp_path: Path) -> None:
    config = write_stack_config(tmp_path)
    before = _hashes(config)
    assert _hashes(config) == before  # the same code and config: the same spec
    data = yaml.safe_load(config.read_text())
    data["ml"]["drift_share"] = 0.25  # read by the definitions (the data drift sensor's threshold)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    after = _hashes(config)
    assert set(after) == set(before) and all(after[name] != before[name] for name in before)

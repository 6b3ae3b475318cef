"""The instance's event log (platform_core/orchestrator/event_log_storage.py) in the stack's real Postgres: Dagster's
runs go through it, and its schema questions reach the database only until the answer is yes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage

from platform_core.orchestrator.event_log_storage import SchemaCachingEventLogStorage
from platform_core.orchestrator.instance import open_instance, write_instance_yaml
from platform_core.state import StateDir, load_platform

pytestmark = pytest.mark.integration
MISSING = "platform_no_such_table"


@dg.asset(name="event_log_probe", check_specs=[dg.AssetCheckSpec("probe_passes", asset="event_log_probe")])
def probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


def test_schema_questions_reach_postgres_until_the_answer_is_yes(
    stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _ = load_platform(stack.config_path)
    state = StateDir(tmp_path / "home")  # the stack's `dagster` database, through a dagster.yaml as platformctl writes
    state.ensure()
    state.secrets_file.write_text(stack.resource("postgres_resource").state.secrets_file.read_text())
    write_instance_yaml(cfg, state)
    asked: list[str] = []
    table, column = PostgresEventLogStorage.has_table, PostgresEventLogStorage._has_asset_key_col_on_connection
    # what the base class would ask the database: tables, and asset_keys columns (asset reads and event writes)
    monkeypatch.setattr(
        PostgresEventLogStorage, "has_table", lambda self, name: asked.append(name) or table(self, name)
    )
    monkeypatch.setattr(
        PostgresEventLogStorage,
        "_has_asset_key_col_on_connection",
        lambda self, conn, name: asked.append(name) or column(self, conn, name),
    )

    with open_instance(cfg, state) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, SchemaCachingEventLogStorage)
        first = dg.materialize([probe], instance=instance)
        assert first.success and asked  # Dagster asks while it writes a materialization and a check
        asked.clear()
        again = dg.materialize([probe], instance=instance)
        assert again.success and asked == []  # every answer was yes, and is remembered
        assert instance.get_latest_materialization_event(probe.key) is not None
        assert storage.has_asset_key_col("last_materialization_timestamp") and asked == []
        assert not storage.has_table(MISSING) and not storage.has_table(MISSING)
        assert asked == [MISSING, MISSING]  # a no is asked again: a migration elsewhere may add the table

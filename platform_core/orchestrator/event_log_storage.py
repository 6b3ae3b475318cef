"""Dagster's Postgres event log, minus the schema questions it asks again and again.

Before most event writes and asset reads, Dagster's SQL event log asks by reflection whether a table or an
`asset_keys` column exists (`has_table`, and `_has_asset_key_col_on_connection`, which `has_asset_key_col` and
every asset event's write go through: a catalog query each, ~9 per step, about half of a step's cost in a no-op
`make up`, measured with cProfile). Migrations only ever add tables and columns, so a "yes" holds for the life of
the storage and is remembered; a "no" is asked again (a `dagster instance migrate` in another process may add it
meanwhile). The column question has no public name to override: dagster-postgres is pinned, and
tests/integration/test_event_log_storage.py counts what still reaches the database. Everything else is
`PostgresEventLogStorage`'s own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import Connection


class SchemaCachingEventLogStorage(PostgresEventLogStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._present: set[tuple[str, str]] = set()  # before the base's __init__, which may already ask
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config_value(  # inst_data: Dagster's ConfigurableClassData, which it exports under _serdes only
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> SchemaCachingEventLogStorage:
        # as PostgresEventLogStorage.from_config_value builds itself (dagster-postgres pinned), but this class
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def has_table(self, table_name: str) -> bool:
        key = ("table", table_name)
        if key not in self._present and super().has_table(table_name):
            self._present.add(key)
        return key in self._present

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        key = ("asset_keys column", column_name)
        if key not in self._present and super()._has_asset_key_col_on_connection(conn, column_name):
            self._present.add(key)
        return key in self._present

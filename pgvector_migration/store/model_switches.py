"""The record of each model switch, kept in the live state schema (`pgvector_migration`) so
`switch` can say which model the live table holds and a rollback which settings it restores.

A switch's record is written in the cutover's own transaction, into the schema that has just
become the live one (the shadow's), so it moves with its table: after a rollback the record of
the cutover sits in `pgvector_migration_previous`, beside the table it describes.

With `--write-openwebui-settings` a record also keeps the Open WebUI settings the step wrote
and the values they replaced (`openwebui_config`: keys, before, after; a key missing from
`before` had no row), so a rollback puts back exactly what was there. The column is added in
place (ADD COLUMN IF NOT EXISTS, in the record's own transaction) like the table itself is
made, and read through `to_jsonb(row)` so a table made before it reads as NULL without a
write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgvector_migration.store.names import SCHEMA
from pgvector_migration.store.table_swap import schema_exists

SWITCH_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {}.model_switch (
    switched_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL,
    from_engine text NOT NULL,
    from_model text NOT NULL,
    from_dimension integer,
    to_engine text NOT NULL,
    to_model text NOT NULL,
    to_dimension integer
)
"""
OPENWEBUI_CONFIG_COLUMN_DDL = (
    "ALTER TABLE {}.model_switch ADD COLUMN IF NOT EXISTS openwebui_config jsonb"
)


@dataclass(frozen=True)
class ModelSettings:
    """What a chunk table's vectors were made with, as Open WebUI's settings name it."""

    engine: str
    model: str
    dimension: int | None

    def describe(self) -> str:
        engine = self.engine or "local (sentence-transformers)"
        return f"{self.model} ({engine}, {self.dimension or '?'} dimensions)"


@dataclass(frozen=True)
class SwitchRecord:
    switched_at: datetime
    action: str
    before: ModelSettings
    after: ModelSettings
    openwebui_config: dict[str, Any] | None = None


def record_switch(
    connection: psycopg.Connection,
    action: str,
    before: ModelSettings,
    after: ModelSettings,
    openwebui_config=None,
    schema: str = SCHEMA,
) -> None:
    """Record a cutover or rollback in `schema`, in the caller's transaction;
    `openwebui_config` is the `ConfigChange` of Open WebUI's settings the step writes, if
    any."""
    # A rollback to a table that was never migrated by us (Open WebUI's own writes) finds no
    # state schema of that table: the record makes one, holding only the record.
    connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    connection.execute(sql.SQL(SWITCH_TABLE_DDL).format(sql.Identifier(schema)))
    connection.execute(sql.SQL(OPENWEBUI_CONFIG_COLUMN_DDL).format(sql.Identifier(schema)))
    connection.execute(
        sql.SQL(
            "INSERT INTO {}.model_switch (action, from_engine, from_model, from_dimension, "
            "to_engine, to_model, to_dimension, openwebui_config) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(schema)),
        (
            action,
            before.engine,
            before.model,
            before.dimension,
            after.engine,
            after.model,
            after.dimension,
            None if openwebui_config is None else Jsonb(openwebui_config.as_record()),
        ),
    )


def switch_history(connection: psycopg.Connection, schema: str = SCHEMA) -> list[SwitchRecord]:
    """The switches recorded in `schema`, oldest first; none when there were none."""
    if not schema_exists(connection, schema):
        return []
    found = connection.execute("SELECT to_regclass(%s)", (f"{schema}.model_switch",)).fetchone()
    if found[0] is None:
        return []
    rows = connection.execute(
        sql.SQL(
            "SELECT switched_at, action, from_engine, from_model, from_dimension, to_engine, "
            "to_model, to_dimension, to_jsonb(s) -> 'openwebui_config' FROM {}.model_switch s "
            "ORDER BY switched_at"
        ).format(sql.Identifier(schema))
    ).fetchall()
    return [
        SwitchRecord(row[0], row[1], ModelSettings(*row[2:5]), ModelSettings(*row[5:8]), row[8])
        for row in rows
    ]

"""pgvector's search settings as Open WebUI's sessions see them, and changing them for good.

Open WebUI cannot be patched to widen its searches, but PostgreSQL applies `ALTER DATABASE ...
SET` and `ALTER ROLE ... SET` to every new session of that database or role, so settings made
there reach Open WebUI's own queries. Every change is logged and recorded with the value it
replaced (from `pg_db_role_setting`), so `--untune` puts back exactly what was there.

The record lives in a schema of its own, `pgvector_migration_tuning`, not in a chunk table's
state schema: the settings belong to the database or role, and a model switch renames the state
schemas with their tables (the live one becomes `pgvector_migration_previous`), which would take
the record away from the database it describes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgvector_migration.resources.vector_index import vector_index_name
from pgvector_migration.store.names import DOCUMENT_CHUNK, SCHEMA

# Settings of the database and roles, whichever chunk table is live.
TUNING_SCHEMA = f"{SCHEMA}_tuning"
TUNING_TABLE = f"{TUNING_SCHEMA}.search_tuning"

log = logging.getLogger(__name__)

TUNABLE = (
    "hnsw.iterative_scan",
    "hnsw.ef_search",
    "hnsw.max_scan_tuples",
    "ivfflat.iterative_scan",
    "ivfflat.probes",
    "ivfflat.max_probes",
)
ITERATIVE_SCAN_MODES = ("off", "relaxed_order", "strict_order")


class TuningError(RuntimeError):
    """A tuning request that cannot be carried out as asked; nothing was changed."""


@dataclass(frozen=True)
class SearchIndex:
    """What searches of document_chunk run on: pgvector's version and the ANN index."""

    pgvector_version: str
    method: str | None
    lists: int | None

    @property
    def iterative_scans(self) -> bool:
        """pgvector 0.8 brought iterative index scans."""
        parts = [int(p) for p in self.pgvector_version.split(".")[:2] if p.isdigit()]
        return parts >= [0, 8]


def describe_search_index(
    connection: psycopg.Connection, table: str = DOCUMENT_CHUNK
) -> SearchIndex:
    """pgvector's version and the vector index's method and lists of `table` (Open WebUI's
    idx_document_chunk_vector, or a model switch's shadow's); None without an index: then
    every search is exact."""
    version = connection.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()
    row = connection.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = %s AND indexname = %s",
        (table, vector_index_name(table)),
    ).fetchone()
    method = lists = None
    if row:
        found = re.search(r"USING (\w+)", row[0])
        method = found.group(1).lower() if found else None
        lists_found = re.search(r"lists\s*=\s*'?(\d+)", row[0])
        lists = int(lists_found.group(1)) if lists_found else None
    return SearchIndex(version[0] if version else "", method, lists)


def open_webui_session_settings(
    index: SearchIndex, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What Open WebUI 0.12.4 sets (SET LOCAL) before each search: the iterative scan of its
    index method, per PGVECTOR_ITERATIVE_SCAN (default relaxed_order; ivfflat accepts only
    relaxed_order), when pgvector is 0.8 or newer. Its method is PGVECTOR_INDEX_METHOD, else
    hnsw for a halfvec column, else ivfflat; we read it from the index itself."""
    environ = os.environ if environ is None else environ
    mode = environ.get("PGVECTOR_ITERATIVE_SCAN", "relaxed_order").strip().lower()
    if mode not in ITERATIVE_SCAN_MODES:
        mode = "relaxed_order"
    if mode == "off" or index.method not in ("hnsw", "ivfflat") or not index.iterative_scans:
        return {}
    if index.method == "ivfflat":
        mode = "relaxed_order"
    return {f"{index.method}.iterative_scan": mode}


def set_local(connection: psycopg.Connection, settings: Mapping[str, str]) -> None:
    """Apply settings to the current transaction only, as Open WebUI's SET LOCAL does."""
    for name, value in settings.items():
        connection.execute("SELECT set_config(%s, %s, true)", (name, value))


@dataclass(frozen=True)
class TuningScope:
    """Where settings go: the database (every role's sessions) or one role."""

    role: str | None = None

    def target(self, connection: psycopg.Connection) -> str:
        if self.role:
            return self.role
        return connection.execute("SELECT current_database()").fetchone()[0]

    def alter(self, connection: psycopg.Connection) -> sql.Composed:
        kind = "ROLE" if self.role else "DATABASE"
        return sql.SQL("ALTER {} {}").format(sql.SQL(kind), sql.Identifier(self.target(connection)))

    def current(self, connection: psycopg.Connection) -> dict[str, str]:
        """The settings stored for this database or role in pg_db_role_setting."""
        if self.role:
            where = "setdatabase = 0 AND setrole = (SELECT oid FROM pg_roles WHERE rolname = %s)"
            params: tuple = (self.role,)
        else:
            where = (
                "setrole = 0 AND setdatabase = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            params = ()
        row = connection.execute(
            f"SELECT setconfig FROM pg_db_role_setting WHERE {where}", params
        ).fetchone()
        return dict(item.split("=", 1) for item in (row[0] if row and row[0] else []))


def _ensure_record(connection: psycopg.Connection) -> None:
    """The record table, with any records an earlier version kept in a state schema (where a
    model switch moved them to `pgvector_migration_previous`) brought over, oldest first so the
    value first replaced stays the one `--untune` restores. In the caller's transaction."""
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {TUNING_SCHEMA}")
    connection.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {TUNING_TABLE} (
            scope text NOT NULL,
            target text NOT NULL,
            setting text NOT NULL,
            previous text,
            applied text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, target, setting)
        )
        """
    )
    earlier = connection.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'search_tuning' "
        "AND table_schema LIKE %s AND table_schema <> %s ORDER BY 1",
        (f"{SCHEMA}%", TUNING_SCHEMA),
    ).fetchall()
    for (schema,) in earlier:
        old = sql.SQL("{}.search_tuning").format(sql.Identifier(schema))
        connection.execute(
            sql.SQL(
                "INSERT INTO {} SELECT scope, target, setting, previous, applied, applied_at "
                "FROM {} ORDER BY applied_at ON CONFLICT DO NOTHING"
            ).format(sql.SQL(TUNING_TABLE), old)
        )
        connection.execute(sql.SQL("DROP TABLE {}").format(old))


def _setting(name: str) -> sql.SQL:
    """A setting's name as SQL; only names of TUNABLE (checked before) ever get here."""
    if name not in TUNABLE:
        raise TuningError(f"not a search setting we tune: {name}")
    return sql.SQL(name)


def _scope_name(scope: TuningScope) -> str:
    return "role" if scope.role else "database"


def apply_tuning(
    connection: psycopg.Connection,
    settings: Mapping[str, str],
    scope: TuningScope,
    report: Callable[[str], None] = log.info,
) -> list[str]:
    """Set `settings` for the database or role, recording each value they replace (only the
    first time: tuning twice still untunes to the original). Returns the statements run."""
    unknown = sorted(set(settings) - set(TUNABLE))
    if unknown:
        raise TuningError(f"not a search setting we tune: {', '.join(unknown)}")
    statements = []
    with connection.transaction():
        _ensure_record(connection)
        target = scope.target(connection)
        before = scope.current(connection)
        for name, value in settings.items():
            statement = sql.SQL("{} SET {} = {}").format(
                scope.alter(connection), _setting(name), sql.Literal(value)
            )
            connection.execute(statement)
            connection.execute(
                f"""
                INSERT INTO {TUNING_TABLE} (scope, target, setting, previous, applied)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (scope, target, setting) DO UPDATE SET applied = EXCLUDED.applied,
                    applied_at = now()
                """,
                (_scope_name(scope), target, name, before.get(name), value),
            )
            statements.append(statement.as_string(connection))
    for statement in statements:
        report(statement)
    return statements


def remove_tuning(
    connection: psycopg.Connection,
    scope: TuningScope,
    report: Callable[[str], None] = log.info,
) -> list[str]:
    """Put back what `apply_tuning` replaced: the recorded previous value, or RESET where
    there was none. Returns the statements run (none when nothing was tuned)."""
    statements = []
    with connection.transaction():
        _ensure_record(connection)
        target = scope.target(connection)
        recorded = connection.execute(
            f"SELECT setting, previous FROM {TUNING_TABLE} "
            "WHERE scope = %s AND target = %s ORDER BY setting",
            (_scope_name(scope), target),
        ).fetchall()
        for name, previous in recorded:
            identifier = _setting(name)
            if previous is None:
                statement = sql.SQL("{} RESET {}").format(scope.alter(connection), identifier)
            else:
                statement = sql.SQL("{} SET {} = {}").format(
                    scope.alter(connection), identifier, sql.Literal(previous)
                )
            connection.execute(statement)
            statements.append(statement.as_string(connection))
        connection.execute(
            f"DELETE FROM {TUNING_TABLE} WHERE scope = %s AND target = %s",
            (_scope_name(scope), target),
        )
    for statement in statements:
        report(statement)
    return statements

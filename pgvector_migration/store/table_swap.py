"""Putting a table built beside Open WebUI's live `document_chunk` in its place, in one
transaction, and back again.

A model switch builds a complete second table (the shadow) while Open WebUI keeps searching the
live one. The swap then only renames: the live table and its indexes become the previous ones,
the shadow and its indexes take the names Open WebUI expects (`document_chunk`,
`idx_document_chunk_vector`, `idx_document_chunk_collection_name`, ...). Renames change the
catalog, not the rows, so a swap takes as long at a million rows as at a thousand. A query of
Open WebUI's that arrives during the swap waits for its lock and then reads the new table
(PostgreSQL looks a table name up again after waiting for a lock on it), and the transaction
either commits every rename or none: no reader ever sees half a switch.

Index and constraint names carry their table's name (Open WebUI's `idx_{table}_{what}`,
PostgreSQL's `{table}_pkey` and `{table}_{column}_not_null`), so they are renamed with it, and
each table's state schema (`names.state_schema`: its ledger, embedding cache, leases, failures)
is renamed with it in the same transaction: `pgvector_migration_shadow` becomes
`pgvector_migration`, the live one `pgvector_migration_previous`, so the ledger always describes
the table of the same name, and a rollback brings the old ledger back with the old table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgvector_migration.store.names import state_schema

SHADOW_SUFFIX = "_shadow"
PREVIOUS_SUFFIX = "_previous"
SWAPPING_SUFFIX = "_swapping"
# How long the swap waits for Open WebUI's queries in flight to finish before it gives up and
# leaves everything as it was (new queries queue behind the waiting swap meanwhile).
DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS = 10.0


class SwapRefused(RuntimeError):
    """The tables are not in the state a swap needs; nothing was changed."""


@dataclass(frozen=True)
class SwapResult:
    """What a swap renamed, and how long the transaction took (lock wait included)."""

    renamed: tuple[tuple[str, str], ...]
    seconds: float


def shadow_table(live: str) -> str:
    """The table a model switch builds beside `live`."""
    return live + SHADOW_SUFFIX


def previous_table(live: str) -> str:
    """The table a cutover keeps the replaced `live` table under, for a rollback."""
    return live + PREVIOUS_SUFFIX


def table_exists(connection: psycopg.Connection, table: str) -> bool:
    return connection.execute("SELECT to_regclass(%s)", (_quoted(table),)).fetchone()[0] is not None


def schema_exists(connection: psycopg.Connection, schema: str) -> bool:
    return (
        connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        is not None
    )


def cutover(
    connection: psycopg.Connection,
    live: str,
    lock_timeout_seconds: float = DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS,
) -> SwapResult:
    """The shadow becomes `live`; the live table becomes the previous one.

    Refused while a previous table is still kept (finish or roll back the last switch first),
    or when there is no shadow to put in place. Called inside a transaction of the caller's,
    the renames commit with it and the locks are held until then: a model switch re-checks
    Open WebUI's data there, and rolls everything back when it changed
    (`model_switch_cutover`)."""
    shadow, previous = shadow_table(live), previous_table(live)
    _require(connection, live, shadow)
    if table_exists(connection, previous) or schema_exists(connection, state_schema(previous)):
        raise SwapRefused(
            f"{previous} still holds the table a previous switch replaced: finish that switch "
            f"(drop {previous} and {state_schema(previous)}) or roll it back before switching "
            "again"
        )
    return _in_one_transaction(
        connection,
        (live, shadow),
        [(live, previous), (shadow, live)],
        lock_timeout_seconds,
    )


def rollback(
    connection: psycopg.Connection,
    live: str,
    lock_timeout_seconds: float = DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS,
) -> SwapResult:
    """Exchange `live` and the previous table: after a cutover, the old table serves again
    and the new one waits as the previous; a second rollback switches forward again."""
    previous = previous_table(live)
    _require(connection, live, previous)
    swapping = live + SWAPPING_SUFFIX
    return _in_one_transaction(
        connection,
        (live, previous),
        [(live, swapping), (previous, live), (swapping, previous)],
        lock_timeout_seconds,
    )


def drop_previous(connection: psycopg.Connection, live: str) -> bool:
    """Drop the previous table and its state schema, ending the switch; False when there was
    neither."""
    return _drop_with_state(connection, previous_table(live))


def drop_shadow(connection: psycopg.Connection, live: str) -> bool:
    """Drop an unfinished shadow table and its state schema (a switch abandoned before its
    cutover); False when there was neither."""
    return _drop_with_state(connection, shadow_table(live))


def _drop_with_state(connection: psycopg.Connection, table: str) -> bool:
    dropped = False
    with connection.transaction():
        if table_exists(connection, table):
            connection.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
            dropped = True
        schema = _state_schema_of(table)
        if schema and schema_exists(connection, schema):
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            dropped = True
    return dropped


def _state_schema_of(table: str) -> str | None:
    """The state schema named after `table`, or None for a table outside the naming rule."""
    try:
        return state_schema(table)
    except ValueError:
        return None


def _require(connection: psycopg.Connection, *tables: str) -> None:
    missing = [table for table in tables if not table_exists(connection, table)]
    if missing:
        raise SwapRefused(f"no table {' or '.join(missing)} to swap: nothing was changed")


def _in_one_transaction(
    connection: psycopg.Connection,
    tables: tuple[str, ...],
    renames: list[tuple[str, str]],
    lock_timeout_seconds: float,
) -> SwapResult:
    """Lock every table first, in one statement (no rename waits halfway holding the other's
    lock), then rename; all or nothing."""
    started = time.perf_counter()
    done: list[tuple[str, str]] = []
    with connection.transaction():
        connection.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(lock_timeout_seconds * 1000)}ms")
            )
        )
        connection.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(table) for table in tables)
            )
        )
        for old, new in renames:
            done.extend(_rename_table(connection, old, new))
        for old, new in renames:
            done.extend(_rename_state_schema(connection, old, new))
    return SwapResult(renamed=tuple(done), seconds=time.perf_counter() - started)


def _rename_table(connection: psycopg.Connection, old: str, new: str) -> list[tuple[str, str]]:
    """Rename a table with the constraints and indexes named after it: PostgreSQL names the
    primary key `{table}_pkey` (renaming a constraint renames its index) and, from version 18,
    the NOT NULL constraints `{table}_{column}_not_null`; Open WebUI names its indexes
    `idx_{table}_{what}`."""
    connection.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )
    renamed = [(old, new)]
    for constraint in _names(connection, CONSTRAINTS_SQL, new):
        if constraint.startswith(f"{old}_"):
            constraint_new = new + constraint[len(old) :]
            connection.execute(
                sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    sql.Identifier(new), sql.Identifier(constraint), sql.Identifier(constraint_new)
                )
            )
            renamed.append((constraint, constraint_new))
    for index in _names(connection, INDEXES_SQL, new):
        if index.startswith(f"idx_{old}_"):
            index_new = f"idx_{new}" + index[len(f"idx_{old}") :]
            connection.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(index), sql.Identifier(index_new)
                )
            )
            renamed.append((index, index_new))
    return renamed


def _rename_state_schema(
    connection: psycopg.Connection, old_table: str, new_table: str
) -> list[tuple[str, str]]:
    """Rename the state schema of `old_table` to that of `new_table` (catalog only, like the
    table's rename), when it has one; the renames follow the tables' order, so an exchange
    passes through the `_swapping` name as the tables do."""
    old, new = _state_schema_of(old_table), _state_schema_of(new_table)
    if not old or not new or not schema_exists(connection, old):
        return []
    connection.execute(
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )
    return [(old, new)]


CONSTRAINTS_SQL = "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) ORDER BY 1"
INDEXES_SQL = (
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE i.indrelid = to_regclass(%s) ORDER BY 1"
)


def _names(connection: psycopg.Connection, query: str, table: str) -> list[str]:
    return [row[0] for row in connection.execute(query, (_quoted(table),)).fetchall()]


def _quoted(table: str) -> str:
    """A table name as to_regclass reads it (quoted, so case and dots are taken literally)."""
    return '"' + table.replace('"', '""') + '"'

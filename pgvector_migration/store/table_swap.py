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
PostgreSQL's `{table}_pkey` and `{table}_{column}_not_null`), so they are renamed with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

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


def cutover(
    connection: psycopg.Connection,
    live: str,
    lock_timeout_seconds: float = DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS,
) -> SwapResult:
    """The shadow becomes `live`; the live table becomes the previous one.

    Refused while a previous table is still kept (finish or roll back the last switch first),
    or when there is no shadow to put in place."""
    shadow, previous = shadow_table(live), previous_table(live)
    _require(connection, live, shadow)
    if table_exists(connection, previous):
        raise SwapRefused(
            f"{previous} still holds the table a previous switch replaced: finish that switch "
            f"(drop {previous}) or roll it back before switching again"
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
    """Drop the previous table, ending the switch; False when there was none."""
    return _drop_if_exists(connection, previous_table(live))


def drop_shadow(connection: psycopg.Connection, live: str) -> bool:
    """Drop an unfinished shadow table (a switch abandoned before its cutover)."""
    return _drop_if_exists(connection, shadow_table(live))


def _drop_if_exists(connection: psycopg.Connection, table: str) -> bool:
    if not table_exists(connection, table):
        return False
    connection.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    return True


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

"""What Open WebUI's database holds that a chunk table is built from, as one comparable value:
every file, knowledge base, knowledge-base membership and memory, each by its id and the columns
that change when Open WebUI processes, edits or deletes it.

A model switch's cutover reads it before its last delta pass and again while it holds the lock
of the swap: any difference is something Open WebUI did that the shadow table has not seen
(`model_switch_cutover`). Only ids, hashes and timestamps are read (a memory's content too,
being short); of a file only its `hash`: Open WebUI sets it when it extracts the file, before
it writes the file's vectors, and the columns after the stored text (`updated_at`) would make
SQLite read every file's text to reach them. Under the
lock only one digest per table is computed (`detailed=False`: one hash over the rows in id
order, a few hundred milliseconds at 100,000 files where a digest per row takes seconds); the
rows that changed are named from a detailed read after the lock is released.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.openwebui_database import SourceDatabaseError

# Per table: the columns that identify a row, then those whose change matters, each read only
# where the table has it (older Open WebUI generations lack some).
TRACKED = {
    "file": (("id",), ("hash",)),
    "knowledge": (("id",), ("name", "description", "updated_at")),
    "knowledge_file": (("knowledge_id", "file_id"), ("updated_at",)),
    "memory": (("id",), ("user_id", "content", "updated_at")),
}
# Before `knowledge_file` (Open WebUI 0.6.41) a knowledge base listed its files in `data`.
LEGACY_MEMBERSHIP = "data"


@dataclass(frozen=True)
class SourceSnapshot:
    """Per tracked table, one digest of all its rows and (when detailed) each row's identity
    with a digest of what may change in it."""

    digests: Mapping[str, str]
    rows: Mapping[str, Mapping[str, str]]

    def changed_tables(self, later: SourceSnapshot) -> list[str]:
        """The tables whose rows differ between this snapshot and `later`."""
        tables = sorted(set(self.digests) | set(later.digests))
        return [t for t in tables if self.digests.get(t) != later.digests.get(t)]

    def changes(self, later: SourceSnapshot) -> list[str]:
        """What happened between this snapshot and `later`, one entry a row, e.g.
        `file 3f2a... added`, in table then id order."""
        found = []
        for table in sorted(set(self.rows) | set(later.rows)):
            before, after = self.rows.get(table, {}), later.rows.get(table, {})
            for key in sorted(set(before) | set(after)):
                if key not in before:
                    found.append(f"{table} {key} added")
                elif key not in after:
                    found.append(f"{table} {key} deleted")
                elif before[key] != after[key]:
                    found.append(f"{table} {key} changed")
        return found


def source_snapshot(openwebui: OpenWebUIResource, detailed: bool = True) -> SourceSnapshot:
    """Read the snapshot in one read transaction of the source (SQLite or PostgreSQL); without
    `detailed`, the table digests only."""
    engine = openwebui.engine()
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            present = set(inspector.get_table_names())
            digests, rows = {}, {}
            for table, (identity, tracked) in TRACKED.items():
                if table not in present:
                    continue
                columns = {column["name"] for column in inspector.get_columns(table)}
                watched = [name for name in tracked if name in columns]
                if table == "knowledge" and "knowledge_file" not in present:
                    watched.append(LEGACY_MEMBERSHIP)
                found = _table_rows(connection, table, identity, watched)
                encoded = repr(found).encode("utf-8", "surrogateescape")
                digests[table] = hashlib.sha256(encoded).hexdigest()
                if detailed:
                    rows[table] = _row_digests(found, len(identity))
    except sa.exc.SQLAlchemyError as error:
        raise SourceDatabaseError(
            f"cannot read Open WebUI database {openwebui.display_url()}: {error.orig or error}"
        ) from error
    return SourceSnapshot(digests, rows)


def _table_rows(
    connection: sa.Connection, table: str, identity: tuple[str, ...], watched: list[str]
) -> list[tuple]:
    """The identity and watched columns of every row, in identity order."""
    columns = ", ".join(f'"{name}"' for name in (*identity, *watched))
    # The driver's own cursor: SQLAlchemy's row objects cost more than the read itself.
    cursor = connection.connection.driver_connection.cursor()
    try:
        # Sorted here: a table scan in storage order reads far fewer pages than a walk of the
        # primary key's index.
        cursor.execute(f'SELECT {columns} FROM "{table}"')
        return sorted(tuple(row) for row in cursor.fetchall())
    finally:
        cursor.close()


def _row_digests(rows: list[tuple], identity: int) -> dict[str, str]:
    digests = {}
    for row in rows:
        key = "/".join(str(value) for value in row[:identity])
        values = "\x1f".join(repr(value) for value in row[identity:])
        digests[key] = hashlib.sha256(values.encode("utf-8", "surrogateescape")).hexdigest()
    return digests

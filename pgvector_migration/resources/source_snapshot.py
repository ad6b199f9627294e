"""What Open WebUI's database holds that a chunk table is built from, as one comparable value:
every file, knowledge base, knowledge-base membership and memory, each by its id and the columns
that change when Open WebUI processes, edits or deletes it.

A model switch's cutover reads it before its last delta pass and again while it holds the lock
of the swap: any difference is something Open WebUI did that the shadow table has not seen
(`model_switch_cutover`). Only ids, hashes and timestamps are read (a memory's content is
hashed here, being short); a file's stored text is not, since its `hash` column changes with it.
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
    "file": (("id",), ("hash", "updated_at")),
    "knowledge": (("id",), ("name", "description", "updated_at")),
    "knowledge_file": (("knowledge_id", "file_id"), ("updated_at",)),
    "memory": (("id",), ("user_id", "content", "updated_at")),
}
# Before `knowledge_file` (Open WebUI 0.6.41) a knowledge base listed its files in `data`.
LEGACY_MEMBERSHIP = "data"


@dataclass(frozen=True)
class SourceSnapshot:
    """Per tracked table, each row's identity and a digest of what may change in it."""

    rows: Mapping[str, Mapping[str, str]]

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


def source_snapshot(openwebui: OpenWebUIResource) -> SourceSnapshot:
    """Read the snapshot in one read transaction of the source (SQLite or PostgreSQL)."""
    engine = openwebui.engine()
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            present = set(inspector.get_table_names())
            rows = {}
            for table, (identity, tracked) in TRACKED.items():
                if table not in present:
                    continue
                columns = {column["name"] for column in inspector.get_columns(table)}
                watched = [name for name in tracked if name in columns]
                if table == "knowledge" and "knowledge_file" not in present:
                    watched.append(LEGACY_MEMBERSHIP)
                rows[table] = _table_rows(connection, table, identity, watched)
    except sa.exc.SQLAlchemyError as error:
        raise SourceDatabaseError(
            f"cannot read Open WebUI database {openwebui.display_url()}: {error.orig or error}"
        ) from error
    return SourceSnapshot(rows)


def _table_rows(
    connection: sa.Connection, table: str, identity: tuple[str, ...], watched: list[str]
) -> dict[str, str]:
    columns = ", ".join(f'"{name}"' for name in (*identity, *watched))
    digests = {}
    for row in connection.execute(sa.text(f'SELECT {columns} FROM "{table}"')):
        key = "/".join(str(value) for value in row[: len(identity)])
        values = "\x1f".join(repr(value) for value in row[len(identity) :])
        digests[key] = hashlib.sha256(values.encode("utf-8", "surrogateescape")).hexdigest()
    return digests

"""What every part of our state schema's readers and writers shares: where connections come
from, and whether this is a read-only view of tables that may not exist yet."""

from __future__ import annotations

from typing import Any

import psycopg

from pgvector_migration.store.connection import Connector


class StateAccess:
    """A reader and writer of some of the `pgvector_migration` tables; each method borrows a
    connection unless it is handed one (or a cursor) inside a caller's transaction."""

    def __init__(self, connect: Connector, read_only: bool = False, recorded: bool = True) -> None:
        """`read_only`: a dry run's or status's view, which records no failure and needs no
        right but SELECT; `recorded`: whether our tables exist (reads find nothing if not)."""
        self._connect = connect
        self.read_only = read_only
        self.recorded = recorded

    def _dict_rows(self, query: str, params: Any) -> list[dict[str, Any]]:
        """A query's rows as dicts; none when no run has made our tables yet (a read-only
        view looks without creating them)."""
        if not self.recorded:
            return []
        with (
            self._connect() as connection,
            connection.cursor(row_factory=psycopg.rows.dict_row) as cursor,
        ):
            cursor.execute(query, params)
            return cursor.fetchall()

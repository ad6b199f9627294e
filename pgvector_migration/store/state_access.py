"""What every part of our state schema's readers and writers shares: where connections come
from, and whether this is a read-only view of tables that may not exist yet."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from pgvector_migration.store.connection import Connector
from pgvector_migration.store.names import SCHEMA


class StateAccess:
    """A reader and writer of some of the tables of a state schema (`pgvector_migration`);
    each method borrows a connection unless it is handed one (or a cursor) inside a caller's
    transaction."""

    def __init__(
        self,
        connect: Connector,
        read_only: bool = False,
        recorded: bool = True,
        schema: str = SCHEMA,
    ) -> None:
        """`read_only`: a dry run's or status's view, which records no failure and needs no
        right but SELECT; `recorded`: whether our tables exist (reads find nothing if not);
        `schema`: the state schema of the chunk table these runs write (`names.state_schema`)."""
        self._connect = connect
        self.schema = schema
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

    def _replace_partitions(
        self,
        table: str,
        columns: Sequence[str],
        partition_keys: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Replace a table's rows of these partitions with `rows` (values of `columns`,
        partition key first) in one transaction, whatever the number of partitions."""
        with self._connect() as connection, connection.transaction():
            connection.execute(
                f"DELETE FROM {self.schema}.{table} WHERE partition_key = ANY(%s)",
                (list(partition_keys),),
            )
            with connection.cursor().copy(
                f"COPY {self.schema}.{table} ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)

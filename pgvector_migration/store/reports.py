"""Reports read from our state schema and from the chunk table: per-partition status, files
built from stored text, rows by kind, chunks stored twice, vectors of another dimension."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pgvector_migration.pipeline.text_source import FALLBACK_NOTE_PREFIX
from pgvector_migration.store.names import state_schema
from pgvector_migration.store.state_access import StateAccess
from pgvector_migration.store.target_table import ChunkTable, decryption_errors


class StatusReports(StateAccess):
    """What `status` shows of our runs."""

    def status_rows(self) -> list[dict[str, Any]]:
        """Per partition: files, (file, collection) units, units complete now (complete when
        checked, or written since), unsupported units, failed files, files built from stored
        text, last check."""
        return self._dict_rows(
            f"""
            SELECT c.partition_key,
                   count(DISTINCT c.file_id) AS files,
                   count(*) AS units,
                   count(*) FILTER (WHERE c.status = 'complete'
                                    OR w.written_at >= c.checked_at) AS complete,
                   count(*) FILTER (WHERE c.status = 'unsupported') AS unsupported,
                   (SELECT count(*) FROM {self.schema}.file_failure f
                     WHERE f.partition_key = c.partition_key) AS failed,
                   count(DISTINCT c.file_id) FILTER (
                       WHERE strpos(c.reason, %(fallback)s) > 0) AS from_stored_text,
                   max(c.checked_at) AS checked_at
            FROM {self.schema}.completeness c
            LEFT JOIN {self.schema}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
            GROUP BY c.partition_key
            ORDER BY c.partition_key
            """,
            {"fallback": FALLBACK_NOTE_PREFIX},
        )

    def unfinished_units(self) -> list[dict[str, Any]]:
        """The (file, collection) units the last check found needing work (missing, partial,
        stale) and not written since: a table is complete when there are none (and no
        failures)."""
        return self._dict_rows(
            f"""
            SELECT c.partition_key, c.file_id, c.collection_name, c.filename, c.status
            FROM {self.schema}.completeness c
            LEFT JOIN {self.schema}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
             AND w.written_at >= c.checked_at
            WHERE c.status IN ('missing', 'partial', 'stale') AND w.file_id IS NULL
            ORDER BY 1, 2, 3
            """,
            None,
        )

    def stored_text_files(self) -> list[dict[str, Any]]:
        """Files last built from Open WebUI's stored text instead of their upload, with why."""
        return self._dict_rows(
            f"""
            SELECT DISTINCT ON (file_id) partition_key, file_id, filename,
                   substr(reason, strpos(reason, %(fallback)s)) AS reason
            FROM {self.schema}.completeness WHERE strpos(reason, %(fallback)s) > 0
            ORDER BY file_id, partition_key
            """,
            {"fallback": FALLBACK_NOTE_PREFIX},
        )


def row_counts(table: ChunkTable, collection_names: Sequence[str]) -> dict[str, int]:
    """Rows per collection now in the table."""
    if not table.describe().exists:
        return {}
    with table.connect() as connection:
        rows = connection.execute(
            f"SELECT collection_name, count(*) FROM {table.name} "
            "WHERE collection_name = ANY(%s) GROUP BY 1",
            (list(collection_names),),
        ).fetchall()
    return dict(rows)


def file_row_owners(
    table: ChunkTable, collection_names: Sequence[str]
) -> list[tuple[str, str | None, int]]:
    """(collection, file id, rows) for every file collection and the named collections."""
    shape = table.describe()
    if not shape.exists:
        return []
    rows_sql, params = table.readable_rows(
        shape, "WHERE starts_with(collection_name, 'file-') OR collection_name = ANY(%(names)s)"
    )
    with table.connect() as connection, decryption_errors(table.name):
        return connection.execute(
            f"SELECT collection_name, metadata->>'file_id', count(*) FROM {rows_sql} "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            {**params, "names": list(collection_names)},
        ).fetchall()


def rows_by_kind(table: ChunkTable) -> dict[str, int]:
    """Rows per kind of collection: files, knowledge, knowledge-bases, memories, other."""
    if not table.describe().exists:
        return {}
    with table.connect() as connection:
        rows = connection.execute(
            f"""
            SELECT CASE
                WHEN starts_with(collection_name, 'file-') THEN 'file collections'
                WHEN collection_name = 'knowledge-bases' THEN 'knowledge-bases'
                WHEN starts_with(collection_name, 'user-memory-') THEN 'memories'
                WHEN starts_with(collection_name, 'web-search-') THEN 'web search'
                ELSE 'knowledge and other collections' END,
                count(*)
            FROM {table.name} GROUP BY 1
            """
        ).fetchall()
    return dict(rows)


def duplicate_chunks(
    table: ChunkTable, collection_names: Sequence[str] | None = None
) -> list[tuple[str, str, int, int, int]]:
    """Chunks stored twice: (collection, file id, copies, rows present, rows expected).

    Open WebUI itself writes equal chunks into one collection (two pages that begin with the
    same line; equal file chunks re-split into a knowledge collection), so equal text and
    metadata alone prove nothing. A chunk is stored twice when a (collection, file) holds
    such equal rows and more rows than its complete write had, by our record of that
    write; rows we never wrote are never judged. None: the whole table."""
    shape = table.describe()
    if not shape.exists:
        return []
    scope = "" if collection_names is None else "WHERE collection_name = ANY(%(names)s)"
    rows_sql, params = table.readable_rows(shape, scope)
    if collection_names is not None:
        params["names"] = list(collection_names)
    schema = state_schema(table.name)
    with table.connect() as connection, decryption_errors(table.name):
        recorded = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.written_collection",)
        ).fetchone()[0]
        if not recorded:
            return []
        return connection.execute(
            f"""
            WITH chunk AS MATERIALIZED (
                SELECT collection_name, metadata->>'file_id' AS file_id, text,
                       metadata - 'embedding_config' - 'hash' AS position
                FROM {rows_sql} WHERE metadata ? 'file_id'
            ), equal AS (
                SELECT collection_name, file_id, max(copies) AS copies FROM (
                    SELECT collection_name, file_id, count(*) AS copies FROM chunk
                    GROUP BY collection_name, file_id, md5(coalesce(text, '')), position
                    HAVING count(*) > 1
                ) groups GROUP BY 1, 2
            ), present AS (
                SELECT collection_name, file_id, count(*) AS rows FROM chunk GROUP BY 1, 2
            )
            SELECT e.collection_name, e.file_id, e.copies::int, p.rows::int,
                   w.chunk_count
            FROM equal e
            JOIN present p USING (collection_name, file_id)
            JOIN {schema}.written_collection w
              ON w.collection_name = e.collection_name AND w.file_id = e.file_id
            WHERE p.rows > w.chunk_count
            ORDER BY 1, 2
            LIMIT 1000
            """,
            params,
        ).fetchall()


def dimension_mismatches(
    table: ChunkTable, collection_names: Sequence[str] | None = None
) -> tuple[int | None, list[tuple[str, int, int]]]:
    """The column's dimension and the (collection, dimension, rows) groups whose vectors
    have another one. None: the whole table."""
    shape = table.describe()
    if not shape.exists:
        return None, []
    scope = "AND collection_name = ANY(%s)" if collection_names is not None else ""
    with table.connect() as connection:
        rows = connection.execute(
            f"""
            SELECT collection_name, vector_dims(vector), count(*) FROM {table.name}
            WHERE vector IS NOT NULL AND vector_dims(vector) <> %s {scope}
            GROUP BY 1, 2 ORDER BY 1, 2
            """,
            (shape.dimension or -1,)
            + (() if collection_names is None else (list(collection_names),)),
        ).fetchall()
    return shape.dimension, rows

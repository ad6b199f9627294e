"""The ledger of a run in our schema: the inventory of each partition, its completeness
report (which (file, collection) units to rewrite), and what was written and when."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from pgvector_migration.pipeline.completeness import Assessment, WrittenRecord
from pgvector_migration.pipeline.records import SourceFile
from pgvector_migration.store.state_access import StateAccess

INVENTORY_COLUMNS = (
    "partition_key",
    "file_id",
    "filename",
    "content_type",
    "knowledge_ids",
    "collections",
    "has_stored_content",
    "upload_path",
    "upload_problem",
)
COMPLETENESS_COLUMNS = (
    "partition_key",
    "file_id",
    "collection_name",
    "filename",
    "status",
    "expected_chunks",
    "present_chunks",
    "reason",
    "selected",
)


def forget_written(
    connection: psycopg.Connection,
    schema: str,
    collection_name: str,
    source_ids: Sequence[str] | None,
) -> None:
    """Forget what we wrote to a collection (or to these ids in it) in state schema `schema`,
    in the caller's transaction that deleted its rows."""
    if source_ids is None:
        connection.execute(
            f"DELETE FROM {schema}.written_collection WHERE collection_name = %s",
            (collection_name,),
        )
    else:
        connection.execute(
            f"DELETE FROM {schema}.written_collection "
            "WHERE collection_name = %s AND file_id = ANY(%s)",
            (collection_name, list(source_ids)),
        )


def record_written(
    cursor: psycopg.Cursor, schema: str, collection_name: str, file_id: str, record: WrittenRecord
) -> None:
    """Record a unit written in state schema `schema`, in the caller's transaction that wrote
    its rows, and drop its staged chunks."""
    cursor.execute(
        f"""
        INSERT INTO {schema}.written_collection (collection_name, file_id, content_hash,
            settings_fingerprint, embedding_model, chunk_count, written_at)
        VALUES (%s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (collection_name, file_id) DO UPDATE SET
            content_hash = EXCLUDED.content_hash,
            settings_fingerprint = EXCLUDED.settings_fingerprint,
            embedding_model = EXCLUDED.embedding_model,
            chunk_count = EXCLUDED.chunk_count,
            written_at = now()
        """,
        (
            collection_name,
            file_id,
            record.content_hash,
            record.settings_fingerprint,
            record.embedding_model,
            record.chunk_count,
        ),
    )
    cursor.execute(
        f"DELETE FROM {schema}.staged_chunk WHERE collection_name = %s AND file_id = %s",
        (collection_name, file_id),
    )


class Ledger(StateAccess):
    """Inventory, completeness and written units of our runs."""

    def replace_inventory(
        self, partition_keys: Sequence[str], files: Iterable[tuple[str, SourceFile]]
    ) -> None:
        """Replace the inventory of these partitions with (partition key, file) pairs."""
        self._replace_partitions(
            "inventory",
            INVENTORY_COLUMNS,
            partition_keys,
            (
                (
                    partition_key,
                    file.id,
                    file.filename,
                    file.content_type,
                    list(file.knowledge_ids),
                    file.collection_names(partition_key),
                    file.stored_content is not None,
                    str(file.upload_path) if file.upload_path else None,
                    file.upload_problem,
                )
                for partition_key, file in files
            ),
        )

    def inventory_file_ids(self, partition_keys: Sequence[str]) -> dict[str, list[str]]:
        """The inventoried file ids of each of these partitions (every key present)."""
        found: dict[str, list[str]] = {key: [] for key in partition_keys}
        if not self.recorded:
            return found
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT partition_key, file_id FROM {self.schema}.inventory "
                "WHERE partition_key = ANY(%s) ORDER BY partition_key, file_id",
                (list(partition_keys),),
            ).fetchall()
        for partition_key, file_id in rows:
            found[partition_key].append(file_id)
        return found

    def written_records(
        self, collection_names: Sequence[str]
    ) -> dict[tuple[str, str], WrittenRecord]:
        if not self.recorded:
            return {}
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT collection_name, file_id, content_hash, settings_fingerprint, "
                f"embedding_model, chunk_count FROM {self.schema}.written_collection "
                "WHERE collection_name = ANY(%s)",
                (list(collection_names),),
            ).fetchall()
        return {(r[0], r[1]): WrittenRecord(r[2], r[3], r[4], r[5]) for r in rows}

    def written_since(
        self, collection_names: Sequence[str], since: datetime
    ) -> set[tuple[str, str]]:
        """The (collection, file id) units written at or after `since`."""
        if not self.recorded:
            return set()
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT collection_name, file_id FROM {self.schema}.written_collection "
                "WHERE collection_name = ANY(%s) AND written_at >= %s",
                (list(collection_names), since),
            ).fetchall()
        return {(row[0], row[1]) for row in rows}

    def collections_written(self) -> set[str]:
        """Every collection we have written rows to."""
        if not self.recorded:
            return set()
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT DISTINCT collection_name FROM {self.schema}.written_collection"
            ).fetchall()
        return {row[0] for row in rows}

    def replace_completeness(
        self,
        partition_keys: Sequence[str],
        rows: Iterable[tuple[str, SourceFile, str, Assessment, bool]],
    ) -> None:
        """Store the report of these partitions: one row per (partition, file, collection) with
        its status and whether this run selected it for rewriting."""
        self._replace_partitions(
            "completeness",
            COMPLETENESS_COLUMNS,
            partition_keys,
            (
                (
                    partition_key,
                    file.id,
                    collection_name,
                    file.filename,
                    str(assessment.status),
                    assessment.expected_chunks,
                    assessment.present_chunks,
                    assessment.reason,
                    selected,
                )
                for partition_key, file, collection_name, assessment, selected in rows
            ),
        )

    def selected_units(self, partition_keys: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """Per file, the collections these partitions' run must rewrite, each with the
        partitions that selected it (a file's own collection is selected by every partition
        holding the file; it is still made once)."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT file_id, collection_name, partition_key FROM {self.schema}.completeness "
                "WHERE partition_key = ANY(%s) AND selected "
                "ORDER BY file_id, collection_name, partition_key",
                (list(partition_keys),),
            ).fetchall()
        selected: dict[str, dict[str, list[str]]] = {}
        for file_id, collection_name, partition_key in rows:
            selected.setdefault(file_id, {}).setdefault(collection_name, []).append(partition_key)
        return selected

    def completeness_rows(self, partition_keys: Sequence[str]) -> list[dict[str, Any]]:
        """The report rows of these partitions, each with its partition key and whether it was
        written since it was checked."""
        return self._dict_rows(
            f"""
            SELECT c.partition_key, c.file_id, c.collection_name, c.filename, c.status,
                   c.expected_chunks, c.present_chunks, c.reason, c.selected,
                   w.written_at IS NOT NULL AND w.written_at >= c.checked_at AS written
            FROM {self.schema}.completeness c
            LEFT JOIN {self.schema}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
            WHERE c.partition_key = ANY(%s)
            ORDER BY c.partition_key, c.filename, c.file_id, c.collection_name
            """,
            (list(partition_keys),),
        )

    def units_written_since(
        self, partition_keys: Sequence[str], since: datetime
    ) -> dict[str, tuple[int, int]]:
        """Per partition, the selected (file, collection) units written at or after `since`
        and their chunks: what one run wrote for each partition it covers."""
        found = {key: (0, 0) for key in partition_keys}
        with self._connect() as connection:
            rows = connection.execute(
                f"""
                SELECT c.partition_key, count(*), coalesce(sum(w.chunk_count), 0)
                FROM {self.schema}.completeness c
                JOIN {self.schema}.written_collection w
                  ON w.collection_name = c.collection_name AND w.file_id = c.file_id
                WHERE c.partition_key = ANY(%s) AND c.selected AND w.written_at >= %s
                GROUP BY c.partition_key
                """,
                (list(partition_keys), since),
            ).fetchall()
        for partition_key, units, chunks in rows:
            found[partition_key] = (units, int(chunks))
        return found

    def annotate_completeness(
        self,
        connection: psycopg.Connection,
        partition_keys: Sequence[str],
        file_id: str,
        reason: str,
    ) -> None:
        """Say why a file's units were built as they were (the stored text instead of the
        upload) where reports read completeness, without changing their status; on the
        caller's connection (chunking holds one for the whole run)."""
        connection.execute(
            f"UPDATE {self.schema}.completeness SET reason = CASE WHEN reason = '' THEN %s "
            "ELSE reason || '; ' || %s END "
            "WHERE partition_key = ANY(%s) AND file_id = %s AND strpos(reason, %s) = 0",
            (reason, reason, list(partition_keys), file_id, reason),
        )

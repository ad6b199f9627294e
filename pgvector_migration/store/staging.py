"""Chunks staged between chunking and writing: each selected unit's chunks, kept in our
schema until the unit is written, so embedding can resume where a stopped run left off."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
from psycopg.types.json import Jsonb

from pgvector_migration.pipeline.records import Chunk, WriteUnit
from pgvector_migration.store.state_access import StateAccess

STAGED_PAGE_ROWS = 2000


class StagedChunks(StateAccess):
    """Staged chunks: replaced per file by chunking, streamed per unit to the writer."""

    def stage_chunks(
        self,
        connection: psycopg.Connection,
        file_id: str,
        chunks_by_collection: dict[str, list[Chunk]],
        content_hash: str,
        settings_fingerprint: str,
    ) -> None:
        """Replace the staged chunks of one file's selected collections in one transaction, on
        the caller's connection (one for a whole partition: connecting per file costs more
        than the COPY)."""
        with connection.transaction():
            connection.execute(
                f"DELETE FROM {self.schema}.staged_chunk WHERE file_id = %s "
                "AND collection_name = ANY(%s)",
                (file_id, list(chunks_by_collection)),
            )
            with connection.cursor().copy(
                f"COPY {self.schema}.staged_chunk (collection_name, file_id, position, id, text, "
                "vmetadata, content_hash, settings_fingerprint) FROM STDIN"
            ) as copy:
                for chunks in chunks_by_collection.values():
                    for chunk in chunks:
                        copy.write_row(
                            (
                                chunk.collection_name,
                                chunk.file_id,
                                chunk.position,
                                chunk.id,
                                chunk.text,
                                Jsonb(chunk.metadata),
                                content_hash,
                                settings_fingerprint,
                            )
                        )

    def staged_units(self, partition_keys: Sequence[str]) -> Iterator[WriteUnit]:
        """Stream the staged chunks of these partitions' selected, not failed units, one unit
        at a time and each unit once (a file's own collection is selected by every partition
        holding it), so memory is bounded by the largest file, not the run. A unit written with
        the same content and settings since it was selected (by another run holding the same
        file, or by an earlier attempt of this step) is done and left out.

        Pages are read by key, each in its own short statement: no transaction stays open
        while units are embedded, so nothing holds locks or old snapshots meanwhile."""
        selected = f"""
            FROM {self.schema}.completeness c
            WHERE c.partition_key = ANY(%(keys)s) AND c.selected
              AND c.collection_name = s.collection_name AND c.file_id = s.file_id
              AND NOT EXISTS (SELECT 1 FROM {self.schema}.file_failure f
                              WHERE f.partition_key = c.partition_key
                                AND f.item_id = c.file_id)
        """
        query = f"""
            SELECT s.collection_name, s.file_id, s.content_hash, s.settings_fingerprint,
                   s.position, s.id, s.text, s.vmetadata,
                   (SELECT c.filename {selected} LIMIT 1) AS filename
            FROM {self.schema}.staged_chunk s
            WHERE (s.file_id, s.collection_name, s.position) > (%(file)s, %(name)s, %(position)s)
              AND EXISTS (SELECT 1 {selected})
            ORDER BY s.file_id, s.collection_name, s.position
            LIMIT {STAGED_PAGE_ROWS}
        """
        # Decided once, before the first page: a unit is either left out whole or read whole.
        done_query = f"""
            SELECT DISTINCT s.collection_name, s.file_id
            FROM {self.schema}.completeness c
            JOIN {self.schema}.staged_chunk s
              ON s.collection_name = c.collection_name AND s.file_id = c.file_id
            JOIN {self.schema}.written_collection w
              ON w.collection_name = s.collection_name AND w.file_id = s.file_id
            WHERE c.partition_key = ANY(%s) AND c.selected AND w.written_at >= c.checked_at
              AND w.content_hash = s.content_hash
              AND w.settings_fingerprint = s.settings_fingerprint
        """
        keys = list(partition_keys)
        unit: WriteUnit | None = None
        after = {"file": "", "name": "", "position": -1}
        with self._connect() as connection:
            done = {tuple(row) for row in connection.execute(done_query, (keys,))}
            while True:
                rows = connection.execute(query, {"keys": keys, **after}).fetchall()
                for row in rows:
                    collection_name, file_id, content_hash, fingerprint = row[:4]
                    position, chunk_id, text, metadata, filename = row[4:]
                    if (collection_name, file_id) in done:
                        continue
                    if unit is None or (unit.collection_name, unit.source_id) != (
                        collection_name,
                        file_id,
                    ):
                        if unit is not None:
                            yield unit
                        unit = WriteUnit(
                            collection_name, file_id, filename, content_hash, fingerprint, []
                        )
                    unit.chunks.append(
                        Chunk(chunk_id, collection_name, file_id, position, text, metadata)
                    )
                if len(rows) < STAGED_PAGE_ROWS:
                    break
                after = {"file": rows[-1][1], "name": rows[-1][0], "position": rows[-1][4]}
        if unit is not None:
            yield unit

"""Chunks staged between chunking and writing: each selected unit's chunks, kept in our
schema until the unit is written, so embedding can resume where a stopped run left off."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
from psycopg.types.json import Jsonb

from pgvector_migration.pipeline.records import Chunk, WriteUnit
from pgvector_migration.store.state_access import StateAccess

STAGED_PAGE_ROWS = 2000
# Units whose rows one series of pages reads (their keys travel with each page's statement).
UNITS_PER_READ = 500


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

        Which units to read is decided once, before any is read (a unit is read whole or left
        out whole), from the run's completeness rows, each looked up in staging by its key.
        Their rows are then read in pages by key, each page in its own short statement: no
        transaction stays open while units are embedded, so nothing holds locks or old
        snapshots meanwhile. After a run that streamed its units to the writer, staging holds
        next to nothing for its partitions, and this costs one lookup per unit; scanning
        staging instead (deleted rows of a million written chunks included) took minutes."""
        keys = list(partition_keys)
        with self._connect() as connection:
            units = connection.execute(self._units_to_read_query(), (keys,)).fetchall()
            for start in range(0, len(units), UNITS_PER_READ):
                window = units[start : start + UNITS_PER_READ]
                yield from self._read_units(connection, window)

    def _units_to_read_query(self) -> str:
        schema = self.schema
        return f"""
            SELECT c.collection_name, c.file_id, min(c.filename) FILTER (WHERE NOT c.failed)
            FROM (
                SELECT c.*, EXISTS (SELECT 1 FROM {schema}.file_failure f
                                    WHERE f.partition_key = c.partition_key
                                      AND f.item_id = c.file_id) AS failed
                FROM {schema}.completeness c
                WHERE c.partition_key = ANY(%s) AND c.selected
            ) c
            CROSS JOIN LATERAL (
                SELECT s.content_hash, s.settings_fingerprint FROM {schema}.staged_chunk s
                WHERE s.collection_name = c.collection_name AND s.file_id = c.file_id
                LIMIT 1
            ) s
            LEFT JOIN {schema}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
            GROUP BY c.collection_name, c.file_id
            HAVING bool_or(NOT c.failed)
               AND NOT bool_or(coalesce(w.written_at >= c.checked_at
                                        AND w.content_hash = s.content_hash
                                        AND w.settings_fingerprint = s.settings_fingerprint,
                                        false))
            ORDER BY c.file_id, c.collection_name
        """

    def _read_units(
        self, connection: psycopg.Connection, units: list[tuple[str, str, str]]
    ) -> Iterator[WriteUnit]:
        """The staged rows of `units` ((collection, file id, filename), in file id order), a
        page at a time, as whole units.

        Every unit comes from one statement, so from one snapshot: another run may re-stage a
        unit or, having written it, delete its staged rows between two pages, and a unit read
        across them would be a mix of two versions or cut short (and then written short). So
        a full page's last unit, which may go on in the next page, is left for the next page
        to read from its start; a unit larger than a page is read alone."""
        filenames = {(collection, file_id): name for collection, file_id, name in units}
        columns = (
            "s.collection_name, s.file_id, s.content_hash, s.settings_fingerprint, "
            "s.position, s.id, s.text, s.vmetadata"
        )
        page_query = f"""
            SELECT {columns}
            FROM {self.schema}.staged_chunk s
            JOIN unnest(%(collections)s::text[], %(files)s::text[]) AS u(collection_name, file_id)
              ON s.collection_name = u.collection_name AND s.file_id = u.file_id
            WHERE (s.file_id, s.collection_name) > (%(file)s, %(name)s)
            ORDER BY s.file_id, s.collection_name, s.position
            LIMIT {STAGED_PAGE_ROWS}
        """
        unit_query = f"""
            SELECT {columns} FROM {self.schema}.staged_chunk s
            WHERE s.collection_name = %s AND s.file_id = %s ORDER BY s.position
        """
        arguments = {
            "collections": [collection for collection, _, _ in units],
            "files": [file_id for _, file_id, _ in units],
            "file": "",
            "name": "",
        }
        while True:
            rows = connection.execute(page_query, arguments).fetchall()
            if len(rows) < STAGED_PAGE_ROWS:
                yield from _whole_units(rows, filenames)
                return
            last = (rows[-1][0], rows[-1][1])
            rows = [row for row in rows if (row[0], row[1]) != last]
            if not rows:
                rows = connection.execute(unit_query, last).fetchall()
            yield from _whole_units(rows, filenames)
            collection_name, file_id = (rows[-1][0], rows[-1][1]) if rows else last
            arguments.update(file=file_id, name=collection_name)


def _whole_units(rows: list[tuple], filenames: dict[tuple[str, str], str]) -> Iterator[WriteUnit]:
    """Staged rows, ordered by unit and position, as units."""
    unit: WriteUnit | None = None
    for row in rows:
        collection_name, file_id, content_hash, fingerprint = row[:4]
        position, chunk_id, text, metadata = row[4:]
        if unit is None or (unit.collection_name, unit.source_id) != (collection_name, file_id):
            if unit is not None:
                yield unit
            unit = WriteUnit(
                collection_name,
                file_id,
                filenames[(collection_name, file_id)],
                content_hash,
                fingerprint,
                [],
            )
        unit.chunks.append(Chunk(chunk_id, collection_name, file_id, position, text, metadata))
    if unit is not None:
        yield unit

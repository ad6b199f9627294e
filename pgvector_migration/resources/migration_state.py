"""Our own schema `pgvector_migration` in the target database.

Every step writes what it found or did here, so a run can stop at any point and the next one
picks up from the tables; an admin can read the same tables with SQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from pgvector_migration.pipeline.completeness import Assessment, WrittenRecord
from pgvector_migration.pipeline.records import Chunk, SourceFile, WriteUnit
from pgvector_migration.pipeline.text_source import FALLBACK_NOTE_PREFIX
from pgvector_migration.redaction import redact_url

SCHEMA = "pgvector_migration"
log = logging.getLogger(__name__)
STAGED_PAGE_ROWS = 2000
LEASE_SECONDS = 30

STATE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.inventory (
    partition_key text NOT NULL,
    file_id text NOT NULL,
    filename text NOT NULL,
    content_type text,
    knowledge_ids text[] NOT NULL,
    collections text[] NOT NULL,
    has_stored_content boolean NOT NULL,
    upload_path text,
    upload_problem text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_key, file_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.completeness (
    partition_key text NOT NULL,
    file_id text NOT NULL,
    collection_name text NOT NULL,
    filename text NOT NULL,
    status text NOT NULL,
    expected_chunks integer,
    present_chunks integer NOT NULL,
    reason text NOT NULL,
    selected boolean NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_key, file_id, collection_name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.staged_chunk (
    collection_name text NOT NULL,
    file_id text NOT NULL,
    position integer NOT NULL,
    id text NOT NULL,
    text text NOT NULL,
    vmetadata jsonb NOT NULL,
    content_hash text NOT NULL,
    settings_fingerprint text NOT NULL,
    PRIMARY KEY (collection_name, file_id, position)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.written_collection (
    collection_name text NOT NULL,
    file_id text NOT NULL,
    content_hash text NOT NULL,
    settings_fingerprint text NOT NULL,
    embedding_model text NOT NULL,
    chunk_count integer NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_name, file_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.partition_lease (
    partition_key text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.file_failure (
    partition_key text NOT NULL,
    file_id text NOT NULL,
    filename text NOT NULL,
    stage text NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition_key, file_id)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.source_note (
    partition_key text NOT NULL,
    subject_id text NOT NULL,
    note text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"""

ENGINE_ORIGIN = "engine"
CACHE_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.embedding_cache (
    model_key text NOT NULL,
    text_hash bytea NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (model_key, text_hash)
);
ALTER TABLE {SCHEMA}.embedding_cache
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT '{ENGINE_ORIGIN}';
"""
SEED_PAGE_ROWS = 1000
CACHE_LOOKUP_PAGE_KEYS = 10_000


def state_schema_exists(connection: psycopg.Connection) -> bool:
    """Whether a run has created our tables (looked up without creating anything)."""
    row = connection.execute(f"SELECT to_regclass('{SCHEMA}.file_failure')").fetchone()
    return row[0] is not None


def ensure_state_schema(connection: psycopg.Connection) -> None:
    """Create our schema and tables if missing; a lock keeps concurrent first runs apart."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(hashtext('pgvector_migration.ddl'))")
        connection.execute(STATE_DDL)


Connector = Callable[..., AbstractContextManager[psycopg.Connection]]


@dataclass(frozen=True)
class CacheHits:
    """Cached vectors by text hash, and which of them were transplanted from an old store
    rather than made by the engine."""

    vectors: dict[bytes, np.ndarray]
    transplanted: set[bytes]


def _copy_into_cache(
    connection: psycopg.Connection,
    model_key: str,
    vectors: Iterable[tuple[bytes, np.ndarray]],
    origin: str,
    replace: bool,
) -> int:
    """COPY (text hash, vector) pairs into the cache inside the caller's transaction, through a
    temporary table emptied at commit; returns the rows added or replaced."""
    # A cached vector of another length than the new one was left by an earlier version that
    # cached unchecked answers: it is replaced, never kept.
    conflict = (
        "ON CONFLICT (model_key, text_hash) DO UPDATE "
        "SET embedding = EXCLUDED.embedding, origin = EXCLUDED.origin"
    )
    if not replace:
        conflict += (
            f" WHERE vector_dims({SCHEMA}.embedding_cache.embedding) "
            "<> vector_dims(EXCLUDED.embedding)"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_vector "
            "(text_hash bytea NOT NULL, embedding vector NOT NULL) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(
            "COPY pg_temp.incoming_vector (text_hash, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bytea", "vector"])
            for text_hash, vector in vectors:
                copy.write_row((text_hash, vector))
        cursor.execute(
            f"INSERT INTO {SCHEMA}.embedding_cache (model_key, text_hash, embedding, origin) "
            "SELECT DISTINCT ON (text_hash) %s, text_hash, embedding, %s "
            f"FROM pg_temp.incoming_vector {conflict}",
            (model_key, origin),
        )
        return cursor.rowcount


def _pages(items: Iterable, size: int) -> Iterator[list]:
    page: list = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class MigrationState:
    """Reads and writes the `pgvector_migration` tables; each method opens its own connection
    unless it is handed a cursor inside a caller's transaction."""

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
            self._connect(with_vectors=False) as connection,
            connection.cursor(row_factory=psycopg.rows.dict_row) as cursor,
        ):
            cursor.execute(query, params)
            return cursor.fetchall()

    def replace_inventory(
        self, partition_keys: Sequence[str], files: Iterable[tuple[str, SourceFile]]
    ) -> None:
        """Replace the inventory of these partitions with (partition key, file) pairs, in one
        transaction whatever the number of partitions."""
        with self._connect(with_vectors=False) as connection, connection.transaction():
            connection.execute(
                f"DELETE FROM {SCHEMA}.inventory WHERE partition_key = ANY(%s)",
                (list(partition_keys),),
            )
            with connection.cursor().copy(
                f"COPY {SCHEMA}.inventory (partition_key, file_id, filename, content_type, "
                "knowledge_ids, collections, has_stored_content, upload_path, upload_problem) "
                "FROM STDIN"
            ) as copy:
                for partition_key, file in files:
                    copy.write_row(
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
                    )

    def inventory_file_ids(self, partition_keys: Sequence[str]) -> dict[str, list[str]]:
        """The inventoried file ids of each of these partitions (every key present)."""
        found: dict[str, list[str]] = {key: [] for key in partition_keys}
        if not self.recorded:
            return found
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT partition_key, file_id FROM {SCHEMA}.inventory "
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
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT collection_name, file_id, content_hash, settings_fingerprint, "
                f"embedding_model, chunk_count FROM {SCHEMA}.written_collection "
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
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT collection_name, file_id FROM {SCHEMA}.written_collection "
                "WHERE collection_name = ANY(%s) AND written_at >= %s",
                (list(collection_names), since),
            ).fetchall()
        return {(row[0], row[1]) for row in rows}

    def collections_written(self) -> set[str]:
        """Every collection we have written rows to."""
        if not self.recorded:
            return set()
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT DISTINCT collection_name FROM {SCHEMA}.written_collection"
            ).fetchall()
        return {row[0] for row in rows}

    @staticmethod
    def forget_written(
        connection: psycopg.Connection, collection_name: str, source_ids: Sequence[str] | None
    ) -> None:
        if source_ids is None:
            connection.execute(
                f"DELETE FROM {SCHEMA}.written_collection WHERE collection_name = %s",
                (collection_name,),
            )
        else:
            connection.execute(
                f"DELETE FROM {SCHEMA}.written_collection "
                "WHERE collection_name = %s AND file_id = ANY(%s)",
                (collection_name, list(source_ids)),
            )

    @staticmethod
    def record_written(
        cursor: psycopg.Cursor, collection_name: str, file_id: str, record: WrittenRecord
    ) -> None:
        cursor.execute(
            f"""
            INSERT INTO {SCHEMA}.written_collection (collection_name, file_id, content_hash,
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
            f"DELETE FROM {SCHEMA}.staged_chunk WHERE collection_name = %s AND file_id = %s",
            (collection_name, file_id),
        )

    def replace_completeness(
        self,
        partition_keys: Sequence[str],
        rows: Iterable[tuple[str, SourceFile, str, Assessment, bool]],
    ) -> None:
        """Store the report of these partitions: one row per (partition, file, collection) with
        its status and whether this run selected it for rewriting."""
        with self._connect(with_vectors=False) as connection, connection.transaction():
            connection.execute(
                f"DELETE FROM {SCHEMA}.completeness WHERE partition_key = ANY(%s)",
                (list(partition_keys),),
            )
            with connection.cursor().copy(
                f"COPY {SCHEMA}.completeness (partition_key, file_id, collection_name, filename, "
                "status, expected_chunks, present_chunks, reason, selected) FROM STDIN"
            ) as copy:
                for partition_key, file, collection_name, assessment, selected in rows:
                    copy.write_row(
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
                    )

    def selected_units(self, partition_keys: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """Per file, the collections these partitions' run must rewrite, each with the
        partitions that selected it (a file's own collection is selected by every partition
        holding the file; it is still made once)."""
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT file_id, collection_name, partition_key FROM {SCHEMA}.completeness "
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
            FROM {SCHEMA}.completeness c
            LEFT JOIN {SCHEMA}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
            WHERE c.partition_key = ANY(%s)
            ORDER BY c.partition_key, c.filename, c.file_id, c.collection_name
            """,
            (list(partition_keys),),
        )

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
                f"DELETE FROM {SCHEMA}.staged_chunk WHERE file_id = %s "
                "AND collection_name = ANY(%s)",
                (file_id, list(chunks_by_collection)),
            )
            with connection.cursor().copy(
                f"COPY {SCHEMA}.staged_chunk (collection_name, file_id, position, id, text, "
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
            FROM {SCHEMA}.completeness c
            WHERE c.partition_key = ANY(%(keys)s) AND c.selected
              AND c.collection_name = s.collection_name AND c.file_id = s.file_id
              AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.file_failure f
                              WHERE f.partition_key = c.partition_key
                                AND f.file_id = c.file_id)
        """
        query = f"""
            SELECT s.collection_name, s.file_id, s.content_hash, s.settings_fingerprint,
                   s.position, s.id, s.text, s.vmetadata,
                   (SELECT c.filename {selected} LIMIT 1) AS filename
            FROM {SCHEMA}.staged_chunk s
            WHERE (s.file_id, s.collection_name, s.position) > (%(file)s, %(name)s, %(position)s)
              AND EXISTS (SELECT 1 {selected})
            ORDER BY s.file_id, s.collection_name, s.position
            LIMIT {STAGED_PAGE_ROWS}
        """
        # Decided once, before the first page: a unit is either left out whole or read whole.
        done_query = f"""
            SELECT DISTINCT s.collection_name, s.file_id
            FROM {SCHEMA}.completeness c
            JOIN {SCHEMA}.staged_chunk s
              ON s.collection_name = c.collection_name AND s.file_id = c.file_id
            JOIN {SCHEMA}.written_collection w
              ON w.collection_name = s.collection_name AND w.file_id = s.file_id
            WHERE c.partition_key = ANY(%s) AND c.selected AND w.written_at >= c.checked_at
              AND w.content_hash = s.content_hash
              AND w.settings_fingerprint = s.settings_fingerprint
        """
        keys = list(partition_keys)
        unit: WriteUnit | None = None
        after = {"file": "", "name": "", "position": -1}
        with self._connect(with_vectors=False) as connection:
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

    def units_written_since(
        self, partition_keys: Sequence[str], since: datetime
    ) -> dict[str, tuple[int, int]]:
        """Per partition, the selected (file, collection) units written at or after `since`
        and their chunks: what one run wrote for each partition it covers."""
        found = {key: (0, 0) for key in partition_keys}
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"""
                SELECT c.partition_key, count(*), coalesce(sum(w.chunk_count), 0)
                FROM {SCHEMA}.completeness c
                JOIN {SCHEMA}.written_collection w
                  ON w.collection_name = c.collection_name AND w.file_id = c.file_id
                WHERE c.partition_key = ANY(%s) AND c.selected AND w.written_at >= %s
                GROUP BY c.partition_key
                """,
                (list(partition_keys), since),
            ).fetchall()
        for partition_key, units, chunks in rows:
            found[partition_key] = (units, int(chunks))
        return found

    def clear_failures(self, partition_keys: Sequence[str], file_ids: Sequence[str] | None) -> None:
        """Forget the recorded failures of these ids under these keys (None: of every id)."""
        if self.read_only:
            return
        with self._connect(with_vectors=False) as connection:
            if file_ids is None:
                connection.execute(
                    f"DELETE FROM {SCHEMA}.file_failure WHERE partition_key = ANY(%s)",
                    (list(partition_keys),),
                )
                return
            connection.execute(
                f"DELETE FROM {SCHEMA}.file_failure "
                "WHERE partition_key = ANY(%s) AND file_id = ANY(%s)",
                (list(partition_keys), list(file_ids)),
            )

    def replace_source_notes(
        self, partition_keys: Sequence[str], notes: Iterable[tuple[str, str, str]]
    ) -> None:
        """Store what the inventory found odd in the source for these partitions, as
        (partition key, id, note), replacing the notes of their previous run."""
        with self._connect(with_vectors=False) as connection, connection.transaction():
            connection.execute(
                f"DELETE FROM {SCHEMA}.source_note WHERE partition_key = ANY(%s)",
                (list(partition_keys),),
            )
            with connection.cursor().copy(
                f"COPY {SCHEMA}.source_note (partition_key, subject_id, note) FROM STDIN"
            ) as copy:
                for note in notes:
                    copy.write_row(note)

    def source_notes(self, partition_keys: Sequence[str]) -> list[dict[str, str]]:
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT DISTINCT subject_id, note FROM {SCHEMA}.source_note "
                "WHERE partition_key = ANY(%s) ORDER BY subject_id, note",
                (list(partition_keys),),
            ).fetchall()
        return [{"id": row[0], "note": row[1]} for row in rows]

    def record_failure(
        self, partition_key: str, file_id: str, filename: str, stage: str, error: str
    ) -> None:
        """Record why a file (or memory, knowledge base) failed, its URLs redacted; a
        read-only view records nothing."""
        if self.read_only:
            return
        error = redact_url(error)
        with self._connect(with_vectors=False) as connection:
            connection.execute(
                f"""
                INSERT INTO {SCHEMA}.file_failure (partition_key, file_id, filename, stage, error)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (partition_key, file_id) DO UPDATE SET
                    stage = EXCLUDED.stage, error = EXCLUDED.error, failed_at = now()
                """,
                (partition_key, file_id, filename, stage, error),
            )

    @staticmethod
    def annotate_completeness(
        connection: psycopg.Connection, partition_keys: Sequence[str], file_id: str, reason: str
    ) -> None:
        """Say why a file's units were built as they were (the stored text instead of the
        upload) where reports read completeness, without changing their status; on the
        caller's connection (chunking holds one for the whole run)."""
        connection.execute(
            f"UPDATE {SCHEMA}.completeness SET reason = CASE WHEN reason = '' THEN %s "
            "ELSE reason || '; ' || %s END "
            "WHERE partition_key = ANY(%s) AND file_id = %s AND strpos(reason, %s) = 0",
            (reason, reason, list(partition_keys), file_id, reason),
        )

    def failures(self, partition_keys: Sequence[str]) -> list[dict[str, Any]]:
        """Recorded failures under these keys (partitions, or kinds of system collection)."""
        return self._dict_rows(
            f"SELECT partition_key, file_id, filename, stage, error FROM {SCHEMA}.file_failure "
            "WHERE partition_key = ANY(%s) ORDER BY partition_key, filename, file_id",
            (list(partition_keys),),
        )

    @contextmanager
    def partition_leases(self, partition_keys: Sequence[str]) -> Iterator[None]:
        """Hold these partitions for this process: a second run of any of them (a CLI started
        twice, a backfill next to the CLI) waits until the first is done, then finds its work
        done.

        Lease rows that this process renews, not locks on a held connection: a run killed with
        SIGKILL (or a forked child it leaves behind) cannot keep a partition forever, its lease
        simply expires. All of them are taken at once or none (then it waits and tries again),
        so two runs over overlapping partitions never wait for each other in a circle."""
        keys = sorted(set(partition_keys))
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        acquire = f"""
            INSERT INTO {SCHEMA}.partition_lease (partition_key, holder, expires_at)
            SELECT key, %s, now() + make_interval(secs => %s) FROM unnest(%s::text[]) AS key
            ON CONFLICT (partition_key) DO UPDATE
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
             WHERE {SCHEMA}.partition_lease.expires_at < now()
            RETURNING partition_key
        """
        announced = False
        while True:
            with self._connect(with_vectors=False) as connection:
                with connection.transaction() as attempt:
                    taken = connection.execute(acquire, (holder, LEASE_SECONDS, keys)).fetchall()
                    if len(taken) == len(keys):
                        break
                    attempt_holders = connection.execute(
                        f"SELECT partition_key, holder FROM {SCHEMA}.partition_lease "
                        "WHERE partition_key = ANY(%s) AND holder <> %s",
                        (keys, holder),
                    ).fetchall()
                    raise psycopg.Rollback(attempt)
                if not announced:
                    held = ", ".join(f"{key} by {by}" for key, by in attempt_holders[:5])
                    log.warning(
                        f"partitions being migrated by another run (host:pid:lease): {held}; "
                        "waiting for it to finish"
                    )
                    announced = True
            time.sleep(1.0)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_SECONDS / 3):
                with (
                    contextlib.suppress(psycopg.Error),
                    self._connect(with_vectors=False) as connection,
                ):
                    connection.execute(
                        f"UPDATE {SCHEMA}.partition_lease "
                        "SET expires_at = now() + make_interval(secs => %s) "
                        "WHERE partition_key = ANY(%s) AND holder = %s",
                        (LEASE_SECONDS, keys, holder),
                    )

        renewer = threading.Thread(target=renew, daemon=True, name="partition-lease")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with (
                contextlib.suppress(psycopg.Error),
                self._connect(with_vectors=False) as connection,
            ):
                connection.execute(
                    f"DELETE FROM {SCHEMA}.partition_lease "
                    "WHERE partition_key = ANY(%s) AND holder = %s",
                    (keys, holder),
                )

    def failed_files(self) -> dict[str, list[str]]:
        """File ids recorded as failed, per partition."""
        if not self.recorded:
            return {}
        with self._connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"SELECT partition_key, file_id FROM {SCHEMA}.file_failure ORDER BY 1, 2"
            ).fetchall()
        failed: dict[str, list[str]] = {}
        for partition_key, file_id in rows:
            failed.setdefault(partition_key, []).append(file_id)
        return failed

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
                   (SELECT count(*) FROM {SCHEMA}.file_failure f
                     WHERE f.partition_key = c.partition_key) AS failed,
                   count(DISTINCT c.file_id) FILTER (
                       WHERE strpos(c.reason, %(fallback)s) > 0) AS from_stored_text,
                   max(c.checked_at) AS checked_at
            FROM {SCHEMA}.completeness c
            LEFT JOIN {SCHEMA}.written_collection w
              ON w.collection_name = c.collection_name AND w.file_id = c.file_id
            GROUP BY c.partition_key
            ORDER BY c.partition_key
            """,
            {"fallback": FALLBACK_NOTE_PREFIX},
        )

    def stored_text_files(self) -> list[dict[str, Any]]:
        """Files last built from Open WebUI's stored text instead of their upload, with why."""
        return self._dict_rows(
            f"""
            SELECT DISTINCT ON (file_id) partition_key, file_id, filename,
                   substr(reason, strpos(reason, %(fallback)s)) AS reason
            FROM {SCHEMA}.completeness WHERE strpos(reason, %(fallback)s) > 0
            ORDER BY file_id, partition_key
            """,
            {"fallback": FALLBACK_NOTE_PREFIX},
        )

    def ensure_cache(self) -> None:
        with self._connect(with_vectors=False) as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('pgvector_migration.ddl'))")
            connection.execute(CACHE_DDL)

    def has_cached_dimension(self, model_key: str, dimension: int) -> bool:
        """Whether this model has made vectors of this length before (the target column's), so
        a re-run need not load the model or ask the provider just to check it. Evidence of one
        length, never a guess from one arbitrary row: a stray row of another length left by an
        earlier version is not taken for the model's dimension."""
        with self._connect(with_vectors=False) as connection:
            if (
                connection.execute(f"SELECT to_regclass('{SCHEMA}.embedding_cache')").fetchone()[0]
                is None
            ):
                return False
            row = connection.execute(
                f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.embedding_cache "
                "WHERE model_key = %s AND vector_dims(embedding) = %s)",
                (model_key, dimension),
            ).fetchone()
        return bool(row[0])

    def cached_embeddings(
        self,
        connection: psycopg.Connection,
        model_key: str,
        text_hashes: Sequence[bytes],
        dimension: int | None = None,
    ) -> CacheHits:
        """Cached vectors of these texts; with `dimension`, only vectors of that length (a row
        of another length is ignored, so its text is embedded again and the row replaced)."""
        length_filter = "AND vector_dims(embedding) = %s" if dimension is not None else ""
        # Binary results: each vector arrives as its float32 bytes, not as text parsed value by
        # value (measured at 1536 dimensions: 258 cached vectors a second as text).
        with connection.cursor(binary=True) as cursor:
            rows = cursor.execute(
                f"SELECT text_hash, embedding, origin FROM {SCHEMA}.embedding_cache "
                f"WHERE model_key = %s AND text_hash = ANY(%s) {length_filter}",
                (model_key, list(text_hashes), *([dimension] if dimension is not None else [])),
            ).fetchall()
        return CacheHits(
            {bytes(text_hash): embedding.to_numpy() for text_hash, embedding, _ in rows},
            {bytes(text_hash) for text_hash, _, origin in rows if origin != ENGINE_ORIGIN},
        )

    def cached_keys(self, model_key: str, text_hashes: Sequence[bytes]) -> set[bytes]:
        """Which of these texts already have a vector for this model (no vectors read)."""
        found: set[bytes] = set()
        with self._connect(with_vectors=False) as connection:
            for page in _pages(text_hashes, CACHE_LOOKUP_PAGE_KEYS):
                rows = connection.execute(
                    f"SELECT text_hash FROM {SCHEMA}.embedding_cache "
                    "WHERE model_key = %s AND text_hash = ANY(%s)",
                    (model_key, page),
                ).fetchall()
                found.update(bytes(row[0]) for row in rows)
        return found

    def store_embeddings(
        self,
        connection: psycopg.Connection,
        model_key: str,
        embeddings: dict[bytes, np.ndarray],
        replace: bool = False,
    ) -> None:
        """Cache freshly embedded vectors; `replace` overwrites what was cached (a forced
        re-embedding), otherwise the first vector of a text stays."""
        with connection.transaction():
            _copy_into_cache(connection, model_key, embeddings.items(), ENGINE_ORIGIN, replace)

    def seed_embeddings(
        self, model_key: str, vectors: Iterable[tuple[bytes, np.ndarray]], origin: str
    ) -> int:
        """Cache vectors that came from elsewhere (an old vector store) in pages of
        SEED_PAGE_ROWS, each page its own transaction; a text that already has a vector keeps
        it. Returns how many were new."""
        added = 0
        with self._connect() as connection:
            for page in _pages(vectors, SEED_PAGE_ROWS):
                with connection.transaction():
                    added += _copy_into_cache(connection, model_key, page, origin, replace=False)
        return added

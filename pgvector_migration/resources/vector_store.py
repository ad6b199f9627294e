"""Open WebUI's `document_chunk` table in the target PostgreSQL + pgvector database."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from dagster import ConfigurableResource
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb
from pydantic import Field

from pgvector_migration.pipeline.completeness import PresentRows, WrittenRecord, models_of
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    WriteUnit,
    owns_whole_collection,
)
from pgvector_migration.resources.migration_state import MigrationState, ensure_state_schema

VECTOR_COLUMN_LIMIT = 2000
# No unit of work leaves a transaction idle; one that is (a killed run's forked child still
# holding its socket) is ended by the server instead of blocking index builds forever.
IDLE_IN_TRANSACTION_MS = 120_000


class TargetConfigurationError(RuntimeError):
    """The target database or table cannot take our rows as configured; nothing was written."""


@dataclass(frozen=True)
class TargetTable:
    """What `document_chunk` looks like now (or that it does not exist)."""

    exists: bool
    vector_type: str | None = None
    dimension: int | None = None
    text_type: str | None = None


def display_url(url: str) -> str:
    """A connection URL without its password, safe for messages and logs."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user, host = info.get("user", ""), info.get("host", "")
    return f"postgresql://{user}@{host}:{info.get('port', '5432')}/{info.get('dbname', '')}"


class PgVectorResource(ConfigurableResource):
    """The target PostgreSQL with pgvector: Open WebUI's `document_chunk` table and our own
    `pgvector_migration` schema (inventory, completeness, staged chunks, embedding cache).

    Empty fields take Open WebUI's environment names and defaults.
    """

    database_url: str | None = Field(
        default=None,
        description="Target URL. Empty: PGVECTOR_DB_URL, else DATABASE_URL when it is PostgreSQL.",
    )
    vector_length: int | None = Field(
        default=None,
        description="Dimension of a new document_chunk.vector column. Empty: "
        "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH, else 1536. An existing table keeps its own.",
    )
    ivfflat_lists: int | None = Field(
        default=None,
        description="ivfflat lists. Empty: PGVECTOR_IVFFLAT_LISTS, else sized to the table as "
        "pgvector recommends (rows / 1000 up to 1M rows, sqrt(rows) above).",
    )
    index_method: str | None = Field(
        default=None, description="ivfflat or hnsw. Empty: PGVECTOR_INDEX_METHOD, else ivfflat."
    )
    hnsw_m: int | None = Field(default=None, description="hnsw m. Empty: PGVECTOR_HNSW_M, else 16.")
    hnsw_ef_construction: int | None = Field(
        default=None,
        description="hnsw ef_construction. Empty: PGVECTOR_HNSW_EF_CONSTRUCTION, else 64.",
    )
    maintenance_work_mem: str = Field(
        default="1GB", description="maintenance_work_mem of the index build's session."
    )
    max_parallel_maintenance_workers: int = Field(
        default=2, description="Parallel workers of the index build (PostgreSQL caps it)."
    )
    build_index_concurrently: bool = Field(
        default=True,
        description="Build the new index CONCURRENTLY and swap it in, so Open WebUI keeps "
        "searching while it is built.",
    )

    def resolved_url(self) -> str:
        url = self.database_url or os.environ.get("PGVECTOR_DB_URL")
        if not url:
            fallback = os.environ.get("DATABASE_URL", "")
            if fallback.startswith(("postgres://", "postgresql")):
                url = fallback
        if not url:
            raise TargetConfigurationError(
                "no target database: set PGVECTOR_DB_URL (or a PostgreSQL DATABASE_URL)"
            )
        url = url.replace("postgres://", "postgresql://", 1)
        for driver in ("postgresql+psycopg2://", "postgresql+psycopg://"):
            url = url.replace(driver, "postgresql://", 1)
        return url

    def resolved_vector_length(self) -> int:
        return self.vector_length or int(
            os.environ.get("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "1536")
        )

    @contextmanager
    def connect(self, with_vectors: bool = True) -> Iterator[psycopg.Connection]:
        """An autocommit connection (closed on exit) with pgvector's types registered when
        available; every multi-statement unit of work runs in an explicit `transaction()`."""
        url = self.resolved_url()
        try:
            connection = psycopg.connect(
                url,
                autocommit=True,
                options=f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            )
        except psycopg.Error as error:
            raise TargetConfigurationError(
                f"cannot connect to target {display_url(url)}: {error}".strip()
            ) from error
        try:
            if with_vectors:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
                    if cursor.fetchone():
                        register_vector(connection)
            yield connection
        finally:
            connection.close()

    def state(self) -> MigrationState:
        """Our bookkeeping tables, created on first use."""
        with self.connect(with_vectors=False) as connection:
            ensure_state_schema(connection)
        return MigrationState(self.connect)

    def describe_table(self) -> TargetTable:
        with self.connect(with_vectors=False) as connection:
            row = connection.execute(
                """
                SELECT format_type(a.atttypid, a.atttypmod),
                       (SELECT format_type(t.atttypid, t.atttypmod) FROM pg_attribute t
                         WHERE t.attrelid = c.oid AND t.attname = 'text')
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'vector'
                WHERE c.relname = 'document_chunk' AND n.nspname = current_schema()
                """
            ).fetchone()
        if row is None:
            return TargetTable(exists=False)
        vector_type, text_type = row
        base, _, rest = vector_type.partition("(")
        return TargetTable(True, base, int(rest.rstrip(")")) if rest else None, text_type)

    def check_compatible(self, model_dimension: int) -> TargetTable:
        """Refuse, before anything is written, a target our vectors do not fit exactly."""
        table = self.describe_table()
        if table.exists:
            if table.vector_type != "vector":
                raise TargetConfigurationError(
                    f"document_chunk.vector is {table.vector_type}; only vector columns are "
                    "supported yet (PGVECTOR_USE_HALFVEC is not)"
                )
            if table.text_type != "text":
                raise TargetConfigurationError(
                    "document_chunk.text is not text: "
                    "PGVECTOR_PGCRYPTO tables are not supported yet"
                )
            dimension = table.dimension
            origin = "the existing document_chunk.vector column"
        else:
            dimension = self.resolved_vector_length()
            origin = "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH"
        if dimension != model_dimension:
            raise TargetConfigurationError(
                f"the embedding model produces {model_dimension}-dimensional vectors but "
                f"{origin} has {dimension} dimensions; vectors are never padded or cut: "
                f"use a matching model or a table created with "
                f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={model_dimension}"
            )
        if dimension > VECTOR_COLUMN_LIMIT:
            raise TargetConfigurationError(
                f"{dimension} dimensions exceed pgvector's vector limit of {VECTOR_COLUMN_LIMIT}; "
                "halfvec (PGVECTOR_USE_HALFVEC) is not supported yet"
            )
        return table

    def ensure_table(self, model_dimension: int) -> None:
        """Create the extension, `document_chunk` and its collection index as Open WebUI does,
        after checking that the model's vectors fit."""
        self.check_compatible(model_dimension)
        with self.connect(with_vectors=False) as connection, connection.transaction():
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            connection.execute(
                f"""
                CREATE TABLE IF NOT EXISTS document_chunk (
                    id text PRIMARY KEY,
                    vector vector({model_dimension}),
                    collection_name text NOT NULL,
                    text text,
                    vmetadata jsonb
                )
                """
            )
            connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_document_chunk_collection_name "
                "ON document_chunk (collection_name)"
            )

    def present_rows(self, collection_names: Sequence[str]) -> dict[tuple[str, str], PresentRows]:
        """Rows per (collection, file id) now in `document_chunk`, with their content hashes and
        embedding models, for the completeness report."""
        if not self.describe_table().exists:
            return {}
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                """
                SELECT collection_name, vmetadata->>'file_id', count(*),
                       array_agg(DISTINCT vmetadata->>'hash'),
                       array_agg(DISTINCT vmetadata->>'embedding_config')
                FROM document_chunk
                WHERE collection_name = ANY(%s)
                GROUP BY 1, 2
                """,
                (list(collection_names),),
            ).fetchall()
        return {
            (collection, file_id): PresentRows(count, frozenset(hashes), models_of(configs))
            for collection, file_id, count, hashes, configs in rows
        }

    def row_counts(self, collection_names: Sequence[str]) -> dict[str, int]:
        """Rows per collection now in `document_chunk`."""
        if not self.describe_table().exists:
            return {}
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                "SELECT collection_name, count(*) FROM document_chunk "
                "WHERE collection_name = ANY(%s) GROUP BY 1",
                (list(collection_names),),
            ).fetchall()
        return dict(rows)

    def row_ids(self, collection_name: str) -> list[str]:
        if not self.describe_table().exists:
            return []
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                "SELECT id FROM document_chunk WHERE collection_name = %s ORDER BY id",
                (collection_name,),
            ).fetchall()
        return [row[0] for row in rows]

    def collections_with_prefix(self, prefix: str) -> list[str]:
        if not self.describe_table().exists:
            return []
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                "SELECT DISTINCT collection_name FROM document_chunk "
                "WHERE starts_with(collection_name, %s) ORDER BY 1",
                (prefix,),
            ).fetchall()
        return [row[0] for row in rows]

    def delete_rows(self, collection_name: str, ids: Sequence[str] | None = None) -> int:
        """Delete a whole collection, or the rows with these ids (rows whose id is their source
        id, as in `knowledge-bases`), and forget what we recorded for them; returns the number
        of rows deleted."""
        with self.connect(with_vectors=False) as connection, connection.transaction():
            if ids is None:
                deleted = connection.execute(
                    "DELETE FROM document_chunk WHERE collection_name = %s", (collection_name,)
                ).rowcount
            else:
                deleted = connection.execute(
                    "DELETE FROM document_chunk WHERE collection_name = %s AND id = ANY(%s)",
                    (collection_name, list(ids)),
                ).rowcount
            MigrationState.forget_written(connection, collection_name, ids)
        return deleted

    def delete_file_rows(self, collection_name: str, file_id: str) -> int:
        """Delete one file's rows from a shared collection and forget our record of them."""
        with self.connect(with_vectors=False) as connection, connection.transaction():
            deleted = connection.execute(
                "DELETE FROM document_chunk "
                "WHERE collection_name = %s AND vmetadata->>'file_id' = %s",
                (collection_name, file_id),
            ).rowcount
            MigrationState.forget_written(connection, collection_name, [file_id])
        return deleted

    def file_row_owners(self, collection_names: Sequence[str]) -> list[tuple[str, str | None, int]]:
        """(collection, file id, rows) for every file collection and the named collections."""
        if not self.describe_table().exists:
            return []
        with self.connect(with_vectors=False) as connection:
            return connection.execute(
                "SELECT collection_name, vmetadata->>'file_id', count(*) FROM document_chunk "
                "WHERE starts_with(collection_name, 'file-') OR collection_name = ANY(%s) "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                (list(collection_names),),
            ).fetchall()

    def rows_by_kind(self) -> dict[str, int]:
        """Rows per kind of collection: files, knowledge, knowledge-bases, memories, other."""
        if not self.describe_table().exists:
            return {}
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                """
                SELECT CASE
                    WHEN starts_with(collection_name, 'file-') THEN 'file collections'
                    WHEN collection_name = 'knowledge-bases' THEN 'knowledge-bases'
                    WHEN starts_with(collection_name, 'user-memory-') THEN 'memories'
                    WHEN starts_with(collection_name, 'web-search-') THEN 'web search'
                    ELSE 'knowledge and other collections' END,
                    count(*)
                FROM document_chunk GROUP BY 1
                """
            ).fetchall()
        return dict(rows)

    def duplicate_chunks(
        self, collection_names: Sequence[str] | None = None
    ) -> list[tuple[str, str | None, str | None, int]]:
        """Chunks stored more than once under different ids (same collection, file, position
        and text): (collection, file id, start index, copies). None: the whole table."""
        if not self.describe_table().exists:
            return []
        scope = "" if collection_names is None else "WHERE collection_name = ANY(%s)"
        with self.connect(with_vectors=False) as connection:
            return connection.execute(
                f"""
                SELECT collection_name, vmetadata->>'file_id', vmetadata->>'start_index', count(*)
                FROM document_chunk {scope}
                GROUP BY collection_name, vmetadata->>'file_id', vmetadata->>'start_index',
                         md5(coalesce(text, ''))
                HAVING count(*) > 1
                ORDER BY 1, 2, 3
                LIMIT 1000
                """,
                () if collection_names is None else (list(collection_names),),
            ).fetchall()

    def dimension_mismatches(
        self, collection_names: Sequence[str] | None = None
    ) -> tuple[int | None, list[tuple[str, int, int]]]:
        """The column's dimension and the (collection, dimension, rows) groups whose vectors
        have another one. None: the whole table."""
        table = self.describe_table()
        if not table.exists:
            return None, []
        scope = "AND collection_name = ANY(%s)" if collection_names is not None else ""
        with self.connect(with_vectors=False) as connection:
            rows = connection.execute(
                f"""
                SELECT collection_name, vector_dims(vector), count(*) FROM document_chunk
                WHERE vector IS NOT NULL AND vector_dims(vector) <> %s {scope}
                GROUP BY 1, 2 ORDER BY 1, 2
                """,
                (table.dimension or -1,)
                + (() if collection_names is None else (list(collection_names),)),
            ).fetchall()
        return table.dimension, rows

    def replace_unit(
        self,
        connection: psycopg.Connection,
        unit: WriteUnit,
        vectors: Sequence[np.ndarray],
        record: WrittenRecord,
    ) -> None:
        """Replace one unit in a single transaction: delete its old rows, COPY the new ones,
        record what was written. A crash leaves either the old rows or the new."""
        collection_name, source_id = unit.collection_name, unit.source_id
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{collection_name}\x1f{source_id}",),
            )
            if owns_whole_collection(collection_name, source_id):
                cursor.execute(
                    "DELETE FROM document_chunk WHERE collection_name = %s", (collection_name,)
                )
            elif collection_name == KNOWLEDGE_BASES_COLLECTION:
                cursor.execute(
                    "DELETE FROM document_chunk WHERE collection_name = %s AND id = %s",
                    (collection_name, source_id),
                )
            else:
                cursor.execute(
                    "DELETE FROM document_chunk "
                    "WHERE collection_name = %s AND vmetadata->>'file_id' = %s",
                    (collection_name, source_id),
                )
            with cursor.copy(
                "COPY document_chunk (id, vector, collection_name, text, vmetadata) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "vector", "text", "text", "jsonb"])
                for chunk, vector in zip(unit.chunks, vectors, strict=True):
                    copy.write_row(
                        (chunk.id, vector, collection_name, chunk.text, Jsonb(chunk.metadata))
                    )
            MigrationState.record_written(cursor, collection_name, source_id, record)

"""The Dagster resource for the target PostgreSQL with pgvector: its settings (Open WebUI's
environment names), the connection pool it owns, and its chunk table and state schema
(the SQL lives in `pgvector_migration.store`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from pgvector_migration.pipeline.completeness import PresentRows, WrittenRecord
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.store import document_chunk, reports
from pgvector_migration.store.connection import (
    ConnectionPools,
    borrowed_connection,
    dedicated_connection,
)
from pgvector_migration.store.errors import TargetConfigurationError
from pgvector_migration.store.locks import lock_timeout_error, lock_timeout_seconds, warn_if_locked
from pgvector_migration.store.migration_state import MigrationState
from pgvector_migration.store.names import DOCUMENT_CHUNK, state_schema
from pgvector_migration.store.schema import ensure_state_schema, state_schema_exists
from pgvector_migration.store.target_table import (
    HALFVEC_COLUMN_LIMIT,
    VECTOR_COLUMN_LIMIT,
    ChunkTable,
    TargetTable,
)


def env_flag(name: str) -> bool:
    """An Open WebUI boolean setting: true only when the variable says `true`."""
    return os.environ.get(name, "false").lower() == "true"


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
    maintenance_work_mem: str | None = Field(
        default=None,
        description="maintenance_work_mem of the index build's session. Empty: what the index "
        "needs, at most 1.5 x the server's shared_buffers, never less than its own setting.",
    )
    max_parallel_maintenance_workers: int | None = Field(
        default=None,
        description="Parallel workers of the index build, held to the server's "
        "max_parallel_workers and max_worker_processes. Empty: the server's own "
        "max_parallel_maintenance_workers, and for a server on this machine at most its CPUs "
        "less one.",
    )
    build_index_concurrently: bool = Field(
        default=True,
        description="Build the new index CONCURRENTLY and swap it in, so Open WebUI keeps "
        "searching while it is built.",
    )
    use_halfvec: bool | None = Field(
        default=None,
        description="Store vectors as halfvec(N), as Open WebUI does with PGVECTOR_USE_HALFVEC "
        f"(required above {VECTOR_COLUMN_LIMIT} dimensions, up to {HALFVEC_COLUMN_LIMIT}; the "
        "index then defaults to hnsw). Empty: PGVECTOR_USE_HALFVEC, else false.",
    )
    pgcrypto: bool | None = Field(
        default=None,
        description="Store text and vmetadata encrypted with pgcrypto's pgp_sym_encrypt, as Open "
        "WebUI does with PGVECTOR_PGCRYPTO. Empty: PGVECTOR_PGCRYPTO, else false.",
    )
    table_name: str = Field(
        default=DOCUMENT_CHUNK,
        description="The chunk table these runs write: Open WebUI's document_chunk, or "
        "document_chunk_shadow for a model switch built beside it. Its bookkeeping lives in "
        "the state schema named after it (pgvector_migration, pgvector_migration_shadow).",
    )
    read_only: bool = Field(
        default=False,
        description="Look only (dry runs, status): create no schema or table and record "
        "nothing, so a role with only CONNECT, USAGE and SELECT will do.",
    )
    pgcrypto_key: str | None = Field(
        default=None,
        description="The pgcrypto key (Open WebUI's PGVECTOR_PGCRYPTO_KEY); set it with an "
        "EnvVar, never inline. Empty: PGVECTOR_PGCRYPTO_KEY.",
    )
    # This process's connections; made on first use, closed at teardown (see store/connection).
    _pools: ConnectionPools = PrivateAttr(default_factory=ConnectionPools)

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

    def resolved_use_halfvec(self) -> bool:
        if self.use_halfvec is not None:
            return self.use_halfvec
        return env_flag("PGVECTOR_USE_HALFVEC")

    def resolved_pgcrypto(self) -> bool:
        if self.pgcrypto is not None:
            return self.pgcrypto
        return env_flag("PGVECTOR_PGCRYPTO")

    def resolved_pgcrypto_key(self) -> str:
        """The pgcrypto key; never put it in a message or a log."""
        key = self.pgcrypto_key or os.environ.get("PGVECTOR_PGCRYPTO_KEY")
        if not key:
            raise TargetConfigurationError(
                "PGVECTOR_PGCRYPTO_KEY is not set: it is needed to write with "
                "PGVECTOR_PGCRYPTO=true and to read an encrypted document_chunk table"
            )
        return key

    @contextmanager
    def connect(
        self, with_vectors: bool = False, fresh: bool = False
    ) -> Iterator[psycopg.Connection]:
        """A connection borrowed from this resource's pool (autocommit; returned on exit).
        `with_vectors`: pgvector's types registered, for the few that read or write vectors;
        `fresh`: a new session of its own instead, which sees database and role settings
        changed since the pool's sessions started. A lock not granted within
        PGVECTOR_MIGRATION_LOCK_TIMEOUT is raised as `TargetLockTimeout`, naming the sessions
        that hold locks."""
        url = self.resolved_url()
        if fresh:
            with dedicated_connection(url, with_vectors) as connection:
                yield connection
            return
        with borrowed_connection(self._pools, url, with_vectors) as connection:
            yield connection

    def close(self) -> None:
        """Close this process's pooled connections (the CLI and tests, outside Dagster)."""
        self._pools.close()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Dagster's end of a step (or of an in-process run): its connections go with it."""
        self.close()

    def lock_timeout_reason(self, error: psycopg.Error) -> str | None:
        """For a statement that gave up waiting for a lock: what it waited for and who holds
        locks now, so a failed unit names the session to end; None for any other error."""
        if not isinstance(error, psycopg.errors.LockNotAvailable):
            return None
        timeout_ms = int(lock_timeout_seconds() * 1000)
        return str(lock_timeout_error(self.resolved_url(), error, timeout_ms))

    def warn_if_locked(self, what: str) -> None:
        """Log, before a wait that may be long, who holds the locks it would wait for."""
        with self.connect() as connection:
            warn_if_locked(connection, what, self.table_name)

    def state_schema(self) -> str:
        """The state schema of this resource's chunk table."""
        return state_schema(self.table_name)

    def state(self) -> MigrationState:
        """Our bookkeeping tables of this resource's chunk table, migrated to this version
        once per process; read-only, only looked up."""
        schema = self.state_schema()
        if self.read_only:
            with self.connect() as connection:
                recorded = state_schema_exists(connection, schema)
            return MigrationState(self.connect, read_only=True, recorded=recorded, schema=schema)
        ensure_state_schema(self.resolved_url(), self.connect, schema)
        return MigrationState(self.connect, schema=schema)

    def table(self, name: str | None = None) -> ChunkTable:
        """A chunk table of the target as these settings write it: this resource's own
        (`table_name`, Open WebUI's by default) unless named."""
        return ChunkTable(
            self.connect,
            self.resolved_pgcrypto_key,
            name or self.table_name,
            halfvec=self.resolved_use_halfvec(),
            pgcrypto=self.resolved_pgcrypto(),
            vector_length=self.resolved_vector_length,
        )

    # The live table's operations, as the steps call them.

    def chunk_columns(self, encrypted: bool) -> tuple[str, str, dict[str, str]]:
        return self.table().chunk_columns(encrypted)

    def describe_table(self) -> TargetTable:
        return self.table().describe()

    def check_compatible(self, model_dimension: int) -> TargetTable:
        return self.table().check_compatible(model_dimension)

    def ensure_table(self, model_dimension: int) -> None:
        self.table().ensure(model_dimension)

    def check_can_create(self) -> None:
        self.table().check_can_create()

    def present_rows(self, collection_names: Sequence[str]) -> dict[tuple[str, str], PresentRows]:
        return document_chunk.present_rows(self.table(), collection_names)

    def row_ids(self, collection_name: str) -> list[str]:
        return document_chunk.row_ids(self.table(), collection_name)

    def collections_with_prefix(self, prefix: str) -> list[str]:
        return document_chunk.collections_with_prefix(self.table(), prefix)

    def delete_rows(self, collection_name: str, ids: Sequence[str] | None = None) -> int:
        return document_chunk.delete_rows(self.table(), collection_name, ids)

    def delete_file_rows(self, collection_name: str, file_id: str) -> int:
        return document_chunk.delete_file_rows(self.table(), collection_name, file_id)

    def replace_unit(
        self,
        connection: psycopg.Connection,
        unit: WriteUnit,
        vectors: Sequence[np.ndarray],
        record: WrittenRecord,
    ) -> None:
        document_chunk.replace_unit(self.table(), connection, unit, vectors, record)

    def row_counts(self, collection_names: Sequence[str]) -> dict[str, int]:
        return reports.row_counts(self.table(), collection_names)

    def file_row_owners(self, collection_names: Sequence[str]) -> list[tuple[str, str | None, int]]:
        return reports.file_row_owners(self.table(), collection_names)

    def rows_by_kind(self) -> dict[str, int]:
        return reports.rows_by_kind(self.table())

    def duplicate_chunks(
        self, collection_names: Sequence[str] | None = None
    ) -> list[tuple[str, str, int, int, int]]:
        return reports.duplicate_chunks(self.table(), collection_names)

    def dimension_mismatches(
        self, collection_names: Sequence[str] | None = None
    ) -> tuple[int | None, list[tuple[str, int, int]]]:
        return reports.dimension_mismatches(self.table(), collection_names)

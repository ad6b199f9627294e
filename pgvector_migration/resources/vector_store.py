"""Open WebUI's `document_chunk` table in the target PostgreSQL + pgvector database."""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from dagster import ConfigurableResource
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb
from pydantic import Field

from pgvector_migration.pipeline.completeness import PresentRows, WrittenRecord, models_of
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    WriteUnit,
    owns_whole_collection,
)
from pgvector_migration.redaction import redact_url
from pgvector_migration.resources.migration_state import (
    SCHEMA,
    MigrationState,
    ensure_state_schema,
    state_schema_exists,
)

VECTOR_COLUMN_LIMIT = 2000
# pgvector indexes halfvec columns of up to 4000 dimensions (ivfflat and hnsw alike).
HALFVEC_COLUMN_LIMIT = 4000
# No unit of work leaves a transaction idle; one that is (a killed run's forked child still
# holding its socket) is ended by the server instead of blocking index builds forever.
IDLE_IN_TRANSACTION_MS = 120_000
LOCK_TIMEOUT_ENV = "PGVECTOR_MIGRATION_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 60.0
MAX_LOCK_TIMEOUT_SECONDS = 86_400
log = logging.getLogger(__name__)


class TargetConfigurationError(RuntimeError):
    """The target database or table cannot take our rows as configured; nothing was written."""


class TargetLockTimeout(RuntimeError):
    """A lock on the target was not granted within PGVECTOR_MIGRATION_LOCK_TIMEOUT: another
    session holds it. Nothing of the waiting unit was written; a re-run picks it up."""


@dataclass(frozen=True)
class TargetTable:
    """What `document_chunk` looks like now (or that it does not exist)."""

    exists: bool
    vector_type: str | None = None
    dimension: int | None = None
    text_type: str | None = None
    metadata_type: str | None = None

    @property
    def encrypted(self) -> bool:
        """Whether text and vmetadata hold pgcrypto ciphertext (Open WebUI's
        PGVECTOR_PGCRYPTO tables)."""
        return self.exists and "bytea" in (self.text_type, self.metadata_type)


def env_flag(name: str) -> bool:
    """An Open WebUI boolean setting: true only when the variable says `true`."""
    return os.environ.get(name, "false").lower() == "true"


@contextmanager
def decryption_errors() -> Iterator[None]:
    """pgcrypto refusing to decrypt (a wrong PGVECTOR_PGCRYPTO_KEY, or rows that are not its
    ciphertext) as a configuration error; the message never holds the key."""
    try:
        yield
    except psycopg.errors.ExternalRoutineInvocationException as error:
        raise TargetConfigurationError(
            "cannot decrypt document_chunk with the configured PGVECTOR_PGCRYPTO_KEY "
            f"(pgcrypto: {error.diag.message_primary}): use the key Open WebUI encrypts with"
        ) from error


def has_extension(connection: psycopg.Connection, name: str) -> bool:
    return bool(
        connection.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone()
    )


def display_url(url: str) -> str:
    """A connection URL without its password, safe for messages and logs, even when the URL
    is malformed."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return without_password(url, url)
    user, host = info.get("user", ""), info.get("host", "")
    return f"postgresql://{user}@{host}:{info.get('port', '5432')}/{info.get('dbname', '')}"


# A password in a key=value connection string (`host=h password=secret dbname=d`).
KEYWORD_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<value>'[^']*'|\S+)", re.IGNORECASE)


def without_password(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with its URLs redacted and the URL's password
    removed wherever it is echoed, as libpq does with a string it cannot parse."""
    text = KEYWORD_PASSWORD.sub(r"\g<key>***", redact_url(text))
    userinfo = url.partition("://")[2].rpartition("@")[0]
    passwords = {userinfo.partition(":")[2]}
    passwords |= {match.group("value") for match in KEYWORD_PASSWORD.finditer(url)}
    for secret in (passwords | {urllib.parse.unquote(p) for p in passwords}) - {""}:
        text = text.replace(secret, "***")
    return text


def lock_timeout_seconds() -> float:
    """PGVECTOR_MIGRATION_LOCK_TIMEOUT: how long one statement waits for a lock on the target
    before its unit fails (default 60 s); a value that is not a positive number is a
    configuration error."""
    value = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_LOCK_TIMEOUT_SECONDS:
        raise TargetConfigurationError(
            f"{LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds between 0 and "
            f"{MAX_LOCK_TIMEOUT_SECONDS}: set how long a write may wait for a lock on "
            f"document_chunk, e.g. {DEFAULT_LOCK_TIMEOUT_SECONDS:g}"
        )
    return seconds


# Locks a write, prune or index build of ours may wait for: any but a reader's on
# document_chunk or on our schema, and advisory locks (ours serialise DDL, units and builds).
LOCK_HOLDERS_SQL = """
SELECT DISTINCT a.pid, a.application_name, a.state,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 160), coalesce(c.relname, l.locktype),
       l.mode
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (((c.relname = 'document_chunk' OR n.nspname = 'pgvector_migration')
        AND l.mode <> 'AccessShareLock')
       OR l.locktype = 'advisory')
ORDER BY 1
LIMIT 5
"""


def describe_lock_holders(connection: psycopg.Connection) -> str:
    """The sessions holding locks we may wait for, from pg_locks and pg_stat_activity as far
    as this role may read them; empty when there are none."""
    rows = connection.execute(LOCK_HOLDERS_SQL).fetchall()
    return "; ".join(
        f"pid {pid} (application {app or '-'!r}, {state or 'state unknown'}, {mode} on {what}, "
        f"query {query!r})"
        for pid, app, state, query, what, mode in rows
    )


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

    def vector_column_type(self) -> str:
        return "halfvec" if self.resolved_use_halfvec() else "vector"

    def chunk_columns(self, encrypted: bool) -> tuple[str, str, dict[str, str]]:
        """SQL for a row's text and its metadata as jsonb, with the parameters they need: the
        columns themselves, or on a PGVECTOR_PGCRYPTO table their decryption, the key bound as
        the `key` parameter (never written into the SQL)."""
        if not encrypted:
            return "text", "vmetadata", {}
        return (
            "pgp_sym_decrypt(text, %(key)s)",
            "pgp_sym_decrypt(vmetadata, %(key)s)::jsonb",
            {"key": self.resolved_pgcrypto_key()},
        )

    @contextmanager
    def connect(self, with_vectors: bool = True) -> Iterator[psycopg.Connection]:
        """An autocommit connection (closed on exit) with pgvector's types registered when
        available; every multi-statement unit of work runs in an explicit `transaction()`.

        A statement waits at most PGVECTOR_MIGRATION_LOCK_TIMEOUT for a lock; one that times
        out is raised as `TargetLockTimeout`, naming the sessions that hold locks."""
        url = self.resolved_url()
        timeout_ms = int(lock_timeout_seconds() * 1000)
        refused = None
        try:
            connection = psycopg.connect(
                url,
                autocommit=True,
                options=f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
                f"-c lock_timeout={timeout_ms}",
            )
        except psycopg.Error as error:
            refused = without_password(str(error), url).strip()
        if refused is not None:
            # Raised outside the handler: the driver's error may echo the password, and
            # Dagster records an exception's context with it.
            raise TargetConfigurationError(
                f"cannot connect to target {display_url(url)}: {refused}"
            )
        try:
            if with_vectors:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
                    if cursor.fetchone():
                        register_vector(connection)
            yield connection
        except psycopg.errors.LockNotAvailable as error:
            raise self._lock_timeout(error, timeout_ms) from error
        finally:
            connection.close()

    def _lock_timeout(self, error: psycopg.Error, timeout_ms: int) -> TargetLockTimeout:
        """The error for a lock not granted in time: what the statement waited for, and who
        holds locks now (looked up on a fresh connection, which never waits for a lock)."""
        waited_for = " ".join((error.diag.context or error.diag.message_primary or "").split())
        try:
            with psycopg.connect(
                self.resolved_url(), autocommit=True, options="-c statement_timeout=5000"
            ) as connection:
                holders = describe_lock_holders(connection)
        except psycopg.Error:
            holders = ""
        return TargetLockTimeout(
            f"gave up after {timeout_ms / 1000:g} s ({LOCK_TIMEOUT_ENV}) waiting for a lock on "
            f"the target{f' ({waited_for})' if waited_for else ''}; held by "
            f"{holders or 'a session this role cannot see'}: end that session or let it finish, "
            "then re-run (nothing of the waiting unit was written)"
        )

    def lock_timeout_reason(self, error: psycopg.Error) -> str | None:
        """For a statement that gave up waiting for a lock: what it waited for and who holds
        locks now, so a failed unit names the session to end; None for any other error."""
        if not isinstance(error, psycopg.errors.LockNotAvailable):
            return None
        return str(self._lock_timeout(error, int(lock_timeout_seconds() * 1000)))

    def warn_if_locked(self, what: str) -> None:
        """Log, before a wait that may be long, who holds the locks it would wait for."""
        with self.connect(with_vectors=False) as connection:
            holders = describe_lock_holders(connection)
        if holders:
            log.warning(
                f"{what} may wait up to {lock_timeout_seconds():g} s ({LOCK_TIMEOUT_ENV}) for "
                f"locks held by {holders}"
            )

    def state(self) -> MigrationState:
        """Our bookkeeping tables, created on first use; read-only, only looked up."""
        with self.connect(with_vectors=False) as connection:
            if self.read_only:
                return MigrationState(
                    self.connect, read_only=True, recorded=state_schema_exists(connection)
                )
            ensure_state_schema(connection)
        return MigrationState(self.connect)

    def describe_table(self) -> TargetTable:
        with self.connect(with_vectors=False) as connection:
            row = connection.execute(
                """
                SELECT format_type(a.atttypid, a.atttypmod),
                       (SELECT format_type(t.atttypid, t.atttypmod) FROM pg_attribute t
                         WHERE t.attrelid = c.oid AND t.attname = 'text'),
                       (SELECT format_type(m.atttypid, m.atttypmod) FROM pg_attribute m
                         WHERE m.attrelid = c.oid AND m.attname = 'vmetadata')
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'vector'
                WHERE c.relname = 'document_chunk' AND n.nspname = current_schema()
                """
            ).fetchone()
        if row is None:
            return TargetTable(exists=False)
        vector_type, text_type, metadata_type = row
        base, _, rest = vector_type.partition("(")
        dimension = int(rest.rstrip(")")) if rest else None
        return TargetTable(True, base, dimension, text_type, metadata_type)

    def check_compatible(self, model_dimension: int) -> TargetTable:
        """Refuse, before anything is written, a target our vectors do not fit exactly: the
        column type (vector or halfvec) and the text/vmetadata types (plain or pgcrypto) must be
        what Open WebUI's settings make of them, and the dimension the model's."""
        halfvec = self.resolved_use_halfvec()
        pgcrypto = self.resolved_pgcrypto()
        if pgcrypto:
            self.resolved_pgcrypto_key()
        table = self.describe_table()
        if table.exists:
            self._check_column_types(table, halfvec, pgcrypto)
            dimension = table.dimension
            origin = f"the existing document_chunk.vector column ({table.vector_type})"
        else:
            self._check_dimension_limit(model_dimension, halfvec)
            dimension = self.resolved_vector_length()
            origin = "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH"
        if dimension != model_dimension:
            raise TargetConfigurationError(
                f"the embedding model produces {model_dimension}-dimensional vectors but "
                f"{origin} has {dimension} dimensions; vectors are never padded or cut: "
                f"use a matching model or a table created with "
                f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={model_dimension}"
            )
        self._check_dimension_limit(dimension, halfvec)
        if pgcrypto and table.exists:
            self._check_key_decrypts(table)
        return table

    @staticmethod
    def _check_column_types(table: TargetTable, halfvec: bool, pgcrypto: bool) -> None:
        expected = "halfvec" if halfvec else "vector"
        if table.vector_type not in ("vector", "halfvec"):
            raise TargetConfigurationError(
                f"document_chunk.vector is {table.vector_type}; Open WebUI stores vector or "
                "halfvec columns"
            )
        if table.vector_type != expected:
            setting = "true" if halfvec else "false"
            raise TargetConfigurationError(
                f"document_chunk.vector is {table.vector_type}({table.dimension}) but "
                f"PGVECTOR_USE_HALFVEC={setting} writes {expected} columns: set "
                f"PGVECTOR_USE_HALFVEC={'false' if halfvec else 'true'} as the Open WebUI that "
                "created the table has it, or use another target"
            )
        columns = f"document_chunk.text is {table.text_type} and vmetadata is {table.metadata_type}"
        if pgcrypto and (table.text_type, table.metadata_type) != ("bytea", "bytea"):
            raise TargetConfigurationError(
                f"PGVECTOR_PGCRYPTO=true stores text and vmetadata encrypted as bytea but "
                f"{columns}: the table was created without encryption; set "
                "PGVECTOR_PGCRYPTO=false as that Open WebUI has it, or use another target"
            )
        if not pgcrypto and (table.text_type, table.metadata_type) != ("text", "jsonb"):
            kind = " (an encrypted PGVECTOR_PGCRYPTO table)" if table.encrypted else ""
            raise TargetConfigurationError(
                f"{columns}{kind} but PGVECTOR_PGCRYPTO is not enabled, which writes text and "
                "jsonb: set PGVECTOR_PGCRYPTO=true and PGVECTOR_PGCRYPTO_KEY as that Open WebUI "
                "has them, or use another target"
            )

    @staticmethod
    def _check_dimension_limit(dimension: int, halfvec: bool) -> None:
        if not halfvec and dimension > VECTOR_COLUMN_LIMIT:
            raise TargetConfigurationError(
                f"{dimension}-dimensional vectors exceed the {VECTOR_COLUMN_LIMIT} dimensions of "
                "pgvector's vector type: set PGVECTOR_USE_HALFVEC=true (halfvec columns, up to "
                f"{HALFVEC_COLUMN_LIMIT} dimensions), as Open WebUI requires above "
                f"{VECTOR_COLUMN_LIMIT}"
            )
        if halfvec and dimension > HALFVEC_COLUMN_LIMIT:
            raise TargetConfigurationError(
                f"{dimension}-dimensional vectors exceed the {HALFVEC_COLUMN_LIMIT} dimensions "
                "pgvector can index as halfvec (PGVECTOR_USE_HALFVEC); use a model with fewer "
                "dimensions"
            )

    def _check_key_decrypts(self, table: TargetTable) -> None:
        """Decrypt one existing row, so a wrong key is refused before anything is written
        rather than mixing rows Open WebUI could not read with its own."""
        with self.connect(with_vectors=False) as connection:
            if not has_extension(connection, "pgcrypto"):
                return
            _, metadata, params = self.chunk_columns(table.encrypted)
            with decryption_errors():
                connection.execute(
                    f"SELECT {metadata} FROM document_chunk WHERE vmetadata IS NOT NULL LIMIT 1",
                    params,
                ).fetchall()

    def ensure_table(self, model_dimension: int) -> None:
        """Create the extensions, `document_chunk` and its collection index as Open WebUI does,
        after checking that the model's vectors fit; called before every write step, it also
        says who holds locks the writes would wait for."""
        table = self.check_compatible(model_dimension)
        self.warn_if_locked("writing document_chunk")
        if table.exists and self._has_collection_index():
            return
        pgcrypto = self.resolved_pgcrypto()
        text_type, metadata_type = ("bytea", "bytea") if pgcrypto else ("text", "jsonb")
        with self.connect(with_vectors=False) as connection, connection.transaction():
            # IF NOT EXISTS is not safe against a concurrent creator (two partitions' runs
            # starting together): both pass the check and one fails on the catalog.
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('pgvector_migration.ddl'))")
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # As Open WebUI: create pgcrypto only when it is missing, so a role that may not
            # create extensions still works where an administrator installed it.
            if pgcrypto and not has_extension(connection, "pgcrypto"):
                connection.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            connection.execute(
                f"""
                CREATE TABLE IF NOT EXISTS document_chunk (
                    id text PRIMARY KEY,
                    vector {self.vector_column_type()}({model_dimension}),
                    collection_name text NOT NULL,
                    text {text_type},
                    vmetadata {metadata_type}
                )
                """
            )
            connection.execute(
                "CREATE INDEX IF NOT EXISTS idx_document_chunk_collection_name "
                "ON document_chunk (collection_name)"
            )

    def _has_collection_index(self) -> bool:
        """Whether Open WebUI's collection index exists: then there is nothing to create, and
        no lock to take (CREATE INDEX IF NOT EXISTS would wait for every open write first)."""
        with self.connect(with_vectors=False) as connection:
            return (
                connection.execute(
                    "SELECT to_regclass('idx_document_chunk_collection_name')"
                ).fetchone()[0]
                is not None
            )

    def check_can_create(self) -> None:
        """Refuse, before anything is written, a target where this role can create neither
        the pgvector extension (when it is missing) nor our schema (when it is missing)."""
        with self.connect(with_vectors=False) as connection:
            role, database = connection.execute(
                "SELECT current_user, current_database()"
            ).fetchone()
            if not has_extension(connection, "vector"):
                if not connection.execute(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
                ).fetchone():
                    raise TargetConfigurationError(
                        f"the target server has no pgvector extension to create in database "
                        f"{database}: install pgvector on the PostgreSQL server"
                    )
                try:
                    with connection.transaction(force_rollback=True):
                        connection.execute("CREATE EXTENSION vector")
                except psycopg.errors.InsufficientPrivilege:
                    raise TargetConfigurationError(
                        f"the pgvector extension is missing in database {database} and role "
                        f"{role} may not create it: have an administrator run CREATE EXTENSION "
                        "vector in that database, or connect as a role that may "
                        "(PGVECTOR_DB_URL)"
                    ) from None
            if (
                not state_schema_exists(connection)
                and not connection.execute(
                    "SELECT has_database_privilege(current_database(), 'CREATE')"
                ).fetchone()[0]
            ):
                raise TargetConfigurationError(
                    f"role {role} may not create the pgvector_migration schema in database "
                    f"{database}: GRANT CREATE ON DATABASE {database} TO {role}, or create the "
                    "schema for it"
                )

    def _readable_rows(self, table: TargetTable, where: str) -> tuple[str, dict[str, str]]:
        """A FROM item of document_chunk's rows with `collection_name`, plain `text` and
        `metadata` (jsonb), decrypted on a PGVECTOR_PGCRYPTO table, and its parameters.
        OFFSET 0 keeps the subquery whole, so each row is decrypted once however often the
        outer query uses its metadata."""
        text, metadata, params = self.chunk_columns(table.encrypted)
        rows = (
            f"(SELECT collection_name, {text} AS text, {metadata} AS metadata "
            f"FROM document_chunk {where} OFFSET 0) AS chunk"
        )
        return rows, dict(params)

    def present_rows(self, collection_names: Sequence[str]) -> dict[tuple[str, str], PresentRows]:
        """Rows per (collection, file id) now in `document_chunk`, with their content hashes and
        embedding models, for the completeness report."""
        table = self.describe_table()
        if not table.exists:
            return {}
        rows_sql, params = self._readable_rows(table, "WHERE collection_name = ANY(%(names)s)")
        with self.connect(with_vectors=False) as connection, decryption_errors():
            rows = connection.execute(
                f"""
                SELECT collection_name, metadata->>'file_id', count(*),
                       array_agg(DISTINCT metadata->>'hash'),
                       array_agg(DISTINCT metadata->>'embedding_config')
                FROM {rows_sql}
                GROUP BY 1, 2
                """,
                {**params, "names": list(collection_names)},
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
        encrypted = self.describe_table().encrypted
        with (
            self.connect(with_vectors=False) as connection,
            decryption_errors(),
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            deleted = self._delete_file_rows(cursor, collection_name, file_id, encrypted)
            MigrationState.forget_written(connection, collection_name, [file_id])
        return deleted

    def _delete_file_rows(
        self, cursor: psycopg.Cursor, collection_name: str, file_id: str, encrypted: bool
    ) -> int:
        _, metadata, params = self.chunk_columns(encrypted)
        cursor.execute(
            "DELETE FROM document_chunk WHERE collection_name = %(collection)s "
            f"AND ({metadata})->>'file_id' = %(file_id)s",
            {**params, "collection": collection_name, "file_id": file_id},
        )
        return cursor.rowcount

    def file_row_owners(self, collection_names: Sequence[str]) -> list[tuple[str, str | None, int]]:
        """(collection, file id, rows) for every file collection and the named collections."""
        table = self.describe_table()
        if not table.exists:
            return []
        rows_sql, params = self._readable_rows(
            table,
            "WHERE starts_with(collection_name, 'file-') OR collection_name = ANY(%(names)s)",
        )
        with self.connect(with_vectors=False) as connection, decryption_errors():
            return connection.execute(
                f"SELECT collection_name, metadata->>'file_id', count(*) FROM {rows_sql} "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                {**params, "names": list(collection_names)},
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
    ) -> list[tuple[str, str, int, int, int]]:
        """Chunks stored twice: (collection, file id, copies, rows present, rows expected).

        Open WebUI itself writes equal chunks into one collection (two pages that begin with the
        same line; equal file chunks re-split into a knowledge collection), so equal text and
        metadata alone prove nothing. A chunk is stored twice when a (collection, file) holds
        such equal rows and more rows than its complete write had, by our record of that
        write; rows we never wrote are never judged. None: the whole table."""
        table = self.describe_table()
        if not table.exists:
            return []
        scope = "" if collection_names is None else "WHERE collection_name = ANY(%(names)s)"
        rows_sql, params = self._readable_rows(table, scope)
        if collection_names is not None:
            params["names"] = list(collection_names)
        with self.connect(with_vectors=False) as connection, decryption_errors():
            recorded = connection.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.written_collection",)
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
                JOIN {SCHEMA}.written_collection w
                  ON w.collection_name = e.collection_name AND w.file_id = e.file_id
                WHERE p.rows > w.chunk_count
                ORDER BY 1, 2
                LIMIT 1000
                """,
                params,
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
        record what was written. A crash leaves either the old rows or the new.

        With PGVECTOR_USE_HALFVEC the vectors are sent as halfvec; with PGVECTOR_PGCRYPTO the
        rows are COPYed into a temporary table and encrypted from there by the server, as
        Open WebUI's own inserts do, with the key bound as a parameter."""
        collection_name, source_id = unit.collection_name, unit.source_id
        vector_type = self.vector_column_type()
        encrypted = self.resolved_pgcrypto()
        with decryption_errors(), connection.transaction(), connection.cursor() as cursor:
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
                self._delete_file_rows(cursor, collection_name, source_id, encrypted)
            rows = (
                (chunk.id, self._vector_value(vector, vector_type), chunk.text, chunk.metadata)
                for chunk, vector in zip(unit.chunks, vectors, strict=True)
            )
            if encrypted:
                self._copy_encrypted(cursor, collection_name, vector_type, rows)
            else:
                with cursor.copy(
                    "COPY document_chunk (id, vector, collection_name, text, vmetadata) "
                    "FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["text", vector_type, "text", "text", "jsonb"])
                    for chunk_id, vector, text, metadata in rows:
                        copy.write_row((chunk_id, vector, collection_name, text, Jsonb(metadata)))
            MigrationState.record_written(cursor, collection_name, source_id, record)

    @staticmethod
    def _vector_value(vector: np.ndarray, vector_type: str) -> np.ndarray | HalfVector:
        """What pgvector's dumper for the column type takes. halfvec: rounded from float32 to
        half precision, as PostgreSQL rounds the float4 values Open WebUI sends."""
        if vector_type == "halfvec":
            return HalfVector(np.asarray(vector, dtype=np.float32))
        return vector

    def _copy_encrypted(
        self,
        cursor: psycopg.Cursor,
        collection_name: str,
        vector_type: str,
        rows: Iterator[tuple[str, object, str, Mapping]],
    ) -> None:
        """COPY plain rows into a temporary table dropped at commit, then insert them with text
        and metadata encrypted by pgp_sym_encrypt. The metadata is encrypted as the JSON text
        Open WebUI's pgcrypto insert writes (`json.dumps` of the metadata), which it decrypts
        and reads back as jsonb; the CHECK refuses, as a jsonb column would, what it could not
        read back (NaN, a NUL escape)."""
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE incoming_chunk (
                id text,
                vector {vector_type},
                text text,
                metadata text CHECK (metadata::jsonb IS NOT NULL)
            ) ON COMMIT DROP
            """
        )
        with cursor.copy(
            "COPY pg_temp.incoming_chunk (id, vector, text, metadata) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", vector_type, "text", "text"])
            for chunk_id, vector, text, metadata in rows:
                copy.write_row((chunk_id, vector, text, json.dumps(metadata)))
        cursor.execute(
            """
            INSERT INTO document_chunk (id, vector, collection_name, text, vmetadata)
            SELECT id, vector, %(collection)s,
                   pgp_sym_encrypt(text, %(key)s), pgp_sym_encrypt(metadata, %(key)s)
            FROM pg_temp.incoming_chunk
            """,
            {"collection": collection_name, "key": self.resolved_pgcrypto_key()},
        )

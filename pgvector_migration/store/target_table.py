"""A chunk table in the target (Open WebUI's `document_chunk` unless named otherwise): what it
looks like now, whether our vectors fit it exactly, and creating it as Open WebUI does.

The name is a parameter so a second table can be built beside the live one; its indexes are
named after it, as Open WebUI names document_chunk's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from pgvector_migration.store.connection import Connector
from pgvector_migration.store.ddl import ddl_transaction
from pgvector_migration.store.errors import TargetConfigurationError
from pgvector_migration.store.locks import warn_if_locked
from pgvector_migration.store.names import DOCUMENT_CHUNK, state_schema
from pgvector_migration.store.schema import schema_version

VECTOR_COLUMN_LIMIT = 2000
# pgvector indexes halfvec columns of up to 4000 dimensions (ivfflat and hnsw alike).
HALFVEC_COLUMN_LIMIT = 4000


@dataclass(frozen=True)
class TargetTable:
    """What the chunk table looks like now (or that it does not exist)."""

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


@contextmanager
def decryption_errors(table: str = DOCUMENT_CHUNK) -> Iterator[None]:
    """pgcrypto refusing to decrypt (a wrong PGVECTOR_PGCRYPTO_KEY, or rows that are not its
    ciphertext) as a configuration error; the message never holds the key."""
    try:
        yield
    except psycopg.errors.ExternalRoutineInvocationException as error:
        raise TargetConfigurationError(
            f"cannot decrypt {table} with the configured PGVECTOR_PGCRYPTO_KEY "
            f"(pgcrypto: {error.diag.message_primary}): use the key Open WebUI encrypts with"
        ) from error


def has_extension(connection: psycopg.Connection, name: str) -> bool:
    return bool(
        connection.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone()
    )


@dataclass(frozen=True)
class ChunkTable:
    """One chunk table and how Open WebUI's settings store rows in it: `halfvec`
    (PGVECTOR_USE_HALFVEC), `pgcrypto` (PGVECTOR_PGCRYPTO) with its key looked up only when
    needed, and the dimension of a column yet to be made (PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH)."""

    connect: Connector
    pgcrypto_key: Callable[[], str]
    name: str = DOCUMENT_CHUNK
    halfvec: bool = False
    pgcrypto: bool = False
    vector_length: Callable[[], int] = lambda: 1536

    @property
    def vector_type(self) -> str:
        return "halfvec" if self.halfvec else "vector"

    @property
    def collection_index(self) -> str:
        return f"idx_{self.name}_collection_name"

    def chunk_columns(self, encrypted: bool) -> tuple[str, str, dict[str, str]]:
        """SQL for a row's text and its metadata as jsonb, with the parameters they need: the
        columns themselves, or on a PGVECTOR_PGCRYPTO table their decryption, the key bound as
        the `key` parameter (never written into the SQL)."""
        if not encrypted:
            return "text", "vmetadata", {}
        return (
            "pgp_sym_decrypt(text, %(key)s)",
            "pgp_sym_decrypt(vmetadata, %(key)s)::jsonb",
            {"key": self.pgcrypto_key()},
        )

    def describe(self) -> TargetTable:
        with self.connect() as connection:
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
                WHERE c.relname = %s AND n.nspname = current_schema()
                """,
                (self.name,),
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
        if self.pgcrypto:
            self.pgcrypto_key()
        table = self.describe()
        if table.exists:
            self._check_column_types(table)
            dimension = table.dimension
            origin = f"the existing {self.name}.vector column ({table.vector_type})"
        else:
            self._check_dimension_limit(model_dimension)
            dimension = self.vector_length()
            origin = "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH"
        if dimension != model_dimension:
            raise TargetConfigurationError(
                f"the embedding model produces {model_dimension}-dimensional vectors but "
                f"{origin} has {dimension} dimensions; vectors are never padded or cut: "
                f"use a matching model or a table created with "
                f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={model_dimension}"
            )
        self._check_dimension_limit(dimension)
        if self.pgcrypto and table.exists:
            self._check_key_decrypts(table)
        return table

    def _check_column_types(self, table: TargetTable) -> None:
        expected, name = self.vector_type, self.name
        if table.vector_type not in ("vector", "halfvec"):
            raise TargetConfigurationError(
                f"{name}.vector is {table.vector_type}; Open WebUI stores vector or halfvec columns"
            )
        if table.vector_type != expected:
            setting = "true" if self.halfvec else "false"
            raise TargetConfigurationError(
                f"{name}.vector is {table.vector_type}({table.dimension}) but "
                f"PGVECTOR_USE_HALFVEC={setting} writes {expected} columns: set "
                f"PGVECTOR_USE_HALFVEC={'false' if self.halfvec else 'true'} as the Open WebUI "
                "that created the table has it, or use another target"
            )
        columns = f"{name}.text is {table.text_type} and vmetadata is {table.metadata_type}"
        if self.pgcrypto and (table.text_type, table.metadata_type) != ("bytea", "bytea"):
            raise TargetConfigurationError(
                f"PGVECTOR_PGCRYPTO=true stores text and vmetadata encrypted as bytea but "
                f"{columns}: the table was created without encryption; set "
                "PGVECTOR_PGCRYPTO=false as that Open WebUI has it, or use another target"
            )
        if not self.pgcrypto and (table.text_type, table.metadata_type) != ("text", "jsonb"):
            kind = " (an encrypted PGVECTOR_PGCRYPTO table)" if table.encrypted else ""
            raise TargetConfigurationError(
                f"{columns}{kind} but PGVECTOR_PGCRYPTO is not enabled, which writes text and "
                "jsonb: set PGVECTOR_PGCRYPTO=true and PGVECTOR_PGCRYPTO_KEY as that Open WebUI "
                "has them, or use another target"
            )

    def _check_dimension_limit(self, dimension: int) -> None:
        if not self.halfvec and dimension > VECTOR_COLUMN_LIMIT:
            raise TargetConfigurationError(
                f"{dimension}-dimensional vectors exceed the {VECTOR_COLUMN_LIMIT} dimensions of "
                "pgvector's vector type: set PGVECTOR_USE_HALFVEC=true (halfvec columns, up to "
                f"{HALFVEC_COLUMN_LIMIT} dimensions), as Open WebUI requires above "
                f"{VECTOR_COLUMN_LIMIT}"
            )
        if self.halfvec and dimension > HALFVEC_COLUMN_LIMIT:
            raise TargetConfigurationError(
                f"{dimension}-dimensional vectors exceed the {HALFVEC_COLUMN_LIMIT} dimensions "
                "pgvector can index as halfvec (PGVECTOR_USE_HALFVEC); use a model with fewer "
                "dimensions"
            )

    def _check_key_decrypts(self, table: TargetTable) -> None:
        """Decrypt one existing row, so a wrong key is refused before anything is written
        rather than mixing rows Open WebUI could not read with its own."""
        with self.connect() as connection:
            if not has_extension(connection, "pgcrypto"):
                return
            _, metadata, params = self.chunk_columns(table.encrypted)
            with decryption_errors(self.name):
                connection.execute(
                    f"SELECT {metadata} FROM {self.name} WHERE vmetadata IS NOT NULL LIMIT 1",
                    params,
                ).fetchall()

    def ensure(self, model_dimension: int) -> None:
        """Create the extensions, the table and its collection index as Open WebUI does,
        after checking that the model's vectors fit; called before every write step, it also
        says who holds locks the writes would wait for."""
        table = self.check_compatible(model_dimension)
        with self.connect() as connection:
            warn_if_locked(connection, f"writing {self.name}", self.name)
        if table.exists and self._has_collection_index():
            return
        text_type, metadata_type = ("bytea", "bytea") if self.pgcrypto else ("text", "jsonb")
        with self.connect() as connection, ddl_transaction(connection):
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # As Open WebUI: create pgcrypto only when it is missing, so a role that may not
            # create extensions still works where an administrator installed it.
            if self.pgcrypto and not has_extension(connection, "pgcrypto"):
                connection.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
            connection.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.name} (
                    id text PRIMARY KEY,
                    vector {self.vector_type}({model_dimension}),
                    collection_name text NOT NULL,
                    text {text_type},
                    vmetadata {metadata_type}
                )
                """
            )
            connection.execute(
                f"CREATE INDEX IF NOT EXISTS {self.collection_index} "
                f"ON {self.name} (collection_name)"
            )

    def _has_collection_index(self) -> bool:
        """Whether Open WebUI's collection index exists: then there is nothing to create, and
        no lock to take (CREATE INDEX IF NOT EXISTS would wait for every open write first)."""
        with self.connect() as connection:
            row = connection.execute("SELECT to_regclass(%s)", (self.collection_index,)).fetchone()
        return row[0] is not None

    def check_can_create(self) -> None:
        """Refuse, before anything is written, a target where this role can create neither
        the pgvector extension (when it is missing) nor our schema (when it is missing)."""
        with self.connect() as connection:
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
                schema_version(connection, state_schema(self.name)) == 0
                and not connection.execute(
                    "SELECT has_database_privilege(current_database(), 'CREATE')"
                ).fetchone()[0]
            ):
                raise TargetConfigurationError(
                    f"role {role} may not create the {state_schema(self.name)} schema in database "
                    f"{database}: GRANT CREATE ON DATABASE {database} TO {role}, or create the "
                    "schema for it"
                )

    def readable_rows(self, table: TargetTable, where: str) -> tuple[str, dict[str, str]]:
        """A FROM item of the table's rows with `collection_name`, plain `text` and
        `metadata` (jsonb), decrypted on a PGVECTOR_PGCRYPTO table, and its parameters.
        OFFSET 0 keeps the subquery whole, so each row is decrypted once however often the
        outer query uses its metadata."""
        text, metadata, params = self.chunk_columns(table.encrypted)
        rows = (
            f"(SELECT collection_name, {text} AS text, {metadata} AS metadata "
            f"FROM {self.name} {where} OFFSET 0) AS chunk"
        )
        return rows, dict(params)

"""Our schema `pgvector_migration` as numbered migrations, applied in order under an advisory
lock and recorded in `schema_version`, once per process and database: every step writes what
it found or did in these tables, so a run can stop at any point and the next one picks up
from them; an admin can read the same tables with SQL.

A database created before the migrations were numbered holds version 1's tables without a
`schema_version`: version 1 is its exact DDL (every statement IF NOT EXISTS), so it upgrades
in place from there.
"""

from __future__ import annotations

import logging
import os
import threading

import psycopg

from pgvector_migration.store.connection import Connector
from pgvector_migration.store.ddl import ddl_transaction
from pgvector_migration.store.names import SCHEMA

log = logging.getLogger(__name__)

STATE_TABLES_V1 = """
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

# A failure's subject is a file, a knowledge base or a memory (its partition key says which:
# a knowledge partition, or the kind of system collection), never only a file.
FAILURE_ITEM_ID_V2 = "ALTER TABLE {SCHEMA}.file_failure RENAME COLUMN file_id TO item_id"

# Version n is MIGRATIONS[n - 1] with {SCHEMA} the state schema it migrates (`pgvector_migration`,
# or a model switch's `pgvector_migration_shadow`); a step, once released, never changes: a new
# one is added.
MIGRATIONS: tuple[str, ...] = (STATE_TABLES_V1, FAILURE_ITEM_ID_V2)
LATEST_VERSION = len(MIGRATIONS)

VERSION_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_migrated: set[tuple[int, str, str]] = set()
_migrated_lock = threading.Lock()


def _in(schema: str, statement: str) -> str:
    """A migration's statement for state schema `schema`."""
    return statement.replace("{SCHEMA}", schema)


def schema_version(connection: psycopg.Connection, schema: str = SCHEMA) -> int:
    """The version of our schema in this database, without creating anything: 0 when no run
    made it, 1 for the tables of a version that did not record its version."""
    tables = connection.execute(
        f"SELECT to_regclass('{schema}.schema_version'), to_regclass('{schema}.file_failure')"
    ).fetchone()
    if tables[0] is not None:
        row = connection.execute(f"SELECT max(version) FROM {schema}.schema_version").fetchone()
        return row[0] or 0
    return 0 if tables[1] is None else 1


def state_schema_exists(connection: psycopg.Connection, schema: str = SCHEMA) -> bool:
    """Whether a run has made our tables, at this code's version (looked up without creating
    anything). Tables of an older version are taken as absent by read-only views, with a
    warning: their reads would name columns the old tables lack."""
    version = schema_version(connection, schema)
    if 0 < version < LATEST_VERSION:
        log.warning(
            f"the {schema} schema is at version {version} of {LATEST_VERSION}: a run that "
            "writes (not read-only) upgrades it; until then its records are not shown"
        )
    return version == LATEST_VERSION


def apply_migrations(connection: psycopg.Connection, schema: str = SCHEMA) -> int:
    """Bring our schema to the latest version, each missing step in order and recorded, in
    one transaction under the DDL lock (concurrent first runs take turns; the second finds
    nothing to do). Returns the version found before."""
    with ddl_transaction(connection):
        found = schema_version(connection, schema)
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        connection.execute(_in(schema, VERSION_TABLE_DDL))
        # Tables made before versions were recorded: their version is recorded as found.
        connection.execute(
            f"INSERT INTO {schema}.schema_version (version) SELECT generate_series(1, %s) "
            "ON CONFLICT (version) DO NOTHING",
            (found,),
        )
        for version in range(found + 1, LATEST_VERSION + 1):
            connection.execute(_in(schema, MIGRATIONS[version - 1]))
            connection.execute(
                f"INSERT INTO {schema}.schema_version (version) VALUES (%s)", (version,)
            )
    if found < LATEST_VERSION:
        log.info(f"{schema} schema migrated from version {found} to {LATEST_VERSION}")
    return found


def ensure_state_schema(url: str, connect: Connector, schema: str = SCHEMA) -> None:
    """Apply the migrations to state schema `schema` of the database at `url` once in this
    process: later calls return without a connection or a query. A database at the latest
    version takes no lock."""
    key = (os.getpid(), url, schema)
    with _migrated_lock:
        if key in _migrated:
            return
        with connect() as connection:
            if schema_version(connection, schema) != LATEST_VERSION:
                apply_migrations(connection, schema)
        _migrated.add(key)

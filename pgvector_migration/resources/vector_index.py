"""Building `idx_document_chunk_vector` after loading, the way pgvector recommends.

The new index is built under a temporary name (CONCURRENTLY by default, so searches go on)
and swapped in, with `maintenance_work_mem` and parallel workers sized to the index and the
server (index_sizing.py) unless configured; ivfflat `lists` is
sized to the table unless configured, since an ivfflat index built on too little data recalls
poorly. A halfvec column (PGVECTOR_USE_HALFVEC) is indexed with halfvec_cosine_ops, by hnsw
unless PGVECTOR_INDEX_METHOD says otherwise, as Open WebUI does; an encrypted table
(PGVECTOR_PGCRYPTO) gets no text-search index, since its text is ciphertext.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from pgvector_migration.resources.index_sizing import server_build_sizing
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store.errors import TargetConfigurationError
from pgvector_migration.store.locks import LOCK_TIMEOUT_ENV, lock_timeout_seconds
from pgvector_migration.store.names import DOCUMENT_CHUNK


def vector_index_name(table: str) -> str:
    """A chunk table's vector index, named as Open WebUI names document_chunk's."""
    return f"idx_{table}_vector"


INDEX_NAME = vector_index_name(DOCUMENT_CHUNK)
# The index rebuild's advisory lock key, its own ("pgmi"): no other lock of ours uses it.
REBUILD_LOCK = 0x70676D69
REBUILD_POLL_SECONDS = 0.5
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexBuild:
    """What the rebuild did, for the asset's metadata."""

    method: str
    options: str
    rows: int
    seconds: float
    concurrently: bool
    skipped_reason: str = ""
    text_search_skipped_reason: str = ""
    sizing: str = ""


def ivfflat_lists_for(rows: int) -> int:
    """pgvector's guidance: rows / 1000 up to a million rows, sqrt(rows) beyond."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return int(math.sqrt(rows))


def _positive_int(configured: int | None, variable: str, default: int) -> int:
    """A resource field, else the environment variable, else `default`; anything but a whole
    number above 0 is a configuration error naming the variable."""
    if configured is not None:
        value: object = configured
    else:
        value = os.environ.get(variable, "").strip() or default
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise TargetConfigurationError(
            f"{variable}={value!r} is not a whole number above 0: fix or unset it "
            f"(default {default})"
        )
    return number


def index_options(
    vector_store: PgVectorResource, rows: int, halfvec: bool | None = None
) -> tuple[str, str]:
    """(method, WITH clause) from resource config, then Open WebUI's environment names; with
    no method configured, hnsw for a halfvec column (None: PGVECTOR_USE_HALFVEC), else
    ivfflat. A bad setting raises `TargetConfigurationError` naming it, so the CLI's preflight
    refuses it before anything is written."""
    if halfvec is None:
        halfvec = vector_store.resolved_use_halfvec()
    configured = vector_store.index_method or os.environ.get("PGVECTOR_INDEX_METHOD", "")
    method = configured.strip().lower() or ("hnsw" if halfvec else "ivfflat")
    if method == "hnsw":
        m = _positive_int(vector_store.hnsw_m, "PGVECTOR_HNSW_M", 16)
        ef = _positive_int(vector_store.hnsw_ef_construction, "PGVECTOR_HNSW_EF_CONSTRUCTION", 64)
        return method, f"WITH (m = {m}, ef_construction = {ef})"
    if method == "ivfflat":
        configured_lists = vector_store.ivfflat_lists or os.environ.get("PGVECTOR_IVFFLAT_LISTS")
        lists = (
            _positive_int(vector_store.ivfflat_lists, "PGVECTOR_IVFFLAT_LISTS", 1)
            if configured_lists
            else ivfflat_lists_for(rows)
        )
        return method, f"WITH (lists = {lists})"
    raise TargetConfigurationError(
        f"PGVECTOR_INDEX_METHOD={configured!r} is not supported; use ivfflat or hnsw"
    )


MEMORY_SETTING = re.compile(r"\d+\s*(kB|MB|GB|TB)?")


def check_index_settings(vector_store: PgVectorResource) -> None:
    """Every index setting, checked before a run writes anything."""
    index_options(vector_store, 0)
    memory = vector_store.maintenance_work_mem
    if memory is not None and not MEMORY_SETTING.fullmatch(memory.strip()):
        raise TargetConfigurationError(
            f"maintenance_work_mem={memory!r} is not a PostgreSQL memory size such as 1GB or "
            "512MB (or leave it empty to size the build to the server)"
        )
    workers = vector_store.max_parallel_maintenance_workers
    if workers is not None and workers < 0:
        raise TargetConfigurationError(
            f"max_parallel_maintenance_workers={workers} is below 0: give 0 or more (or leave "
            "it empty to size the build to the server)"
        )


@contextmanager
def rebuild_turn(connection: psycopg.Connection) -> Iterator[str]:
    """Hold the index rebuild's own advisory lock while this session rebuilds, so two
    rebuilds (two CLIs finishing together, the CLI and the Dagster job) never race on the
    temporary index name. Session-level, since CREATE INDEX CONCURRENTLY runs outside any
    transaction; a session that ends releases it. The lock is polled, never waited for in a
    statement: CREATE INDEX CONCURRENTLY waits for every open statement to end, so a session
    blocked in pg_advisory_lock would deadlock against it.

    Yields "first" (nobody else was rebuilding), "waited" (another rebuild finished while
    this one waited, logged first) or "busy" (another rebuild still runs after the lock
    timeout; its index covers every row, including those written meanwhile)."""

    def take() -> bool:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (REBUILD_LOCK,)).fetchone()
        return bool(row[0])

    turn = "first"
    if not take():
        timeout = lock_timeout_seconds()
        log.warning(
            f"another session is rebuilding {INDEX_NAME}; waiting up to {timeout:g} s "
            f"({LOCK_TIMEOUT_ENV}) for it to finish"
        )
        deadline = time.monotonic() + timeout
        turn = "busy"
        while time.monotonic() < deadline:
            time.sleep(REBUILD_POLL_SECONDS)
            if take():
                turn = "waited"
                break
    try:
        yield turn
    finally:
        if turn != "busy" and not connection.closed:
            connection.execute("SELECT pg_advisory_unlock(%s)", (REBUILD_LOCK,))


def _valid_index_exists(connection: psycopg.Connection, table: str) -> bool:
    row = connection.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        (vector_index_name(table),),
    ).fetchone()
    return bool(row and row[0])


def rebuild_vector_index(
    vector_store: PgVectorResource, table_name: str | None = None
) -> IndexBuild:
    """Build a fresh index over the whole table (the resource's own when None) and swap it in
    for the old one, one rebuild at a time; one that waited for another finds the index just
    built and keeps it (rows written meanwhile are indexed as they are inserted)."""
    table_name = table_name or vector_store.table_name
    concurrently = vector_store.build_index_concurrently
    table = vector_store.table(table_name).describe()
    if not table.exists:
        return IndexBuild("", "", 0, 0.0, concurrently, f"{table_name} does not exist yet")
    index_name = vector_index_name(table_name)
    building_name = f"{index_name}_building"
    halfvec = table.vector_type == "halfvec"
    opclass = "halfvec_cosine_ops" if halfvec else "vector_cosine_ops"
    vector_store.warn_if_locked(f"rebuilding {index_name}")
    # Its own session: it reads the server's settings as they are now and holds session
    # settings and a session lock while it builds.
    with vector_store.connect(fresh=True) as connection, rebuild_turn(connection) as turn:
        rows = connection.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0]
        method, options = index_options(vector_store, rows, halfvec)
        if turn == "busy":
            return IndexBuild(
                method, options, rows, 0.0, concurrently, "another session is rebuilding it"
            )
        if turn == "waited" and _valid_index_exists(connection, table_name):
            return IndexBuild(
                method, options, rows, 0.0, concurrently, "another session has just rebuilt it"
            )
        if rows == 0:
            return IndexBuild(method, options, 0, 0.0, concurrently, "the table is empty")
        started = time.monotonic()
        m = re.search(r"\bm = (\d+)", options)
        sizing = server_build_sizing(
            connection,
            rows,
            table.dimension or 0,
            halfvec,
            method,
            int(m.group(1)) if m else 16,
            vector_store.maintenance_work_mem,
            vector_store.max_parallel_maintenance_workers,
        )
        connection.execute(
            "SELECT set_config('maintenance_work_mem', %s, false)", (sizing.maintenance_work_mem,)
        )
        connection.execute(f"SET max_parallel_maintenance_workers = {int(sizing.workers)}")
        # A build killed half-way leaves an invalid index under the temporary name.
        connection.execute(f"DROP INDEX IF EXISTS {building_name}")
        connection.execute(
            f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}{building_name} "
            f"ON {table_name} USING {method} (vector {opclass}) {options}"
        )
        with connection.transaction():
            connection.execute(f"DROP INDEX IF EXISTS {index_name}")
            connection.execute(f"ALTER INDEX {building_name} RENAME TO {index_name}")
        text_search_skipped = ""
        if table.encrypted:
            text_search_skipped = "text and vmetadata are encrypted (PGVECTOR_PGCRYPTO)"
        else:
            connection.execute(
                f"CREATE INDEX IF NOT EXISTS idx_{table_name}_text_search ON {table_name} "
                "USING GIN (to_tsvector('simple', coalesce(text, '')))"
            )
    return IndexBuild(
        method,
        options,
        rows,
        time.monotonic() - started,
        concurrently,
        text_search_skipped_reason=text_search_skipped,
        sizing=sizing.describe(),
    )


def valid_index_exists(vector_store: PgVectorResource, table_name: str | None = None) -> bool:
    """Whether the chunk table (the resource's own when None) has a usable vector index now (a
    run that wrote and deleted nothing keeps it instead of rebuilding it)."""
    table_name = table_name or vector_store.table_name
    if not vector_store.table(table_name).describe().exists:
        return False
    with vector_store.connect() as connection:
        return _valid_index_exists(connection, table_name)

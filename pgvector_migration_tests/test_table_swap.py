"""The swap of a shadow table with Open WebUI's live `document_chunk`, on the embedded
PostgreSQL: names Open WebUI expects afterwards, all-or-nothing under a kill, readers that wait
and then read the new table, and refusals that change nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from pgvector_migration.store.table_swap import (
    SwapRefused,
    cutover,
    drop_previous,
    drop_shadow,
    previous_table,
    rollback,
    shadow_table,
)

LIVE = "document_chunk"


def make_table(connection: psycopg.Connection, table: str, dimension: int, rows: int) -> None:
    """A table as Open WebUI creates it (primary key, vector, collection and text-search
    indexes named `idx_{table}_...`), holding `rows` vectors of `dimension`."""
    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    connection.execute(
        f"CREATE TABLE {table} (id text PRIMARY KEY, vector vector({dimension}), "
        "collection_name text NOT NULL, text text, vmetadata jsonb)"
    )
    connection.execute(
        f"INSERT INTO {table} SELECT 'id-' || g, "
        f"array_fill(g::real, ARRAY[{dimension}])::vector, 'file-' || (g % 3), 't' || g, '{{}}' "
        f"FROM generate_series(1, {rows}) g"
    )
    connection.execute(
        f"CREATE INDEX idx_{table}_vector ON {table} USING hnsw (vector vector_cosine_ops)"
    )
    connection.execute(f"CREATE INDEX idx_{table}_collection_name ON {table} (collection_name)")
    connection.execute(
        f"CREATE INDEX idx_{table}_text_search ON {table} "
        "USING GIN (to_tsvector('simple', coalesce(text, '')))"
    )


def dimension_of(connection: psycopg.Connection, table: str) -> int:
    return connection.execute(f"SELECT vector_dims(vector) FROM {table} LIMIT 1").fetchone()[0]


def index_names(connection: psycopg.Connection, table: str) -> list[str]:
    return [
        row[0]
        for row in connection.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", (table,)
        ).fetchall()
    ]


def constraint_names(connection: psycopg.Connection, table: str) -> list[str]:
    return [
        row[0]
        for row in connection.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) ORDER BY 1",
            (table,),
        ).fetchall()
    ]


def tables(connection: psycopg.Connection) -> dict[str, int]:
    """Each document_chunk* table and the dimension it holds."""
    names = connection.execute(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'document_chunk%' ORDER BY 1"
    ).fetchall()
    return {name: dimension_of(connection, name) for (name,) in names}


@pytest.fixture
def target(fresh_database):
    """A target with a live table of 3 dimensions and a shadow of 5 beside it."""
    url = fresh_database()
    with psycopg.connect(url, autocommit=True) as connection:
        make_table(connection, LIVE, 3, 50)
        make_table(connection, shadow_table(LIVE), 5, 40)
    return url


def test_cutover_puts_the_shadow_under_open_webuis_names_and_keeps_the_old_table(target):
    with psycopg.connect(target, autocommit=True) as connection:
        live_constraints = constraint_names(connection, LIVE)
        result = cutover(connection, LIVE)
        assert tables(connection) == {LIVE: 5, previous_table(LIVE): 3}
        # The names a table created as document_chunk has (PostgreSQL 18 names NOT NULLs too).
        assert constraint_names(connection, LIVE) == live_constraints
        assert connection.execute(f"SELECT count(*) FROM {LIVE}").fetchone()[0] == 40
        assert index_names(connection, LIVE) == [
            "document_chunk_pkey",
            "idx_document_chunk_collection_name",
            "idx_document_chunk_text_search",
            "idx_document_chunk_vector",
        ]
        assert index_names(connection, previous_table(LIVE)) == [
            "document_chunk_previous_pkey",
            "idx_document_chunk_previous_collection_name",
            "idx_document_chunk_previous_text_search",
            "idx_document_chunk_previous_vector",
        ]
    assert ("document_chunk_shadow", "document_chunk") in result.renamed
    assert result.seconds < 5


def test_rollback_exchanges_live_and_previous_and_a_second_one_switches_forward(target):
    with psycopg.connect(target, autocommit=True) as connection:
        cutover(connection, LIVE)
        rollback(connection, LIVE)
        assert tables(connection) == {LIVE: 3, previous_table(LIVE): 5}
        assert "idx_document_chunk_vector" in index_names(connection, LIVE)
        assert all(
            name.startswith("document_chunk_previous_")
            for name in constraint_names(connection, previous_table(LIVE))
        )
        rollback(connection, LIVE)
        assert tables(connection) == {LIVE: 5, previous_table(LIVE): 3}
        assert drop_previous(connection, LIVE)
        assert tables(connection) == {LIVE: 5}
        assert not drop_previous(connection, LIVE)


def state_schemas(connection: psycopg.Connection) -> dict[str, str]:
    """Each pgvector_migration* schema with the marker row of the table it was made for."""
    names = connection.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgvector_migration%' ORDER BY 1"
    ).fetchall()
    return {
        name: connection.execute(f"SELECT made_for FROM {name}.marker").fetchone()[0]
        for (name,) in names
    }


def test_each_state_schema_moves_with_its_table_in_the_swap(target):
    """The ledger of a table is renamed with it: after a cutover `pgvector_migration` is the
    shadow's, after a rollback the old table's again; finish drops the previous one."""
    with psycopg.connect(target, autocommit=True) as connection:
        for schema, table in (
            ("pgvector_migration", LIVE),
            ("pgvector_migration_shadow", shadow_table(LIVE)),
        ):
            connection.execute(f"CREATE SCHEMA {schema}")
            connection.execute(f"CREATE TABLE {schema}.marker AS SELECT '{table}' AS made_for")
        result = cutover(connection, LIVE)
        assert ("pgvector_migration_shadow", "pgvector_migration") in result.renamed
        assert state_schemas(connection) == {
            "pgvector_migration": "document_chunk_shadow",
            "pgvector_migration_previous": "document_chunk",
        }
        rollback(connection, LIVE)
        assert state_schemas(connection) == {
            "pgvector_migration": "document_chunk",
            "pgvector_migration_previous": "document_chunk_shadow",
        }
        with pytest.raises(SwapRefused, match="pgvector_migration_previous"):
            make_table(connection, shadow_table(LIVE), 7, 5)
            connection.execute("DROP TABLE document_chunk_previous")
            cutover(connection, LIVE)
        assert drop_previous(connection, LIVE)
        assert state_schemas(connection) == {"pgvector_migration": "document_chunk"}
        assert drop_shadow(connection, LIVE)
        assert tables(connection) == {LIVE: 3}


def test_refusals_change_nothing(target):
    with psycopg.connect(target, autocommit=True) as connection:
        with pytest.raises(SwapRefused, match="document_chunk_previous"):
            rollback(connection, LIVE)
        cutover(connection, LIVE)
        make_table(connection, shadow_table(LIVE), 7, 5)
        before = tables(connection)
        with pytest.raises(SwapRefused, match="finish that switch"):
            cutover(connection, LIVE)
        assert tables(connection) == before
        assert drop_shadow(connection, LIVE)
        with pytest.raises(SwapRefused, match="no table document_chunk_shadow"):
            cutover(connection, LIVE)
        assert tables(connection) == {LIVE: 5, previous_table(LIVE): 3}


def test_a_query_arriving_during_the_swap_waits_and_reads_the_new_table(target):
    """Open WebUI's search may run at the moment of the cutover: it must neither fail (no
    moment without a `document_chunk`) nor read the old model's vectors after the switch."""
    holder = psycopg.connect(target)  # a search in flight: holds a reader's lock
    holder.execute(f"SELECT count(*) FROM {LIVE}").fetchone()
    swapped: list = []
    swapper = threading.Thread(
        target=lambda: swapped.append(
            cutover(psycopg.connect(target, autocommit=True), LIVE, lock_timeout_seconds=30)
        )
    )
    swapper.start()
    wait_for_lock_waiters(target, 1)
    seen: list = []
    reader = threading.Thread(
        target=lambda: seen.append(dimension_of(psycopg.connect(target, autocommit=True), LIVE))
    )
    reader.start()
    wait_for_lock_waiters(target, 2)  # the new search queues behind the swap
    assert not swapped and not seen
    holder.commit()
    holder.close()
    swapper.join(30)
    reader.join(30)
    assert swapped and seen == [5]


def test_the_swap_gives_up_on_a_lock_held_too_long_and_changes_nothing(target):
    holder = psycopg.connect(target)
    holder.execute(f"SELECT count(*) FROM {shadow_table(LIVE)}").fetchone()
    try:
        with (
            psycopg.connect(target, autocommit=True) as connection,
            pytest.raises(psycopg.errors.LockNotAvailable),
        ):
            cutover(connection, LIVE, lock_timeout_seconds=0.3)
    finally:
        holder.rollback()
        holder.close()
    with psycopg.connect(target, autocommit=True) as connection:
        assert tables(connection) == {LIVE: 3, shadow_table(LIVE): 5}


def test_a_cutover_killed_inside_its_transaction_leaves_the_old_state(target):
    """SIGKILL while the swap's transaction is open: PostgreSQL rolls it back, so Open WebUI
    keeps the old table and the shadow is intact for the next attempt."""
    holder = psycopg.connect(target)
    holder.execute(f"SELECT count(*) FROM {shadow_table(LIVE)}").fetchone()
    code = (
        "import psycopg, sys\n"
        "from pgvector_migration.store.table_swap import cutover\n"
        "cutover(psycopg.connect(sys.argv[1], autocommit=True), 'document_chunk', 60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, target], env=os.environ.copy())
    try:
        wait_for_lock_waiters(target, 1)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        holder.rollback()
        holder.close()
    with psycopg.connect(target, autocommit=True) as connection:
        deadline = time.monotonic() + 30
        while connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert tables(connection) == {LIVE: 3, shadow_table(LIVE): 5}
        cutover(connection, LIVE)
        assert tables(connection) == {LIVE: 5, previous_table(LIVE): 3}


def wait_for_lock_waiters(url: str, count: int) -> None:
    """Until `count` sessions wait for a lock (the swap, then a query queued behind it)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as connection:
        while (
            connection.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()[0]
            < count
        ):
            assert time.monotonic() < deadline, "nobody waited for the lock"
            time.sleep(0.02)

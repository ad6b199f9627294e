"""The store's own guarantees: an old state schema upgrades in place, the migrations run once
per process, and the resource's connection pool is reused within a step, reset between
borrowers, kept apart across fork and closed at teardown."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store.errors import TargetLockTimeout
from pgvector_migration.store.names import DDL_LOCK, SCHEMA
from pgvector_migration.store.schema import LATEST_VERSION

OLD_STATE_SCHEMA = Path(__file__).parent / "fixtures" / "state_schema_ff2e030.sql"


@pytest.fixture
def target(fresh_database, monkeypatch) -> str:
    for name in list(os.environ):
        if name.startswith("PGVECTOR_"):
            monkeypatch.delenv(name)
    return fresh_database()


def other_sessions(url: str) -> int:
    """Client sessions on this test's database other than the one asking."""
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()[0]


def sessions_after_closing(url: str) -> int:
    """Other sessions once closed ones have had time to leave pg_stat_activity (at most 5 s)."""
    deadline = time.monotonic() + 5
    while (count := other_sessions(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def versions(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as connection:
        if connection.execute(f"SELECT to_regclass('{SCHEMA}.schema_version')").fetchone()[0]:
            rows = connection.execute(f"SELECT version FROM {SCHEMA}.schema_version ORDER BY 1")
            return [row[0] for row in rows]
    return []


def test_a_state_schema_made_by_the_previous_version_is_upgraded_in_place(target):
    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute(OLD_STATE_SCHEMA.read_text())
        connection.execute(
            f"INSERT INTO {SCHEMA}.file_failure (partition_key, file_id, filename, stage, error) "
            "VALUES ('memories', 'memory-1', 'a memory', 'embedding', 'refused')"
        )
        connection.execute(
            f"INSERT INTO {SCHEMA}.completeness (partition_key, file_id, collection_name, "
            "filename, status, present_chunks, reason, selected) "
            "VALUES ('kb-a', 'file-1', 'file-file-1', 'a.txt', 'missing', 0, '', true)"
        )
    store = PgVectorResource(database_url=target)
    try:
        read_only = PgVectorResource(database_url=target, read_only=True).state()
        assert not read_only.recorded, "an old layout is not read with the new column names"
        state = store.state()
        assert versions(target) == list(range(1, LATEST_VERSION + 1))
        assert state.failures(["memories"]) == [
            {
                "partition_key": "memories",
                "item_id": "memory-1",
                "filename": "a memory",
                "stage": "embedding",
                "error": "refused",
            }
        ], "the recorded failure survives the rename"
        state.record_failure("kb-a", "file-1", "a.txt", "chunking", "unreadable")
        assert state.failed_files() == {"kb-a": ["file-1"], "memories": ["memory-1"]}
        assert [row["failed"] for row in state.status_rows()] == [1]
        assert [unit for unit in state.staged_units(["kb-a"])] == []
        assert PgVectorResource(database_url=target, read_only=True).state().recorded
    finally:
        store.close()
    with psycopg.connect(target, autocommit=True) as connection:
        columns = connection.execute(
            "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute "
            f"WHERE attrelid = '{SCHEMA}.file_failure'::regclass AND attnum > 0"
        ).fetchone()[0]
    assert columns == ["partition_key", "item_id", "filename", "stage", "error", "failed_at"]


def test_a_new_database_gets_every_migration_recorded(target):
    store = PgVectorResource(database_url=target)
    try:
        store.state().record_failure("kb-a", "file-1", "a.txt", "chunking", "unreadable")
    finally:
        store.close()
    assert versions(target) == list(range(1, LATEST_VERSION + 1))


def test_the_migrations_run_once_per_process_and_database(target):
    first = PgVectorResource(database_url=target)
    second = PgVectorResource(database_url=target)
    try:
        first.state()
        with psycopg.connect(target, autocommit=True) as connection:
            connection.execute(f"DELETE FROM {SCHEMA}.schema_version")
        second.state()
        assert versions(target) == [], "a second resource on the same URL looked again"
    finally:
        first.close()
        second.close()


def test_a_database_at_the_latest_version_takes_no_ddl_lock(target, monkeypatch):
    """Another process (here: another URL for the same database, which this process has not
    migrated) finds the schema current and never waits for the DDL lock; one whose schema is
    old does wait, and gives up after the lock timeout."""
    monkeypatch.setenv("PGVECTOR_MIGRATION_LOCK_TIMEOUT", "1")
    migrated = PgVectorResource(database_url=target)
    joiner = "&" if "?" in target else "?"
    current = PgVectorResource(database_url=f"{target}{joiner}application_name=current")
    old = PgVectorResource(database_url=f"{target}{joiner}application_name=old")
    try:
        migrated.state()
        with psycopg.connect(target, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (DDL_LOCK,))
            current.state()
            holder.execute(f"DELETE FROM {SCHEMA}.schema_version WHERE version = %s", (2,))
            with pytest.raises(TargetLockTimeout):
                old.state()
    finally:
        for store in (migrated, current, old):
            store.close()


def test_the_pool_lives_through_a_step_and_closes_at_teardown(target):
    seen: dict[str, object] = {}

    @dg.asset
    def borrows_connections(vector_store: PgVectorResource) -> None:
        with vector_store.connect() as connection:
            first = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            # After the pooled connection was made: it learns the types when asked for them.
            connection.execute("CREATE EXTENSION vector")
        vector_store.state().record_failure("kb-a", "file-1", "a.txt", "chunking", "unreadable")
        with vector_store.connect(with_vectors=True) as connection:
            second = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            seen["vector"] = connection.execute("SELECT '[1,2]'::vector").fetchone()[0]
        seen["pids"] = (first, second)
        seen["open"] = other_sessions(target)

    result = dg.materialize(
        [borrows_connections], resources={"vector_store": PgVectorResource(database_url=target)}
    )
    assert result.success
    first, second = seen["pids"]
    assert first == second, "the step's second borrow reused the pooled connection"
    assert seen["open"] >= 1
    assert seen["vector"].to_list() == [1.0, 2.0], "pgvector's types registered on request"
    assert sessions_after_closing(target) == 0, "teardown closed every pooled connection"


def test_a_borrower_finds_a_fresh_session_and_close_leaves_nothing_open(target, monkeypatch):
    monkeypatch.setenv("PGVECTOR_MIGRATION_LOCK_TIMEOUT", "7")
    store = PgVectorResource(database_url=target)
    with store.connect() as connection:
        pid = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        connection.execute("SET maintenance_work_mem = '77MB'")
        connection.execute("SELECT pg_advisory_lock(42)")
    with store.connect() as connection:
        assert connection.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert connection.execute("SHOW maintenance_work_mem").fetchone()[0] != "77MB"
        assert connection.execute("SHOW lock_timeout").fetchone()[0] == "7s"
        held = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
        ).fetchone()[0]
        assert held == 0, "a session advisory lock left by a borrower is released"
    store.close()
    assert sessions_after_closing(target) == 0


def test_a_forked_child_never_uses_its_parents_connections(target):
    store = PgVectorResource(database_url=target)
    try:
        with store.connect() as connection:
            parent = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with store.connect() as connection:
                    own = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
                code = 0 if own != parent else 2
                store.close()
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        outcome = os.read(read, 1)
        os.waitpid(child, 0)
        assert outcome == bytes([0]), "the child borrowed its parent's connection"
        with store.connect() as connection:
            assert connection.execute("SELECT pg_backend_pid()").fetchone()[0] == parent
    finally:
        store.close()


def test_runs_starting_together_on_a_new_target_create_our_schema_once(fresh_database):
    """Each of three sessions looks for our schema (finding none), then migrates, at once, as
    runs starting together on a new target do; on 40 new targets none fails. A lock taken
    inside the creating transaction failed here on the catalog's unique index (3 of 30)."""
    import threading

    from pgvector_migration.store.schema import apply_migrations, schema_version

    failures: list[BaseException] = []

    def migrate(url: str, start: threading.Barrier) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as connection:
                schema_version(connection)
                start.wait()
                apply_migrations(connection)
        except BaseException as error:  # reported by the test below
            failures.append(error)

    for _ in range(40):
        url = fresh_database()
        start = threading.Barrier(3)
        threads = [threading.Thread(target=migrate, args=(url, start)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        assert versions(url) == list(range(1, LATEST_VERSION + 1))

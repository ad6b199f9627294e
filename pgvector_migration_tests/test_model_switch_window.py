"""The window between a cutover's delta pass and its swap: a file Open WebUI records after the
pass read the source must not be left behind in the replaced table.

The test holds a lock on the live `document_chunk` from a second connection (as an Open WebUI
search in flight would), so the swap waits for it; while it waits, the test writes Open WebUI's
source database as Open WebUI does, then lets the swap go. Nothing of ours is replaced.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest

from pgvector_migration import cli
from pgvector_migration.model_switch_cutover import SwitchRefused, cut_over, shadow_store
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.old_vector_store import OldVectorStoreResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration_tests.conftest import TEST_DIMENSIONS
from pgvector_migration_tests.test_model_switch import (
    NEW_DIMENSIONS,
    NEW_MODEL,
    SWITCH,
    add_standalone_file,
    chunks,
    dimension,
    migrate_with_model_a,
    run,
)

WAIT_SECONDS = 60


@pytest.fixture
def migrated(deployment, tmp_path):
    return migrate_with_model_a(deployment, tmp_path)


def swap_waiting(connection: psycopg.Connection, holder_pid: int) -> bool:
    """Another session waits for a lock on document_chunk (the swap's ACCESS EXCLUSIVE)."""
    return (
        connection.execute(
            "SELECT 1 FROM pg_locks WHERE NOT granted AND pid <> %s "
            "AND relation = to_regclass('document_chunk')",
            (holder_pid,),
        ).fetchone()
        is not None
    )


class LiveTableHolder:
    """A session that holds ACCESS SHARE on document_chunk and, each time the swap waits for
    it, uploads a file to Open WebUI's database and lets go; `changes` times, then lets the
    swap through."""

    def __init__(self, deployment, url: str, changes: int) -> None:
        self.deployment = deployment
        self.changes = changes
        self.added: list[str] = []
        self.error: BaseException | None = None
        self.holder = psycopg.connect(url)
        self.watcher = psycopg.connect(url, autocommit=True)
        self._lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _lock(self) -> None:
        self.holder.execute("LOCK TABLE document_chunk IN ACCESS SHARE MODE")

    def _run(self) -> None:
        try:
            for number in range(self.changes):
                deadline = time.monotonic() + WAIT_SECONDS
                while not swap_waiting(self.watcher, self.holder.info.backend_pid):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the swap never waited for the live table's lock")
                    time.sleep(0.05)
                name = f"uploaded_during_swap_{number}.txt"
                self.added.append(
                    add_standalone_file(self.deployment, name, f"Uploaded at swap {number}.\n")
                )
                self.holder.commit()  # the swap takes its locks, sees the change, rolls back
                if number + 1 < self.changes:
                    self._lock()  # granted once the rolled-back swap lets go
            if self.changes == 0:
                self.holder.commit()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error
            self.holder.rollback()

    def __enter__(self) -> LiveTableHolder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(WAIT_SECONDS)
        self.holder.close()
        self.watcher.close()


def test_a_file_recorded_while_the_swap_waits_reaches_the_new_table(migrated, tmp_path, capsys):
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED  # the build (the corrupt PDF fails)
    capsys.readouterr()

    with LiveTableHolder(migrated, migrated.target_url, changes=1) as holder:
        code, _ = run(tmp_path, *SWITCH, "--cutover")
    assert holder.error is None

    printed = capsys.readouterr().out
    assert code == cli.EXIT_OK
    (added,) = holder.added
    assert f"Open WebUI changed file {added} added after the delta pass read it" in printed
    assert "delta pass 2 of 3" in printed
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == NEW_DIMENSIONS
        live = {row[0] for row in chunks(connection, "document_chunk")}
        previous = {row[0] for row in chunks(connection, "document_chunk_previous")}
        assert connection.execute(
            "SELECT count(*) FROM pgvector_migration.model_switch WHERE action = 'cutover'"
        ).fetchone() == (1,)
    assert f"file-{added}" in live, "the file recorded during the swap is in the new table"
    assert f"file-{added}" not in previous


def test_a_source_that_keeps_changing_refuses_the_cutover_and_names_it(migrated, tmp_path):
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    openwebui = OpenWebUIResource()
    live = PgVectorResource()
    embeddings = EmbeddingResource(model=NEW_MODEL)
    settings = embeddings.effective_settings(openwebui.rag_settings())
    shadow = shadow_store(live, embeddings, settings, NEW_DIMENSIONS)
    old_store = OldVectorStoreResource()
    passes = []

    def delta_pass() -> int:
        args = cli.build_parser().parse_args(SWITCH)
        args.prune = True
        passes.append(cli.run_migration(args, openwebui, shadow, embeddings, old_store))
        return passes[-1]

    try:
        with (
            LiveTableHolder(migrated, migrated.target_url, changes=2) as holder,
            pytest.raises(SwitchRefused) as refused,
        ):
            cut_over(live, shadow, openwebui, settings, NEW_DIMENSIONS, delta_pass, attempts=2)
    finally:
        shadow.close()
        live.close()
    assert holder.error is None
    assert len(passes) == 2
    message = str(refused.value)
    assert "kept changing" in message and f"file {holder.added[-1]} added" in message
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS, "nothing switched"
        assert dimension(connection, "document_chunk_shadow") == NEW_DIMENSIONS
        assert dimension(connection, "document_chunk_previous") is None


def test_the_snapshot_sees_files_memberships_and_memories(migrated):
    from pgvector_migration.resources.source_snapshot import source_snapshot

    openwebui = OpenWebUIResource()
    before = source_snapshot(openwebui)
    assert before.changes(source_snapshot(openwebui)) == []
    added = add_standalone_file(migrated, "late.txt", "late\n")
    with sqlite3.connect(migrated.data_dir / "webui.db") as connection:
        memory = connection.execute("SELECT id FROM memory LIMIT 1").fetchone()[0]
        connection.execute("UPDATE memory SET content = content || '!' WHERE id = ?", (memory,))
        knowledge_id, file_id = connection.execute(
            "SELECT knowledge_id, file_id FROM knowledge_file LIMIT 1"
        ).fetchone()
        connection.execute("DELETE FROM knowledge_file WHERE file_id = ?", (file_id,))
    changes = before.changes(source_snapshot(openwebui))
    assert f"file {added} added" in changes
    assert f"memory {memory} changed" in changes
    assert f"knowledge_file {knowledge_id}/{file_id} deleted" in changes

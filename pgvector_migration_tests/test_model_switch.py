"""`pgvector-migrate switch` end to end on the sample deployment: a migrated target (model A,
8 dimensions), a shadow built with model B of 12 dimensions beside it while the live table and
its ledger stay byte for byte as they were, a cutover after a delta pass, rollback, finish, and
the refusals that change nothing."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from pgvector_migration import cli
from pgvector_migration.sample_data import USER_ID, sample_file_id
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_tests.conftest import TEST_DIMENSIONS

NEW_MODEL, NEW_DIMENSIONS = "test-embedding-model-b", 12
NOTES = sample_file_id("notes.py")
SWITCH = ["switch", "--no-progress", "--model", NEW_MODEL, "--dimension", str(NEW_DIMENSIONS)]


def run(tmp_path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main([*flags, "--summary-json", str(summary_path)])
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return code, summary


def migrate_with_model_a(deployment, tmp_path):
    """The sample migrated with model A (8 dimensions); the provider then answers B with 12
    (the loopback server's length is one setting, and A is never asked again)."""
    code, _ = run(tmp_path, "--no-progress")
    assert code == cli.EXIT_FAILED  # the sample's corrupt PDF
    deployment.server.dimensions = NEW_DIMENSIONS
    return deployment


@pytest.fixture
def migrated(deployment, tmp_path):
    return migrate_with_model_a(deployment, tmp_path)


def table_fingerprint(connection, table: str) -> str:
    return connection.execute(
        f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
    ).fetchone()[0]


def schema_fingerprint(connection, schema: str) -> dict[str, str]:
    """Every table of a state schema with a checksum of its rows."""
    tables = connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        (schema,),
    ).fetchall()
    return {name: table_fingerprint(connection, f"{schema}.{name}") for (name,) in tables}


def live_fingerprint(deployment) -> tuple:
    with deployment.connect() as connection:
        return (
            table_fingerprint(connection, "document_chunk"),
            schema_fingerprint(connection, "pgvector_migration"),
        )


def dimension(connection, table: str) -> int | None:
    row = connection.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = 'vector'",
        (table,),
    ).fetchone()
    return row[0] if row else None


def chunks(connection, table: str) -> list[tuple]:
    return connection.execute(
        f"SELECT collection_name, id, text FROM {table} ORDER BY collection_name, id"
    ).fetchall()


def index_names(connection, table: str) -> set[str]:
    rows = connection.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,)
    ).fetchall()
    return {row[0] for row in rows}


def test_a_shadow_build_leaves_the_live_table_alone_and_resumes_for_free(migrated, tmp_path):
    before = live_fingerprint(migrated)

    code, summary = run(tmp_path, *SWITCH)

    assert code == cli.EXIT_FAILED  # the corrupt PDF fails in the shadow too
    assert live_fingerprint(migrated) == before
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk_shadow") == NEW_DIMENSIONS
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS
        assert chunks(connection, "document_chunk_shadow") == chunks(connection, "document_chunk")
        rows = connection.execute(
            "SELECT text, vector::text FROM document_chunk_shadow "
            "WHERE collection_name LIKE 'file-%' ORDER BY id LIMIT 20"
        ).fetchall()
        assert "idx_document_chunk_shadow_vector" in index_names(
            connection, "document_chunk_shadow"
        )
        assert connection.execute(
            "SELECT DISTINCT embedding_model FROM pgvector_migration_shadow.written_collection"
        ).fetchall() == [(NEW_MODEL,)]
    for text, vector in rows:
        stored = np.array(json.loads(vector), dtype=np.float32)
        # Open WebUI's OpenAI embedder sends texts with newlines as spaces.
        wanted = expected_embedding(NEW_MODEL, text.replace("\n", " "), NEW_DIMENSIONS)
        assert np.allclose(stored, wanted, atol=1e-6)
    assert summary["chunks_written"] > 0
    requests = migrated.server.request_count

    code, summary = run(tmp_path, *SWITCH)

    assert code == cli.EXIT_FAILED
    assert migrated.server.request_count == requests, "a second build embeds nothing"
    assert summary["chunks_written"] == 0
    assert live_fingerprint(migrated) == before


def test_cutover_rollback_and_finish(migrated, tmp_path, capsys):
    old_rows = chunks(migrated.connect(), "document_chunk")
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    capsys.readouterr()

    code, _ = run(tmp_path, *SWITCH, "--cutover")

    printed = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert f"RAG_EMBEDDING_MODEL={NEW_MODEL}" in printed
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={NEW_DIMENSIONS}" in printed
    assert "restart Open WebUI" in printed
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == NEW_DIMENSIONS
        assert dimension(connection, "document_chunk_previous") == TEST_DIMENSIONS
        assert {"idx_document_chunk_vector", "idx_document_chunk_collection_name"} <= (
            index_names(connection, "document_chunk")
        )
        assert chunks(connection, "document_chunk") == old_rows
        assert connection.execute(
            "SELECT DISTINCT embedding_model FROM pgvector_migration.written_collection"
        ).fetchall() == [(NEW_MODEL,)]
    assert cli.main(["status"]) in (cli.EXIT_OK, cli.EXIT_FAILED)
    printed = capsys.readouterr().out
    assert "standalone-files" in printed  # status reads the new ledger
    assert f"document_chunk holds {NEW_MODEL} (openai, {NEW_DIMENSIONS} dimensions)" in printed
    assert "document_chunk_previous is kept beside it" in printed

    assert cli.main(["switch"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"document_chunk: {NEW_DIMENSIONS} dimensions" in printed
    assert f"document_chunk_previous: {TEST_DIMENSIONS} dimensions" in printed
    assert f"cutover: test-embedding-model (openai, {TEST_DIMENSIONS} dimensions) -> " in printed

    requests = migrated.server.request_count
    code, _ = run(tmp_path, *SWITCH, "--cutover")
    assert code == 2, "a second cutover before --finish is refused"
    assert "switch --finish" in capsys.readouterr().err
    assert migrated.server.request_count == requests, "refused before any build"

    assert cli.main(["switch", "--rollback"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={TEST_DIMENSIONS}" in printed
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS
        assert dimension(connection, "document_chunk_previous") == NEW_DIMENSIONS
    # The old ledger came back with the old table: a plain run finds nothing to do.
    migrated.server.dimensions = TEST_DIMENSIONS
    requests = migrated.server.request_count
    code, summary = run(tmp_path, "--no-progress")
    assert code == cli.EXIT_FAILED
    assert summary["files_processed"] == 0 and summary["chunks_written"] == 0
    assert migrated.server.request_count == requests

    assert cli.main(["switch", "--finish"]) == cli.EXIT_OK
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk_previous") is None
        assert not connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'pgvector_migration_previous'"
        ).fetchone()
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS


def add_standalone_file(deployment, filename: str, body: str) -> str:
    """A file uploaded to Open WebUI outside any knowledge base, as Open WebUI records it."""
    file_id = sample_file_id(filename)
    stored = f"{file_id}_{filename}"
    (deployment.data_dir / "uploads" / stored).write_text(body)
    data = {"status": "completed", "content": body}
    meta = {"name": filename, "content_type": "text/plain", "size": len(body), "data": {}}
    with sqlite3.connect(deployment.data_dir / "webui.db") as connection:
        connection.execute(
            "INSERT INTO file VALUES (?, ?, NULL, ?, ?, ?, ?, 1, 1)",
            (
                file_id,
                USER_ID,
                filename,
                f"/app/backend/data/uploads/{stored}",
                json.dumps(data),
                json.dumps(meta),
            ),
        )
    return file_id


def test_the_cutover_brings_in_what_changed_during_the_build(migrated, tmp_path):
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    added = add_standalone_file(migrated, "added_meanwhile.txt", "Uploaded during the build.\n")
    with sqlite3.connect(migrated.data_dir / "webui.db") as connection:
        connection.execute("DELETE FROM file WHERE id = ?", (NOTES,))
    before = live_fingerprint(migrated)

    code, _ = run(tmp_path, *SWITCH, "--cutover")

    assert code == cli.EXIT_OK
    with migrated.connect() as connection:
        live = {row[0] for row in chunks(connection, "document_chunk")}
        previous = {row[0] for row in chunks(connection, "document_chunk_previous")}
        assert dimension(connection, "document_chunk") == NEW_DIMENSIONS
        # The replaced table is exactly the live one before the cutover.
        assert table_fingerprint(connection, "document_chunk_previous") == before[0]
        assert schema_fingerprint(connection, "pgvector_migration_previous") == before[1]
    assert f"file-{added}" in live and f"file-{added}" not in previous
    assert f"file-{NOTES}" not in live and f"file-{NOTES}" in previous


def test_refusals_change_nothing(migrated, tmp_path, capsys):
    before = live_fingerprint(migrated)
    code, summary = run(tmp_path, *SWITCH, "--dry-run")
    assert code in (cli.EXIT_OK, cli.EXIT_FAILED) and summary["dry_run"]
    assert run(tmp_path, *SWITCH, "--dry-run", "--cutover")[0] == 2
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk_shadow") is None
        assert not connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'pgvector_migration_shadow'"
        ).fetchone()

    code, _ = run(tmp_path, *SWITCH, "--cutover")
    assert code == 2
    assert "no document_chunk_shadow" in capsys.readouterr().err

    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    code, _ = run(tmp_path, *SWITCH[:-1], "16", "--cutover")
    assert code == 2
    assert "holds 12-dimensional vectors, not 16" in capsys.readouterr().err
    add_standalone_file(migrated, "added_meanwhile.txt", "Uploaded during the build.\n")
    migrated.server.fail_next(100, 400)  # the provider refuses the delta pass's texts
    capsys.readouterr()
    code, _ = run(tmp_path, *SWITCH, "--cutover")
    err = capsys.readouterr().err
    assert code == 2
    assert "the shadow is not ready" in err
    assert live_fingerprint(migrated) == before
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS
        assert dimension(connection, "document_chunk_shadow") == NEW_DIMENSIONS

    assert cli.main(["switch", "--abandon"]) == cli.EXIT_OK
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk_shadow") is None
        assert not connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = 'pgvector_migration_shadow'"
        ).fetchone()
    assert live_fingerprint(migrated) == before


def database_settings(connection) -> dict[str, str]:
    row = connection.execute(
        "SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return dict(item.split("=", 1) for item in (row[0] if row and row[0] else []))


def test_search_tuning_survives_a_switch_and_untunes_after_it(migrated, tmp_path):
    """`verify --tune` settings belong to the database: the cutover renames the state
    schemas, and `--untune` must still find what it replaced, including a record an earlier
    version kept in the live state schema (which the cutover moves to `_previous`)."""
    from pgvector_migration.resources.search_tuning import TuningScope, apply_tuning
    from pgvector_migration.resources.search_verification import untune_search
    from pgvector_migration.resources.vector_store import PgVectorResource

    with migrated.connect() as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET ivfflat.probes = 3')
        apply_tuning(connection, {"hnsw.ef_search": "100"}, TuningScope())
        apply_tuning(connection, {"ivfflat.probes": "40"}, TuningScope())
        # An earlier version's record of the second: in the live state schema.
        connection.execute(
            "CREATE TABLE pgvector_migration.search_tuning AS SELECT * FROM "
            "pgvector_migration_tuning.search_tuning WHERE setting = 'ivfflat.probes'"
        )
        connection.execute(
            "DELETE FROM pgvector_migration_tuning.search_tuning WHERE setting = 'ivfflat.probes'"
        )
        assert database_settings(connection)["ivfflat.probes"] == "40"
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    assert run(tmp_path, *SWITCH, "--cutover")[0] == cli.EXIT_OK

    live = PgVectorResource()
    try:
        statements = untune_search(live)
    finally:
        live.close()

    assert len(statements) == 2
    with migrated.connect() as connection:
        settings = database_settings(connection)
        assert settings["ivfflat.probes"] == "3" and "hnsw.ef_search" not in settings
        assert connection.execute(
            "SELECT to_regclass('pgvector_migration_previous.search_tuning')"
        ).fetchone() == (None,), "the old record was taken over, not left with the old table"

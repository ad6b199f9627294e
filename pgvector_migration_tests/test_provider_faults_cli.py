"""A misbehaving provider met by the whole migration, through the CLI against the embedded
PostgreSQL: only the unit holding the offending text fails (the right file, the right user's
memories, the right knowledge base), with a reason naming it and the URL; every other unit is
row for row what a clean run writes; a healthy re-run completes to a clean run's rows; nothing
unchecked reaches the cache; no credential appears in any output or table."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from pgvector_migration import cli
from pgvector_migration.demo import database_uri, ensure_database
from pgvector_migration.embedding.model_key import compose_model_key
from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.sample_data import OPENWEBUI_SCHEMA
from pgvector_migration.store.embedding_cache import CACHE_DDL
from pgvector_migration.store.names import SCHEMA
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_tests.test_bad_input import add_file

MODEL = "provider-fault-model"
DIMENSIONS = 8
PASSWORD = "proxy-pa55word"
API_KEY = "sk-provider-fault-key"
USER_A, USER_B = "user-a", "user-b"
ALPHA, BETA, GAMMA = "kb-alpha", "kb-beta", "kb-gamma"
FILE_MARK, MEMORY_MARK, KB_MARK = "FORBIDDEN-FILE", "FORBIDDEN-MEMORY", "FORBIDDEN-KB"
PARAGRAPH = "Plain sentences about rivers, mountains and the weather of the valley. " * 12


def build_source(data_dir: Path) -> None:
    """Five files (two knowledge bases and standalone), a knowledge base with no files, and
    memories of two users; each marker sits in exactly one text."""
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True)
    connection = sqlite3.connect(data_dir / "webui.db")
    connection.executescript(OPENWEBUI_SCHEMA)
    bodies = {
        "f1": f"First file. {PARAGRAPH}",
        "f2": f"Second file. {PARAGRAPH}\n\n{FILE_MARK} in the middle. {PARAGRAPH}\n\n{PARAGRAPH}",
        "f3": f"Third file. {PARAGRAPH}",
        "f4": f"Fourth file, standalone. {PARAGRAPH}",
        "f5": f"Fifth file, standalone. {PARAGRAPH}",
    }
    for file_id, body in bodies.items():
        add_file(connection, uploads, file_id, f"{file_id}.txt", body.encode())
    for knowledge_id, name, description in (
        (ALPHA, "Alpha", "Files one and two"),
        (BETA, "Beta", "File three"),
        (GAMMA, "Gamma", f"No files, {KB_MARK}"),
    ):
        connection.execute(
            "INSERT INTO knowledge VALUES (?, ?, ?, ?, '{}', 1, 1)",
            (knowledge_id, USER_A, name, description),
        )
    for index, (knowledge_id, file_id) in enumerate(((ALPHA, "f1"), (ALPHA, "f2"), (BETA, "f3"))):
        connection.execute(
            "INSERT INTO knowledge_file VALUES (?, ?, ?, ?, 1, 1)",
            (f"kf{index}", USER_A, knowledge_id, file_id),
        )
    memories = (
        ("m1", USER_A, "Likes short answers."),
        ("m2", USER_B, "Teaches geography."),
        ("m3", USER_B, f"Keeps a {MEMORY_MARK} diary."),
        ("m4", USER_B, "Lives near the coast."),
    )
    for position, (memory_id, user_id, content) in enumerate(memories):
        connection.execute(
            "INSERT INTO memory VALUES (?, ?, 'context', NULL, ?, '{}', ?, ?)",
            (memory_id, user_id, content, position, position),
        )
    connection.commit()
    connection.close()


def target_rows(url: str) -> dict[tuple[str, str], tuple]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT collection_name, id, text, vmetadata, vector::text FROM document_chunk"
        ).fetchall()
    return {(row[0], row[1]): row for row in rows}


@pytest.fixture(scope="module")
def provider():
    with EmbeddingServer(dimensions=DIMENSIONS) as server:
        server.hang_seconds = 10
        server.trickle_interval = 0.1
        yield server


@pytest.fixture(scope="module")
def source(tmp_path_factory, provider):
    """The source and the settings every test shares; the base URL carries a password."""
    data_dir = tmp_path_factory.mktemp("provider-faults") / "openwebui"
    build_source(data_dir)
    base_url = provider.base_url.replace("http://", f"http://proxy-user:{PASSWORD}@")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("RAG_", "PGVECTOR_", "CHUNK_", "ENABLE_MARKDOWN")):
                patch.delenv(name)
        patch.setenv("DATA_DIR", str(data_dir))
        patch.setenv("DATABASE_URL", f"sqlite:///{data_dir / 'webui.db'}")
        patch.delenv("UPLOAD_DIR", raising=False)
        patch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", str(DIMENSIONS))
        patch.setenv("RAG_EMBEDDING_ENGINE", "openai")
        patch.setenv("RAG_EMBEDDING_MODEL", MODEL)
        patch.setenv("RAG_OPENAI_API_BASE_URL", base_url)
        patch.setenv("RAG_OPENAI_API_KEY", API_KEY)
        patch.setenv("PGVECTOR_MIGRATION_REQUEST_TIMEOUT", "2")
        patch.setenv("PGVECTOR_MIGRATION_MAX_RETRIES", "2")
        yield data_dir


@pytest.fixture(scope="module")
def clean_rows(source, postgres_server_uri, tmp_path_factory):
    """What a clean run writes: the reference every faulty run is compared with."""
    ensure_database(postgres_server_uri, "provider_faults_clean")
    url = database_uri(postgres_server_uri, "provider_faults_clean")
    home = tmp_path_factory.mktemp("clean-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGVECTOR_DB_URL", url)
        patch.setenv("DAGSTER_HOME", str(home))
        assert cli.main(["--no-progress"]) == cli.EXIT_OK
    rows = target_rows(url)
    assert {key[0] for key in rows} >= {
        "file-f2",
        ALPHA,
        "knowledge-bases",
        f"user-memory-{USER_B}",
    }
    return rows


@pytest.fixture
def target(source, clean_rows, fresh_database, provider, tmp_path, monkeypatch):
    url = fresh_database("faults")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PGVECTOR_DB_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    provider.clear_failures()
    yield url
    provider.clear_failures()


def run(tmp_path: Path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(["--no-progress", "--summary-json", str(summary_path), *flags])
    return code, json.loads(summary_path.read_text())


def failed_units(summary: dict) -> dict[str, str]:
    failed = {entry["file_id"]: entry["error"] for entry in summary["files_failed"]}
    for kind in ("memories", "knowledge_bases"):
        failed.update({entry["id"]: entry["error"] for entry in summary[kind]["failed"]})
    return failed


def assert_only_these_failed(url: str, clean: dict, failed_collections: set[str], failed_ids):
    """Every row outside the failed units is the clean run's; the failed ones wrote nothing."""
    present = target_rows(url)
    expected = {
        key: row
        for key, row in clean.items()
        if key[0] not in failed_collections
        and key[1] not in failed_ids
        and (row[3] or {}).get("file_id") not in failed_ids
    }
    assert present == expected


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and API_KEY not in text


def test_a_refused_or_garbled_text_fails_only_its_own_unit(
    target, clean_rows, provider, tmp_path, capfd
):
    provider.fault_when(FILE_MARK, "reject")
    provider.fault_when(MEMORY_MARK, "html")
    provider.fault_when(KB_MARK, "truncated")

    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED
    failed = failed_units(summary)
    assert sorted(failed) == sorted(["f2", USER_B, GAMMA])
    assert "chunk 1 of f2.txt" in failed["f2"] and "HTTP 400" in failed["f2"]
    assert "memory m3" in failed[USER_B] and "text/html" in failed[USER_B]
    assert "Gamma" in failed[GAMMA] and "cut off" in failed[GAMMA]
    shown_url = provider.base_url.replace("http://", "http://proxy-user:***@")
    assert all(shown_url in error for error in failed.values()), failed
    assert_only_these_failed(
        target, clean_rows, {"file-f2", f"user-memory-{USER_B}"}, {"f2", GAMMA}
    )
    out, err = capfd.readouterr()
    with psycopg.connect(target) as connection:
        tables = json.dumps(
            connection.execute(f"SELECT json_agg(f) FROM {SCHEMA}.file_failure f").fetchone()[0]
        )
    assert_no_secret(out, err, json.dumps(summary), tables)

    provider.clear_failures()
    code, summary = run(tmp_path)
    assert code == cli.EXIT_OK and not failed_units(summary)
    assert target_rows(target) == clean_rows


def test_unusable_vectors_never_reach_the_cache_or_the_table(
    target, clean_rows, provider, tmp_path
):
    # The first answer (the dimension probe) one value short, the next with every index 0.
    provider.fault_next("wrong_dimension")
    provider.fault_next("bad_index")
    provider.fault_when(FILE_MARK, "nan")
    provider.fault_when(MEMORY_MARK, "null")
    provider.fault_when(KB_MARK, "out_of_range")

    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED
    failed = failed_units(summary)
    assert sorted(failed) == sorted(["f2", USER_B, GAMMA])
    assert "NaN" in failed["f2"] and "null" in failed[USER_B] and "float32" in failed[GAMMA]
    assert_only_these_failed(
        target, clean_rows, {"file-f2", f"user-memory-{USER_B}"}, {"f2", GAMMA}
    )
    with psycopg.connect(target) as connection:
        lengths = connection.execute(
            f"SELECT DISTINCT vector_dims(embedding) FROM {SCHEMA}.embedding_cache"
        ).fetchall()
    assert lengths == [(DIMENSIONS,)]

    provider.clear_failures()
    code, _ = run(tmp_path)
    assert code == cli.EXIT_OK
    # Rows written from cached vectors equal the clean run's: nothing cached was wrong.
    assert target_rows(target) == clean_rows


def test_a_cache_poisoned_by_an_earlier_version_is_ignored_and_replaced(
    target, clean_rows, provider, tmp_path
):
    poisoned = text_key("Likes short answers.")
    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute(CACHE_DDL)
        connection.execute(
            f"INSERT INTO {SCHEMA}.embedding_cache (model_key, text_hash, embedding) "
            "VALUES (%s, %s, '[1,2,3]')",
            (compose_model_key("openai", MODEL, None), poisoned),
        )

    code, _ = run(tmp_path)

    assert code == cli.EXIT_OK
    assert target_rows(target) == clean_rows
    with psycopg.connect(target) as connection:
        (length,) = connection.execute(
            f"SELECT vector_dims(embedding) FROM {SCHEMA}.embedding_cache WHERE text_hash = %s",
            (poisoned,),
        ).fetchone()
    assert length == DIMENSIONS
    provider.requests.clear()
    code, summary = run(tmp_path, "--overwrite", "--reembed")
    assert code == cli.EXIT_OK and summary["texts_transplanted"] == 0
    assert "dimension probe" in [text for r in provider.requests for text in r.inputs]
    assert target_rows(target) == clean_rows


def test_protocol_faults_are_retried_and_no_request_outlives_its_deadline(
    target, clean_rows, provider, tmp_path, capfd
):
    for marker, fault in (
        ("First file", "html"),
        ("Third file", "empty"),
        ("Fourth file", "no_data"),
        ("Fifth file", "reset"),
        ("Likes short", "hang"),
        ("Teaches geography", "trickle"),
        ("Files one and two", "base64"),
        ("Second file", "truncated"),
    ):
        provider.fault_when(marker, fault, times=1)
    started = time.monotonic()

    code, summary = run(tmp_path)

    assert code == cli.EXIT_OK, failed_units(summary)
    assert target_rows(target) == clean_rows
    faults = sorted(r.fault for r in provider.requests if r.fault)
    assert len(faults) == 8
    # A hang and a trickle cost one 2 s deadline each, not the provider's 10 s or more.
    assert time.monotonic() - started < 90
    out, err = capfd.readouterr()
    assert_no_secret(out, err)

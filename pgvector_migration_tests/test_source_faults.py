"""Garbage in source rows, through the CLI against the embedded PostgreSQL: only the offending
file, memory or knowledge base fails, with a reason naming it; every other unit matches a clean
run row for row; `--retry-failed` finds the failures; a re-run after repairing the rows ends
with the clean run's rows. Also: files of deleted knowledge bases, the upload size limit, and
PostgreSQL's primary message for a failed write."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgvector_migration import cli
from pgvector_migration.sample_data import (
    KNOWLEDGE_BASES,
    MEMORIES,
    SAMPLE_NAMESPACE,
    USER_ID,
    sample_file_id,
)
from pgvector_migration.summary import error_reason
from pgvector_migration.unit_writer import postgres_reason
from pgvector_migration_tests.test_sources import copy_sqlite_to_postgres

FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)
CONSTITUTION = sample_file_id("constitution.pdf")
FEDERALIST = sample_file_id("federalist_10.txt")
GETTYSBURG = sample_file_id("gettysburg_and_inaugural.txt")
ALICE = sample_file_id("alice_chapter_one.md")
PRIDE = sample_file_id("pride_and_prejudice.docx")
WALDEN = sample_file_id("walden.html")
AESOP = sample_file_id("aesop_fables.csv")
NOTES = sample_file_id("notes.py")
MOON = sample_file_id("moon_photo.png")
BROKEN = sample_file_id("broken_report.pdf")
SAMPLE_FILES = 10
READING_GROUP_MEMORY = str(uuid.uuid5(SAMPLE_NAMESPACE, f"memory:{MEMORIES[1][2]}"))
DELETED_KNOWLEDGE = "knowledge-base-that-was-deleted"
FULL_DISK = """
CREATE FUNCTION fail_like_a_full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.collection_name = {collection} THEN
        RAISE EXCEPTION 'could not extend file "base/16384/16402": No space left on device'
            USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER full_disk BEFORE INSERT ON document_chunk
    FOR EACH ROW EXECUTE FUNCTION fail_like_a_full_disk();
"""


def run(tmp_path: Path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(["--no-progress", "--no-index", "--summary-json", str(summary_path), *flags])
    return code, json.loads(summary_path.read_text())


def rows_with_vectors(target_url: str) -> list[tuple]:
    with psycopg.connect(target_url) as connection:
        return connection.execute(
            "SELECT collection_name, id, text, vmetadata, vector::text FROM document_chunk "
            "ORDER BY collection_name, id"
        ).fetchall()


def without(rows: list[tuple], file_ids: set[str], row_ids: set[str]) -> list[tuple]:
    """The rows of a clean run minus those of failed files (their own collection and their
    chunks in knowledge collections) and of failed knowledge bases and memories."""
    return [
        row
        for row in rows
        if row[0].removeprefix("file-") not in file_ids
        and row[3].get("file_id") not in file_ids
        and row[1] not in row_ids
    ]


def new_target(deployment, fresh_database, monkeypatch) -> None:
    deployment.target_url = fresh_database()
    monkeypatch.setenv("PGVECTOR_DB_URL", deployment.target_url)


def meta_of(connection, file_id: str) -> dict:
    return json.loads(
        connection.execute("SELECT meta FROM file WHERE id = ?", (file_id,)).fetchone()[0]
    )


def corrupt_sqlite(database: Path) -> None:
    """What an adversary (or a bad restore) leaves in Open WebUI's SQLite database."""
    connection = sqlite3.connect(database)
    nan_meta = {**meta_of(connection, FEDERALIST), "rating": float("nan")}
    nul_key_meta = {**meta_of(connection, ALICE), "bad\x00key": "x"}
    name_object_meta = {**meta_of(connection, AESOP), "name": {"not": "a string"}}
    deep = json.dumps(meta_of(connection, MOON))[:-1] + ', "deep": ' + "[" * 100_000
    updates = [
        ("UPDATE file SET meta = ? WHERE id = ?", (json.dumps(nan_meta), FEDERALIST)),
        ("UPDATE file SET meta = ? WHERE id = ?", (json.dumps(nul_key_meta), ALICE)),
        ("UPDATE file SET meta = ? WHERE id = ?", (json.dumps(name_object_meta), AESOP)),
        ("UPDATE file SET meta = ? WHERE id = ?", (deep + "]" * 100_000 + "}", MOON)),
        ("UPDATE file SET data = '[1, 2]' WHERE id = ?", (CONSTITUTION,)),
        ("UPDATE file SET filename = ? WHERE id = ?", ("wal\x00den.html", WALDEN)),
        (
            "UPDATE file SET filename = CAST(? AS TEXT) WHERE id = ?",
            (b"pride_and_prejudice\xff.docx", PRIDE),
        ),
        ("UPDATE memory SET content = NULL WHERE id = ?", (READING_GROUP_MEMORY,)),
        ("UPDATE knowledge SET name = '' WHERE id = ?", (LITERATURE,)),
        (
            "INSERT INTO knowledge_file VALUES ('kf-orphan', ?, ?, ?, 1, 1), "
            "('kf-orphan-gone', ?, ?, 'file-that-was-deleted', 1, 1)",
            (USER_ID, DELETED_KNOWLEDGE, NOTES, USER_ID, DELETED_KNOWLEDGE),
        ),
    ]
    for statement, parameters in updates:
        connection.execute(statement, parameters)
    connection.commit()
    connection.close()


def failed_files(summary: dict) -> dict[str, str]:
    return {entry["file_id"]: entry["error"] for entry in summary["files_failed"]}


def outcomes_total(summary: dict) -> int:
    return (
        summary["files_processed"]
        + summary["files_skipped_complete"]
        + summary["files_skipped_unsupported"]
        + len(summary["files_failed"])
    )


def test_garbage_in_sqlite_rows_fails_only_its_units(
    deployment, fresh_database, tmp_path, monkeypatch
):
    code, _ = run(tmp_path)
    assert code == cli.EXIT_FAILED  # the sample's corrupt PDF
    clean = rows_with_vectors(deployment.target_url)
    database = deployment.data_dir / "webui.db"
    pristine = tmp_path / "pristine.db"
    shutil.copyfile(database, pristine)
    corrupt_sqlite(database)
    corrupted_bytes = database.read_bytes()
    new_target(deployment, fresh_database, monkeypatch)

    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED
    failed = failed_files(summary)
    assert set(failed) == {FEDERALIST, ALICE, MOON, CONSTITUTION, PRIDE, BROKEN}
    for file_id in (FEDERALIST, ALICE, MOON, CONSTITUTION, PRIDE):
        assert file_id in failed[file_id] and "--retry-failed" in failed[file_id]
    assert "'rating' is nan" in failed[FEDERALIST]
    assert "NUL" in failed[ALICE] and "bad\\x00key" in failed[ALICE]
    assert "nested too deeply" in failed[MOON]
    assert "file.data is a JSON list, not an object" in failed[CONSTITUTION]
    assert "file.filename is not valid UTF-8" in failed[PRIDE]
    assert summary["files_processed"] == 4  # gettysburg, walden, aesop, and notes
    assert summary["files_total"] == outcomes_total(summary) == SAMPLE_FILES
    [memory_failure] = summary["memories"]["failed"]
    assert memory_failure["id"] == READING_GROUP_MEMORY
    assert (
        f"memory {READING_GROUP_MEMORY} of user {USER_ID} has no content"
        in (memory_failure["error"])
    )
    [knowledge_failure] = summary["knowledge_bases"]["failed"]
    assert knowledge_failure["id"] == LITERATURE and "empty name" in knowledge_failure["error"]
    notes = {(note["id"], note["note"]) for note in summary["source_notes"]}
    assert any(n[0] == NOTES and DELETED_KNOWLEDGE in n[1] and "migrated" in n[1] for n in notes)
    assert any(n[0] == "file-that-was-deleted" and "gone too" in n[1] for n in notes)
    failed_ids = set(failed) - {BROKEN}
    assert rows_with_vectors(deployment.target_url) == without(
        clean, failed_ids, {READING_GROUP_MEMORY, LITERATURE}
    ), "every other unit (walden's NUL and aesop's name object sanitised) matches the clean run"
    assert database.read_bytes() == corrupted_bytes, "the source is never written"

    shutil.copyfile(pristine, database)
    code, summary = run(tmp_path, "--retry-failed")

    assert code == cli.EXIT_FAILED
    assert set(failed_files(summary)) == {BROKEN}
    assert summary["files_total"] == len(failed) and summary["files_processed"] == 4
    assert [entry["file_id"] for entry in summary["unsupported"]] == [MOON]
    assert summary["memories"]["failed"] == summary["knowledge_bases"]["failed"] == []
    assert rows_with_vectors(deployment.target_url) == clean


def corrupt_postgres(url: str) -> None:
    """What JSON columns and nullable text columns of a PostgreSQL deployment can hold."""
    with psycopg.connect(url, autocommit=True) as connection:
        deep = "[" * 2_000 + "]" * 2_000
        connection.execute(
            "UPDATE file SET meta = jsonb_set(meta::jsonb, '{name}', "
            '\'{"not": "a string"}\')::json WHERE id = %s',
            (AESOP,),
        )
        connection.execute("UPDATE file SET meta = '[1, 2, 3]' WHERE id = %s", (FEDERALIST,))
        connection.execute(
            "UPDATE file SET meta = %s::json WHERE id = %s", (f'{{"deep": {deep}}}', MOON)
        )
        connection.execute("UPDATE file SET data = '\"just text\"' WHERE id = %s", (CONSTITUTION,))
        connection.execute(
            "UPDATE memory SET content = NULL WHERE id = %s", (READING_GROUP_MEMORY,)
        )
        connection.execute("UPDATE knowledge SET name = NULL WHERE id = %s", (LITERATURE,))
        connection.execute(
            "INSERT INTO knowledge_file VALUES ('kf-orphan', %s, %s, %s, 1, 1)",
            (USER_ID, DELETED_KNOWLEDGE, NOTES),
        )


def test_garbage_in_postgres_rows_fails_only_its_units(
    deployment, fresh_database, tmp_path, monkeypatch
):
    code, _ = run(tmp_path)
    clean = rows_with_vectors(deployment.target_url)
    source_url = fresh_database("openwebui")
    copy_sqlite_to_postgres(deployment.data_dir / "webui.db", source_url)
    corrupt_postgres(source_url)
    monkeypatch.setenv("DATABASE_URL", source_url)
    new_target(deployment, fresh_database, monkeypatch)

    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED
    failed = failed_files(summary)
    assert set(failed) == {FEDERALIST, MOON, CONSTITUTION, BROKEN}
    assert "file.meta is a JSON list, not an object" in failed[FEDERALIST]
    assert "nested too deeply" in failed[MOON]
    assert "file.data is a JSON str, not an object" in failed[CONSTITUTION]
    assert summary["files_total"] == outcomes_total(summary) == SAMPLE_FILES
    assert [f["id"] for f in summary["memories"]["failed"]] == [READING_GROUP_MEMORY]
    [knowledge_failure] = summary["knowledge_bases"]["failed"]
    assert knowledge_failure["id"] == LITERATURE and "no name (NULL)" in knowledge_failure["error"]
    assert rows_with_vectors(deployment.target_url) == without(
        clean, {FEDERALIST, MOON, CONSTITUTION}, {READING_GROUP_MEMORY, LITERATURE}
    )

    with psycopg.connect(source_url, autocommit=True) as connection:
        connection.execute("DROP TABLE file, knowledge, knowledge_file, config, memory")
    copy_sqlite_to_postgres(deployment.data_dir / "webui.db", source_url)
    code, summary = run(tmp_path, "--retry-failed")

    assert set(failed_files(summary)) == {BROKEN}
    assert rows_with_vectors(deployment.target_url) == clean


def test_a_full_disk_fails_the_unit_with_postgres_primary_message(deployment, tmp_path):
    run(tmp_path, "--only", "files")
    before = rows_with_vectors(deployment.target_url)
    with deployment.connect() as connection:
        connection.execute(sql.SQL(FULL_DISK).format(collection=sql.Literal(f"file-{GETTYSBURG}")))

    code, summary = run(tmp_path, "--overwrite", "--file-id", GETTYSBURG)

    assert code == cli.EXIT_FAILED
    error = failed_files(summary)[GETTYSBURG]
    assert error == (
        f'writing file-{GETTYSBURG}: could not extend file "base/16384/16402": '
        "No space left on device"
    )
    assert rows_with_vectors(deployment.target_url) == before, "nothing half-written"
    assert summary["chunks_written"] > 0, "its knowledge collections were still written"

    with deployment.connect() as connection:
        connection.execute("DROP TRIGGER full_disk ON document_chunk")
    code, summary = run(tmp_path, "--retry-failed")
    assert GETTYSBURG not in failed_files(summary)
    assert rows_with_vectors(deployment.target_url) == before


def test_postgres_errors_read_as_their_primary_message(fresh_database):
    with psycopg.connect(fresh_database(), autocommit=True) as connection:
        connection.execute("CREATE TABLE t (m jsonb)")
        with (
            pytest.raises(psycopg.DataError) as raised,
            connection.cursor().copy("COPY t (m) FROM STDIN") as copy,
        ):
            copy.write_row(('{"a": NaN}',))
    assert "CONTEXT" in str(raised.value)
    assert postgres_reason(raised.value) == (
        'invalid input syntax for type json (Token "NaN" is invalid.)'
    )
    step_message = (
        'psycopg.errors.DiskFull: could not extend file "base/1/2": No space left on device\n'
        "HINT:  Check free disk space.\nCONTEXT:  COPY document_chunk, line 11\n"
    )
    assert error_reason(step_message) == (
        'psycopg.errors.DiskFull: could not extend file "base/1/2": No space left on device'
    )
    assert error_reason("Traceback line\nValueError: the last line wins") == (
        "ValueError: the last line wins"
    )


def add_big_file(database: Path, uploads: Path, file_id: str, content: str | None) -> None:
    (uploads / f"{file_id}_big.txt").write_bytes(b"A long line of text. " * 60_000)
    data = {"status": "completed", **({"content": content} if content else {})}
    meta = {"name": "big.txt", "content_type": "text/plain", "size": 1_260_000, "data": {}}
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO file VALUES (?, ?, NULL, 'big.txt', ?, ?, ?, 1, 1)",
            (
                file_id,
                USER_ID,
                f"/app/backend/data/uploads/{file_id}_big.txt",
                json.dumps(data),
                json.dumps(meta),
            ),
        )


def set_config(database: Path, key: str, value) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT OR REPLACE INTO config VALUES (?, ?, 1)", (key, json.dumps(value))
        )


def test_the_upload_size_limit_is_open_webuis(deployment, tmp_path, monkeypatch):
    database = deployment.data_dir / "webui.db"
    uploads = deployment.data_dir / "uploads"
    add_big_file(database, uploads, "big-stored", "Text Open WebUI extracted and indexed.")
    add_big_file(database, uploads, "big-unread", None)

    code, summary = run(
        tmp_path, "--only", "files", "--file-id", "big-stored", "--file-id", "big-unread"
    )
    assert code == cli.EXIT_OK and summary["files_processed"] == 2, "no limit by default"

    monkeypatch.setenv("RAG_FILE_MAX_SIZE", "100")
    set_config(database, "rag.file.max_size", 1)  # the config table wins, as in Open WebUI
    code, summary = run(
        tmp_path,
        "--only",
        "files",
        "--overwrite",
        "--file-id",
        "big-stored",
        "--file-id",
        "big-unread",
    )

    assert summary["files_processed"] == 1 and summary["files_total"] == 2
    [unsupported] = summary["unsupported"]
    assert unsupported["file_id"] == "big-unread"
    assert "over the 1 MB limit" in unsupported["reason"]
    [note] = [n for n in summary["source_notes"] if n["id"] == "big-stored"]
    assert "over the 1 MB limit" in note["note"] and "stored text is migrated" in note["note"]
    assert "file-big-stored" in deployment.counts()


def test_a_size_limit_that_is_not_a_number_is_a_configuration_error(
    deployment, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("RAG_FILE_MAX_SIZE", "ten")

    assert cli.main(["--no-progress"]) == cli.EXIT_CONFIG
    assert "RAG_FILE_MAX_SIZE must be a whole number, got 'ten'" in capsys.readouterr().err
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None

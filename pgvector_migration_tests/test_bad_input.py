"""Every strange file users ever uploaded: each gets a clear error or skip with a reason, the
rest completes, exit code 1, and the source is never written."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from pypdf import PdfWriter

from pgvector_migration import cli
from pgvector_migration.sample_data import DOCUMENTS_DIR, OPENWEBUI_SCHEMA, USER_ID

QUOTED_KNOWLEDGE_ID = "kb-'quoted\"-id"


def add_file(
    connection,
    uploads: Path,
    file_id: str,
    filename: str,
    body: bytes | None,
    *,
    content: str | None = None,
    content_type: str = "text/plain",
    path: str | None = "default",
) -> None:
    stored = f"{file_id}_{filename}"
    if body is not None:
        (uploads / stored).write_bytes(body)
    if path == "default":
        path = f"/app/backend/data/uploads/{stored}"
    data = {"status": "completed", **({"content": content} if content is not None else {})}
    meta = {"name": filename, "content_type": content_type, "size": len(body or b""), "data": {}}
    connection.execute(
        "INSERT INTO file VALUES (?, ?, NULL, ?, ?, ?, ?, 1, 1)",
        (file_id, USER_ID, filename, path, json.dumps(data), json.dumps(meta)),
    )


def encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=str(DOCUMENTS_DIR / "constitution.pdf"))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def bad_deployment(deployment, tmp_path, monkeypatch):
    data_dir = tmp_path / "bad"
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True)
    outside = tmp_path / "secret-outside.txt"
    outside.write_text("never read")
    connection = sqlite3.connect(data_dir / "webui.db")
    connection.executescript(OPENWEBUI_SCHEMA)
    add_file(connection, uploads, "good", "good.txt", b"A perfectly normal text file.\n" * 50)
    add_file(
        connection,
        uploads,
        "encrypted",
        "locked.pdf",
        encrypted_pdf(),
        content_type="application/pdf",
    )
    add_file(connection, uploads, "empty", "empty.txt", b"")
    add_file(connection, uploads, "junk", "junk.txt", bytes(range(256)) * 40)
    add_file(
        connection,
        uploads,
        "latin",
        "latin.txt",
        "Caf\xe9 cr\xe8me br\xfbl\xe9e. ".encode("latin-1") * 20,
    )
    add_file(connection, uploads, "oneline", "oneline.txt", b"x" * (2 * 1024 * 1024))
    add_file(
        connection,
        uploads,
        "wrongext",
        "notes.pdf",
        b"plain text, not a PDF at all",
        content_type="application/pdf",
    )
    add_file(connection, uploads, "missing", "missing.txt", None)
    add_file(connection, uploads, "outside", "outside.txt", None, path=str(outside))
    add_file(connection, uploads, "nopath", "nopath.txt", None, path=None)
    add_file(connection, uploads, "nul", "nul.txt", None, content="before\x00after " * 20)
    connection.execute(
        "INSERT INTO knowledge VALUES (?, ?, 'Quoted', '', '{}', 1, 1)",
        (QUOTED_KNOWLEDGE_ID, USER_ID),
    )
    for index, file_id in enumerate(["good", "nul", "file-that-was-deleted"]):
        connection.execute(
            "INSERT INTO knowledge_file VALUES (?, ?, ?, ?, 1, 1)",
            (f"kf{index}", USER_ID, QUOTED_KNOWLEDGE_ID, file_id),
        )
    connection.commit()
    connection.close()
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{data_dir / 'webui.db'}")
    monkeypatch.setenv("RAG_FILE_MAX_SIZE", "1")
    deployment.data_dir = data_dir
    return deployment


def test_every_bad_file_gets_a_reason_and_the_rest_completes(bad_deployment, tmp_path):
    database = bad_deployment.data_dir / "webui.db"
    source_bytes = database.read_bytes()
    summary_path = tmp_path / "summary.json"

    code = cli.main(["--no-progress", "--only", "files", "--summary-json", str(summary_path)])

    summary = json.loads(summary_path.read_text())
    assert code == cli.EXIT_FAILED
    failed = {entry["file_id"]: entry["error"] for entry in summary["files_failed"]}
    skipped = {entry["file_id"]: entry["reason"] for entry in summary["unsupported"]}
    assert "encrypted" in failed["encrypted"]
    assert "notes.pdf" in failed["wrongext"]
    assert "not found" in failed["missing"]
    assert "outside the uploads folder" in failed["outside"]
    assert "file.path is empty" in failed["nopath"]
    assert "empty" in skipped["empty"]
    assert "binary" in skipped["junk"]
    assert "RAG_FILE_MAX_SIZE" in skipped["oneline"]
    assert summary["files_processed"] == 3  # good, latin, nul
    counts = bad_deployment.counts()
    assert {"file-good", "file-latin", "file-nul", QUOTED_KNOWLEDGE_ID} <= set(counts)
    with bad_deployment.connect() as connection:
        texts = [
            row[0]
            for row in connection.execute(
                "SELECT text FROM document_chunk "
                "WHERE collection_name IN ('file-nul', 'file-latin')"
            )
        ]
    assert texts and all("\x00" not in text for text in texts)
    assert any("Café crème brûlée" in text for text in texts)
    assert database.read_bytes() == source_bytes


def test_a_second_run_of_the_same_partition_waits_and_duplicates_nothing(bad_deployment, tmp_path):
    command = [
        sys.executable,
        "-m",
        "pgvector_migration.cli",
        "--no-progress",
        "--knowledge-id",
        QUOTED_KNOWLEDGE_ID,
    ]
    # Dagster's SQLite storage is created by whichever process comes first; create it now so the
    # two runs race only on what this test is about.
    dg.DagsterInstance.get().get_runs_count()
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [out[-3000:] for out in outputs]
    assert bad_deployment.duplicate_groups() == 0
    assert sorted(bad_deployment.counts()) == sorted(["file-good", "file-nul", QUOTED_KNOWLEDGE_ID])

"""A small Open WebUI deployment built from the bundled public-domain documents.

It is what Open WebUI 0.6.41+ would hold after users uploaded these files: a SQLite `webui.db`
with `file`, `knowledge`, `knowledge_file` and `config` tables, and an uploads folder whose files
are named `{uuid}_{filename}`. `file.path` holds the container path, as in a real deployment, so
the migration has to find each upload by its stored name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from pgvector_migration.pipeline.ids import text_sha256
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType, load_documents
from pgvector_migration.pipeline.splitting import joined_text

DOCUMENTS_DIR = Path(__file__).parent / "documents"
CONTAINER_UPLOAD_DIR = "/app/backend/data/uploads"
SAMPLE_NAMESPACE = uuid.UUID("0d3c7f62-9a55-4d61-8f0e-3b7a2c1d9e40")
USER_ID = "9f1e6d2c-0000-4000-8000-00000000ad01"

OPENWEBUI_SCHEMA = """
CREATE TABLE file (
    id TEXT PRIMARY KEY, user_id TEXT, hash TEXT, filename TEXT, path TEXT,
    data JSON, meta JSON, created_at BIGINT, updated_at BIGINT
);
CREATE TABLE knowledge (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
    meta JSON, created_at BIGINT NOT NULL, updated_at BIGINT
);
CREATE TABLE knowledge_file (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    knowledge_id TEXT NOT NULL REFERENCES knowledge(id) ON DELETE CASCADE,
    file_id TEXT NOT NULL REFERENCES file(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    UNIQUE (knowledge_id, file_id)
);
CREATE TABLE config (key TEXT PRIMARY KEY, value JSON NOT NULL, updated_at BIGINT);
CREATE TABLE memory (
    id TEXT PRIMARY KEY, user_id TEXT, type TEXT DEFAULT 'context', path TEXT, content TEXT,
    meta JSON, updated_at BIGINT, created_at BIGINT
);
"""

OTHER_USER_ID = "9f1e6d2c-0000-4000-8000-00000000ad02"
# (user, path, content): memories with and without a path, for two users.
MEMORIES = (
    (USER_ID, None, "Prefers answers with citations to the original documents."),
    (USER_ID, "projects/reading-group", "Leads a reading group on nineteenth-century novels."),
    (OTHER_USER_ID, "profile", "Is a history teacher preparing a unit on the Constitution."),
)

CONTENT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "csv": "text/csv",
    "png": "image/png",
    "py": "text/x-python",
}


@dataclass(frozen=True)
class SampleKnowledgeBase:
    name: str
    description: str
    filenames: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(uuid.uuid5(SAMPLE_NAMESPACE, f"knowledge:{self.name}"))


KNOWLEDGE_BASES = (
    SampleKnowledgeBase(
        "American founding documents",
        "The Constitution, the Federalist and Lincoln's speeches.",
        ("constitution.pdf", "federalist_10.txt", "gettysburg_and_inaugural.txt"),
    ),
    SampleKnowledgeBase(
        "Classic literature",
        "",
        (
            "alice_chapter_one.md",
            "pride_and_prejudice.docx",
            "walden.html",
            "aesop_fables.csv",
            "gettysburg_and_inaugural.txt",
        ),
    ),
)

# Files Open WebUI could not extract keep no content; `notes.py` lost its content to show the
# migration reading an upload itself.
WITHOUT_STORED_CONTENT = {"moon_photo.png", "broken_report.pdf", "notes.py"}


def sample_file_id(filename: str) -> str:
    return str(uuid.uuid5(SAMPLE_NAMESPACE, f"file:{filename}"))


def _file_row(source: Path, stored_name: str, created_at: int) -> tuple:
    extension = source.suffix.lstrip(".")
    content_type = CONTENT_TYPES[extension]
    file_id = sample_file_id(source.name)
    data: dict = {"status": "completed"}
    content_hash = None
    try:
        text = joined_text(load_documents(source, source.name, content_type))
    except UnsupportedFileType:
        # Open WebUI's own wording for an upload it refuses.
        data = {
            "status": "failed",
            "error": f"File type {content_type} is not supported for processing",
        }
    except LoaderError as error:
        # Open WebUI stores the loader's own exception text.
        data = {"status": "failed", "error": str(error.__cause__ or error)}
    else:
        content_hash = text_sha256(text)
        if source.name not in WITHOUT_STORED_CONTENT:
            data["content"] = text
    meta = {
        "name": source.name,
        "content_type": content_type,
        "size": source.stat().st_size,
        "data": {},
        "collection_name": f"file-{file_id}",
        "file_hash": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    return (
        file_id,
        USER_ID,
        content_hash,
        source.name,
        f"{CONTAINER_UPLOAD_DIR}/{stored_name}",
        json.dumps(data),
        json.dumps(meta),
        created_at,
        created_at,
    )


def build_sample_deployment(data_dir: Path) -> Path:
    """Create `{data_dir}/webui.db` and `{data_dir}/uploads/` unless they exist; returns the
    database path. Ids are derived from names, so every build is identical."""
    database = data_dir / "webui.db"
    if database.exists():
        return database
    uploads = data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    partial = data_dir / "webui.db.partial"
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial)
    try:
        connection.executescript(OPENWEBUI_SCHEMA)
        created_at = 1_760_000_000
        sources = sorted(
            path
            for path in DOCUMENTS_DIR.iterdir()
            if path.suffix.lstrip(".") in CONTENT_TYPES and path.name != "SOURCES.md"
        )
        for offset, source in enumerate(sources):
            stored_name = f"{sample_file_id(source.name)}_{source.name}"
            shutil.copyfile(source, uploads / stored_name)
            connection.execute(
                "INSERT INTO file VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _file_row(source, stored_name, created_at + offset),
            )
        for offset, knowledge in enumerate(KNOWLEDGE_BASES):
            connection.execute(
                "INSERT INTO knowledge VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    knowledge.id,
                    USER_ID,
                    knowledge.name,
                    knowledge.description,
                    "{}",
                    created_at + offset,
                    created_at + offset,
                ),
            )
            for filename in knowledge.filenames:
                file_id = sample_file_id(filename)
                connection.execute(
                    "INSERT INTO knowledge_file VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        str(uuid.uuid5(SAMPLE_NAMESPACE, f"{knowledge.id}:{file_id}")),
                        USER_ID,
                        knowledge.id,
                        file_id,
                        created_at,
                        created_at,
                    ),
                )
        for offset, (user_id, path, content) in enumerate(MEMORIES):
            connection.execute(
                "INSERT INTO memory VALUES (?, ?, 'context', ?, ?, NULL, ?, ?)",
                (
                    str(uuid.uuid5(SAMPLE_NAMESPACE, f"memory:{content}")),
                    user_id,
                    path,
                    content,
                    created_at + offset,
                    created_at + offset,
                ),
            )
        connection.execute(
            "INSERT INTO config VALUES ('rag.chunk_size', '1000', ?), "
            "('rag.chunk_overlap', '100', ?)",
            (created_at, created_at),
        )
        connection.commit()
    finally:
        connection.close()
    partial.rename(database)
    return database

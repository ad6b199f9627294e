"""Open WebUI's Chroma store (`VECTOR_DB=chroma`, `{DATA_DIR}/vector_db`) as a source of vectors.

chromadb may migrate or compact a persistent directory when it opens one, so by default the
store is not opened in place: a snapshot copy in a temporary directory is opened instead and
removed on close, and the user's store is only read. A store that is itself a throwaway copy
can be opened in place to save the copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pgvector_migration.pipeline.transplant import StoredChunk

PAGE_ROWS = 1000
SQLITE_FILE = "chroma.sqlite3"


class ChromaStoreError(Exception):
    """The path is not a readable Chroma store; the message names it."""


def check_chroma_directory(path: str | Path) -> Path:
    """The store's directory, after checking that chromadb is installed and that the path
    holds a Chroma persistent store; raises ChromaStoreError naming what is wrong."""
    try:
        import chromadb  # noqa: F401
    except ImportError as error:
        raise ChromaStoreError(
            "reading a Chroma store needs the chromadb package: "
            "pip install 'pgvector-migration[chroma]'"
        ) from error
    source = Path(path).expanduser()
    if not (source / SQLITE_FILE).is_file():
        raise ChromaStoreError(
            f"{source} is not a Chroma persistent directory (no {SQLITE_FILE}); Open WebUI "
            "keeps it in {DATA_DIR}/vector_db"
        )
    return source


class ChromaSnapshot:
    """A view of a Chroma persistent directory, through a private copy of it unless `copy` is
    False."""

    def __init__(
        self,
        path: str | Path,
        copy: bool = True,
        tenant: str | None = None,
        database: str | None = None,
    ):
        source = check_chroma_directory(path)
        import chromadb
        from chromadb.config import Settings

        self.description = f"Chroma store {path}"
        self._copy = Path(tempfile.mkdtemp(prefix="pgvector-migration-chroma-")) if copy else None
        try:
            if self._copy is not None:
                shutil.copytree(source, self._copy, dirs_exist_ok=True)
            self._client = chromadb.PersistentClient(
                path=str(self._copy or source),
                settings=Settings(anonymized_telemetry=False, allow_reset=False),
                tenant=tenant or os.environ.get("CHROMA_TENANT") or chromadb.DEFAULT_TENANT,
                database=database or os.environ.get("CHROMA_DATABASE") or chromadb.DEFAULT_DATABASE,
            )
        except Exception as error:
            self.close()
            raise ChromaStoreError(f"cannot open {self.description}: {error}") from error

    def close(self) -> None:
        self._client = None
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)

    def __enter__(self) -> ChromaSnapshot:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def collection_names(self) -> set[str]:
        return {
            getattr(collection, "name", collection)
            for collection in self._client.list_collections()
        }

    def chunks(self, collection: str) -> Iterator[StoredChunk]:
        handle = self._client.get_collection(collection)
        offset = 0
        while True:
            page = handle.get(limit=PAGE_ROWS, offset=offset, include=["documents", "metadatas"])
            ids = page["ids"]
            if not ids:
                return
            for chunk_id, text, metadata in zip(
                ids, page["documents"], page["metadatas"], strict=True
            ):
                yield StoredChunk(chunk_id, text or "", metadata or {})
            offset += len(ids)

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        page = self._client.get_collection(collection).get(ids=list(ids), include=["embeddings"])
        return {
            chunk_id: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(page["ids"], page["embeddings"], strict=True)
        }

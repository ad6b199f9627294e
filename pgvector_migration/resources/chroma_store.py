"""Open WebUI's Chroma store (`VECTOR_DB=chroma`, `{DATA_DIR}/vector_db`) as a source of vectors.

chromadb may migrate or compact a persistent directory when it opens one, so by default the
store is not opened in place: a snapshot copy in a temporary directory is opened instead and
removed on close, and the user's store is only read. A store that is itself a throwaway copy
can be opened in place to save the copy.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pgvector_migration.pipeline.transplant import StoredChunk

PAGE_ROWS = 1000
INDEXES_PER_CLIENT = 50
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

        self.description = f"Chroma store {path}"
        self._tenant = tenant or os.environ.get("CHROMA_TENANT") or chromadb.DEFAULT_TENANT
        self._database = database or os.environ.get("CHROMA_DATABASE") or chromadb.DEFAULT_DATABASE
        self._copy = Path(tempfile.mkdtemp(prefix="pgvector-migration-chroma-")) if copy else None
        self._path = self._copy or source
        self._client = None
        self._indexes_loaded: set[str] = set()
        try:
            if self._copy is not None:
                shutil.copytree(source, self._copy, dirs_exist_ok=True)
            self._open_client()
        except Exception as error:
            self.close()
            raise ChromaStoreError(f"cannot open {self.description}: {error}") from error

    def _open_client(self) -> None:
        import chromadb
        from chromadb.config import Settings

        self._client = chromadb.PersistentClient(
            path=str(self._path),
            settings=Settings(anonymized_telemetry=False, allow_reset=False),
            tenant=self._tenant,
            database=self._database,
        )

    def _release_indexes(self) -> None:
        """Drop the client and chromadb's cached system: it keeps every vector index it loaded
        (megabytes per collection) until then."""
        from chromadb.api.client import SharedSystemClient

        self._client = None
        SharedSystemClient.clear_system_cache()
        gc.collect()
        self._indexes_loaded.clear()

    def close(self) -> None:
        if self._client is not None:
            self._release_indexes()
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
        """Reading vectors loads the collection's index; after INDEXES_PER_CLIENT collections
        the client is reopened, so memory stays bounded however many files a partition has."""
        if not ids:
            return {}
        if collection not in self._indexes_loaded:
            if len(self._indexes_loaded) >= INDEXES_PER_CLIENT:
                self._release_indexes()
                self._open_client()
            self._indexes_loaded.add(collection)
        page = self._client.get_collection(collection).get(ids=list(ids), include=["embeddings"])
        return {
            chunk_id: np.asarray(vector, dtype=np.float32)
            for chunk_id, vector in zip(page["ids"], page["embeddings"], strict=True)
        }

    def nearest_texts(self, collection: str, vector: np.ndarray, k: int) -> list[str]:
        """The texts of the store's own top k for `vector` in `collection` (none when the store
        has no such collection), to compare with what the new table answers."""
        if collection not in self.collection_names():
            return []
        page = self._client.get_collection(collection).query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            include=["documents"],
        )
        return [text or "" for text in page["documents"][0]]

"""The old vector store whose vectors a migration may reuse (see pipeline/transplant.py)."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pgvector_migration.pipeline.transplant import (
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_SAMPLES_PER_COLLECTION,
    StoredVectorSource,
)

FROM_CHROMA_ENV = "PGVECTOR_MIGRATION_FROM_CHROMA"


class OldVectorStoreResource(ConfigurableResource):
    """Where vectors already made by the migration's model can be found. Unset (the default),
    every text is embedded; set, matching vectors are copied into the embedding cache first."""

    chroma_path: str | None = Field(
        default=None,
        description="Open WebUI's Chroma persistent directory ({DATA_DIR}/vector_db), read "
        f"through a private copy; also taken from {FROM_CHROMA_ENV}.",
    )
    declared_model: str | None = Field(
        default=None,
        description="The embedding model that made stored vectors whose metadata has no "
        "embedding_config (stores written by old Open WebUI versions); without it such vectors "
        "are never used.",
    )
    samples_per_collection: int = Field(
        default=DEFAULT_SAMPLES_PER_COLLECTION,
        description="Stored chunks per collection embedded afresh and compared before any "
        "vector of the store is used (0: trust the store without checking).",
    )
    copy_store: bool = Field(
        default=True,
        description="Open a private copy of the store (chromadb may migrate a directory it "
        "opens); False opens the directory itself, for a store that is already a copy.",
    )
    min_similarity: float = Field(
        default=DEFAULT_MIN_SIMILARITY,
        description="Cosine similarity every sampled stored vector must reach against its "
        "fresh embedding; one below it refuses the store.",
    )

    def resolved_chroma_path(self) -> str | None:
        return self.chroma_path or os.environ.get(FROM_CHROMA_ENV) or None

    def description(self) -> str | None:
        """The configured store as the summary names it, or None."""
        path = self.resolved_chroma_path()
        return f"Chroma store {path}" if path else None

    def check(self) -> None:
        """Refuse a configured store that cannot be read, before a run starts."""
        path = self.resolved_chroma_path()
        if path is not None:
            from pgvector_migration.resources.chroma_store import check_chroma_directory

            check_chroma_directory(path)

    def open(self) -> StoredVectorSource | None:
        """The configured store, opened once per process and shared by every partition run in
        it (so a migration copies a store once, not once per knowledge base); None when none is
        configured. Closed (its copy removed) when the process exits."""
        path = self.resolved_chroma_path()
        if path is None:
            return None
        from pgvector_migration.resources.chroma_store import ChromaSnapshot

        key = (str(Path(path).expanduser().resolve()), self.copy_store)
        with _OPEN_STORES_LOCK:
            if key not in _OPEN_STORES:
                _OPEN_STORES[key] = ChromaSnapshot(path, copy=self.copy_store)
                if len(_OPEN_STORES) == 1:
                    atexit.register(_close_open_stores)
            return _OPEN_STORES[key]


_OPEN_STORES: dict[tuple[str, bool], StoredVectorSource] = {}
_OPEN_STORES_LOCK = threading.Lock()


def _close_open_stores() -> None:
    with _OPEN_STORES_LOCK:
        for store in _OPEN_STORES.values():
            store.close()
        _OPEN_STORES.clear()

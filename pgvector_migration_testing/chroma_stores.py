"""Chroma stores written the way Open WebUI's Chroma client writes them (`VECTOR_DB=chroma`,
`ChromaClient.insert`): a collection per collection name with the cosine space and no
embedding function, rows added with their ids, texts, vectors and the processed metadata the
pgvector client also stores (flat values, nested ones as `str()`). Used by the transplant tests
and the benchmark."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# (collection_name, id, text, metadata, vector): a document_chunk row.
Row = tuple[str, str, str, dict[str, Any], np.ndarray]


class OpenWebUIChromaWriter:
    """Adds document_chunk rows to a Chroma persistent directory, collection by collection."""

    def __init__(self, path: Path) -> None:
        import chromadb
        from chromadb.config import Settings

        self._client = chromadb.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=True)
        )
        self._collections: dict[str, Any] = {}

    @property
    def collection_count(self) -> int:
        return len(self._collections)

    def add(self, rows: Iterable[Row]) -> None:
        by_collection: dict[str, list[Row]] = {}
        for row in rows:
            by_collection.setdefault(row[0], []).append(row)
        for name, members in by_collection.items():
            if name not in self._collections:
                self._collections[name] = self._client.get_or_create_collection(
                    name=name, metadata={"hnsw:space": "cosine"}, embedding_function=None
                )
            self._collections[name].add(
                ids=[row[1] for row in members],
                documents=[row[2] for row in members],
                embeddings=[np.asarray(row[4]) for row in members],
                metadatas=[row[3] for row in members],
            )

"""Write a migrated document_chunk into a Chroma store the way Open WebUI's Chroma client would
have written the same chunks (`VECTOR_DB=chroma`): one collection per collection_name with the
cosine space and no embedding function, ids, texts, processed metadata and vectors. The
benchmark migrates from it with --from-chroma to measure what a transplant saves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

PAGE_ROWS = 5000


def export_to_chroma(target_url: str, store: Path) -> dict[str, Any]:
    import chromadb
    import psycopg
    from chromadb.config import Settings
    from pgvector.psycopg import register_vector

    started = time.monotonic()
    client = chromadb.PersistentClient(
        path=str(store), settings=Settings(anonymized_telemetry=False, allow_reset=True)
    )
    rows = 0
    collections: dict[str, Any] = {}
    with psycopg.connect(target_url) as connection:
        register_vector(connection)
        with connection.cursor(name="export") as cursor:
            cursor.execute(
                "SELECT collection_name, id, text, vmetadata, vector FROM document_chunk "
                "ORDER BY collection_name, id"
            )
            while page := cursor.fetchmany(PAGE_ROWS):
                by_collection: dict[str, list] = {}
                for row in page:
                    by_collection.setdefault(row[0], []).append(row)
                for name, members in by_collection.items():
                    if name not in collections:
                        collections[name] = client.get_or_create_collection(
                            name=name, metadata={"hnsw:space": "cosine"}, embedding_function=None
                        )
                    collections[name].add(
                        ids=[row[1] for row in members],
                        documents=[row[2] for row in members],
                        embeddings=[row[4].to_numpy() for row in members],
                        metadatas=[row[3] for row in members],
                    )
                rows += len(page)
    return {
        "rows": rows,
        "collections": len(collections),
        "seconds": round(time.monotonic() - started, 1),
        "store_mib": round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20),
    }


def same_rows(first_url: str, second_url: str) -> bool:
    """Whether two targets hold the same (collection, id, text, metadata) rows."""
    import psycopg

    query = (
        "SELECT md5(string_agg(collection_name || id || coalesce(text, '') || vmetadata::text, "
        "'|' ORDER BY collection_name, id)) FROM document_chunk"
    )
    digests = []
    for url in (first_url, second_url):
        with psycopg.connect(url) as connection:
            digests.append(connection.execute(query).fetchone()[0])
    return digests[0] == digests[1]

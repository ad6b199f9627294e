"""Write a migrated document_chunk into a Chroma store the way Open WebUI's Chroma client would
have written the same chunks (pgvector_migration_testing/chroma_stores.py). The benchmark
migrates from it with --from-chroma to measure what a transplant saves."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

PAGE_ROWS = 5000


def export_to_chroma(target_url: str, store: Path) -> dict[str, Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    from pgvector_migration_testing.chroma_stores import OpenWebUIChromaWriter

    started = time.monotonic()
    writer = OpenWebUIChromaWriter(store)
    rows = 0
    with psycopg.connect(target_url) as connection:
        register_vector(connection)
        with connection.cursor(name="export") as cursor:
            cursor.execute(
                "SELECT collection_name, id, text, vmetadata, vector FROM document_chunk "
                "ORDER BY collection_name, id"
            )
            while page := cursor.fetchmany(PAGE_ROWS):
                writer.add((*row[:4], row[4].to_numpy()) for row in page)
                rows += len(page)
    return {
        "rows": rows,
        "collections": writer.collection_count,
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

"""Fill Open WebUI's ``document_chunk`` table with generated rows fast, for the tests and
benchmarks of what reads it (index builds, retrieval quality, search plans) without migrating
thousands of files first.

Rows go in with one binary ``COPY``, as the migration itself writes them; the table must exist
(``PgVectorResource.ensure_table``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from pgvector_migration_testing.embedding_vectors import expected_embedding

__all__ = ["ChunkRow", "copy_document_chunks", "embedded_chunk_rows"]


class ChunkRow(NamedTuple):
    """One ``document_chunk`` row."""

    id: str
    vector: Sequence[float] | np.ndarray
    collection_name: str
    text: str
    metadata: dict[str, Any]


def copy_document_chunks(url: str, rows: Iterable[ChunkRow], *, analyze: bool) -> int:
    """Write ``rows`` to ``document_chunk`` at ``url`` in one ``COPY``; with ``analyze``, refresh
    the table's statistics afterwards (so the planner sees the rows, as after a migration).
    Returns the number of rows written."""
    written = 0
    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY document_chunk (id, vector, collection_name, text, vmetadata) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "vector", "text", "text", "jsonb"])
            for row in rows:
                copy.write_row(
                    (row.id, row.vector, row.collection_name, row.text, Jsonb(row.metadata))
                )
                written += 1
        if analyze:
            connection.execute("ANALYZE document_chunk")
    return written


def embedded_chunk_rows(
    layout: Iterable[tuple[str, int]],
    model: str,
    dimensions: int,
    text_of: Callable[[str, int], str],
    file_id_of: Callable[[str, int], str],
) -> Iterator[ChunkRow]:
    """``count`` rows for each ``(collection, count)`` of ``layout``: row ``n`` of a collection
    has the id ``{collection}-{n}``, the text ``text_of(collection, n)``, the fake providers'
    vector of that text under ``model`` (so a query embedded by a fake server finds it) and the
    metadata ``{"file_id": file_id_of(collection, n)}``."""
    for collection, count in layout:
        for n in range(count):
            text = text_of(collection, n)
            yield ChunkRow(
                f"{collection}-{n}",
                expected_embedding(model, text, dimensions),
                collection,
                text,
                {"file_id": file_id_of(collection, n)},
            )

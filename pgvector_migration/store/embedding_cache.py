"""The embedding cache: a vector per (model, text hash), so a re-run, a retried unit or a text
shared by many files is embedded once; vectors transplanted from an old store are marked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg

from pgvector_migration.store.ddl import ddl_transaction
from pgvector_migration.store.names import SCHEMA
from pgvector_migration.store.state_access import StateAccess

ENGINE_ORIGIN = "engine"
# Apart from the numbered migrations: its vector column needs the pgvector extension, which
# exists only once a write step has made the target table.


def cache_ddl(schema: str) -> str:
    """The cache's DDL in state schema `schema`."""
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.embedding_cache (
    model_key text NOT NULL,
    text_hash bytea NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (model_key, text_hash)
);
ALTER TABLE {schema}.embedding_cache
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT '{ENGINE_ORIGIN}';
ALTER TABLE {schema}.embedding_cache ADD COLUMN IF NOT EXISTS made_at timestamptz;
"""


CACHE_DDL = cache_ddl(SCHEMA)
SEED_PAGE_ROWS = 1000
CACHE_LOOKUP_PAGE_KEYS = 10_000


@dataclass(frozen=True)
class CacheHits:
    """Cached vectors by text hash, and which of them were transplanted from an old store
    rather than made by the engine."""

    vectors: dict[bytes, np.ndarray]
    transplanted: set[bytes]


def _copy_into_cache(
    connection: psycopg.Connection,
    schema: str,
    model_key: str,
    vectors: Iterable[tuple[bytes, np.ndarray]],
    origin: str,
    replace: bool,
) -> int:
    """COPY (text hash, vector) pairs into the cache inside the caller's transaction, through a
    temporary table emptied at commit; returns the rows added or replaced. Each row added or
    replaced is stamped with the transaction's time (`made_at`)."""
    # A cached vector of another length than the new one was left by an earlier version that
    # cached unchecked answers: it is replaced, never kept.
    conflict = (
        "ON CONFLICT (model_key, text_hash) DO UPDATE "
        "SET embedding = EXCLUDED.embedding, origin = EXCLUDED.origin, made_at = now()"
    )
    if not replace:
        conflict += (
            f" WHERE vector_dims({schema}.embedding_cache.embedding) "
            "<> vector_dims(EXCLUDED.embedding)"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_vector "
            "(text_hash bytea NOT NULL, embedding vector NOT NULL) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(
            "COPY pg_temp.incoming_vector (text_hash, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bytea", "vector"])
            for text_hash, vector in vectors:
                copy.write_row((text_hash, vector))
        cursor.execute(
            f"INSERT INTO {schema}.embedding_cache "
            "(model_key, text_hash, embedding, origin, made_at) "
            "SELECT DISTINCT ON (text_hash) %s, text_hash, embedding, %s, now() "
            f"FROM pg_temp.incoming_vector {conflict}",
            (model_key, origin),
        )
        return cursor.rowcount


def _pages(items: Iterable, size: int) -> Iterator[list]:
    page: list = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class EmbeddingCache(StateAccess):
    """The `embedding_cache` table."""

    def ensure_cache(self) -> None:
        """Create the cache, or add what an older version's lacks; a cache already complete
        is left alone without taking the DDL lock."""
        with self._connect() as connection:
            complete = connection.execute(
                "SELECT 1 FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attname = 'made_at'",
                (f"{self.schema}.embedding_cache",),
            ).fetchone()
            if complete:
                return
            with ddl_transaction(connection):
                connection.execute(cache_ddl(self.schema))

    def has_cached_dimension(self, model_key: str, dimension: int) -> bool:
        """Whether this model has made vectors of this length before (the target column's), so
        a re-run need not load the model or ask the provider just to check it. Evidence of one
        length, never a guess from one arbitrary row: a stray row of another length left by an
        earlier version is not taken for the model's dimension."""
        with self._connect() as connection:
            if (
                connection.execute(
                    f"SELECT to_regclass('{self.schema}.embedding_cache')"
                ).fetchone()[0]
                is None
            ):
                return False
            row = connection.execute(
                f"SELECT EXISTS (SELECT 1 FROM {self.schema}.embedding_cache "
                "WHERE model_key = %s AND vector_dims(embedding) = %s)",
                (model_key, dimension),
            ).fetchone()
        return bool(row[0])

    def cached_embeddings(
        self,
        connection: psycopg.Connection,
        model_key: str,
        text_hashes: Sequence[bytes],
        dimension: int | None = None,
        engine_made_since: datetime | None = None,
    ) -> CacheHits:
        """Cached vectors of these texts; with `dimension`, only vectors of that length (a row
        of another length is ignored, so its text is embedded again and the row replaced);
        with `engine_made_since`, only vectors the engine made since then (a forced
        re-embedding trusts what it made itself, nothing older and nothing transplanted)."""
        filters, parameters = "", []
        if dimension is not None:
            filters += " AND vector_dims(embedding) = %s"
            parameters.append(dimension)
        if engine_made_since is not None:
            filters += " AND made_at >= %s AND origin = %s"
            parameters += [engine_made_since, ENGINE_ORIGIN]
        # Binary results: each vector arrives as its float32 bytes, not as text parsed value by
        # value (measured at 1536 dimensions: 258 cached vectors a second as text).
        with connection.cursor(binary=True) as cursor:
            rows = cursor.execute(
                f"SELECT text_hash, embedding, origin FROM {self.schema}.embedding_cache "
                f"WHERE model_key = %s AND text_hash = ANY(%s){filters}",
                (model_key, list(text_hashes), *parameters),
            ).fetchall()
        return CacheHits(
            {bytes(text_hash): embedding.to_numpy() for text_hash, embedding, _ in rows},
            {bytes(text_hash) for text_hash, _, origin in rows if origin != ENGINE_ORIGIN},
        )

    def cached_keys(self, model_key: str, text_hashes: Sequence[bytes]) -> set[bytes]:
        """Which of these texts already have a vector for this model (no vectors read)."""
        found: set[bytes] = set()
        with self._connect() as connection:
            for page in _pages(text_hashes, CACHE_LOOKUP_PAGE_KEYS):
                rows = connection.execute(
                    f"SELECT text_hash FROM {self.schema}.embedding_cache "
                    "WHERE model_key = %s AND text_hash = ANY(%s)",
                    (model_key, page),
                ).fetchall()
                found.update(bytes(row[0]) for row in rows)
        return found

    def store_embeddings(
        self,
        connection: psycopg.Connection,
        model_key: str,
        embeddings: dict[bytes, np.ndarray],
        replace: bool = False,
    ) -> None:
        """Cache freshly embedded vectors; `replace` overwrites what was cached (a forced
        re-embedding), otherwise the first vector of a text stays."""
        with connection.transaction():
            _copy_into_cache(
                connection, self.schema, model_key, embeddings.items(), ENGINE_ORIGIN, replace
            )

    def seed_embeddings(
        self, model_key: str, vectors: Iterable[tuple[bytes, np.ndarray]], origin: str
    ) -> int:
        """Cache vectors that came from elsewhere (an old vector store) in pages of
        SEED_PAGE_ROWS, each page its own transaction; a text that already has a vector keeps
        it. Returns how many were new."""
        added = 0
        with self._connect(with_vectors=True) as connection:
            for page in _pages(vectors, SEED_PAGE_ROWS):
                with connection.transaction():
                    added += _copy_into_cache(
                        connection, self.schema, model_key, page, origin, replace=False
                    )
        return added

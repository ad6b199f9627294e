"""Searching document_chunk exactly as Open WebUI 0.12.4 does, under the index and exactly.

Open WebUI's query: the query vectors as a VALUES list joined LATERAL to
`SELECT ... FROM document_chunk WHERE collection_name = :c ORDER BY vector <=> q LIMIT k`
(cosine distance, the collection filter applied to what the index walk yields), after `SET
LOCAL {method}.iterative_scan`. The exact search is the same query with index scans off, so
the planner answers from the collection's rows themselves (a bitmap scan of the
collection_name index, or the whole table) and the index cannot drop a neighbour.

Statements are never prepared: psycopg2, Open WebUI's driver for a `postgresql://` URL, sends
values inline, so each search is planned for its own collection. psycopg 3's default would
prepare the query after 5 executions, and PostgreSQL may then switch to one generic plan that
does not know the collection's size and searches differently (README: the benchmark's plans).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import psycopg
from psycopg import sql

from pgvector_migration.pipeline.retrieval_quality import (
    CollectionQuality,
    Hit,
    QueryMeasure,
    SampledChunk,
    Thresholds,
    overlap,
    recall_at_k,
    self_retrieved,
    summarize,
    text_md5,
)
from pgvector_migration.resources.search_tuning import set_local
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store.target_table import decryption_errors

EmbedQueries = Callable[[list[str]], list[np.ndarray]]


class OldStore(Protocol):
    """The store the vectors came from (a Chroma snapshot), asked for its own top k."""

    def nearest_texts(self, collection: str, vector: np.ndarray, k: int) -> list[str]: ...


@dataclass(frozen=True)
class ProbeQuery:
    """One query of a collection: the sample it came from, its form, its vector and the
    exact top k (computed once, compared with every index search)."""

    sample: SampledChunk
    short: bool
    vector: np.ndarray
    exact: tuple[Hit, ...]
    exact_ms: float


class SearchProbe:
    """Runs Open WebUI-shaped searches over one connection of the target."""

    def __init__(
        self, vector_store: PgVectorResource, connection: psycopg.Connection, k: int
    ) -> None:
        self.vector_store = vector_store
        self.connection = connection
        self.k = k
        # The resource's own table: Open WebUI's document_chunk, or a model switch's shadow.
        self._table = sql.Identifier(vector_store.table_name).as_string(connection)
        table = vector_store.describe_table()
        self._vector_type = f"{table.vector_type or 'vector'}"
        self._encrypted = table.encrypted
        self._text, self._metadata, self._params = vector_store.chunk_columns(table.encrypted)

    def collection_rows(self, collection: str) -> int:
        return self.connection.execute(
            f"SELECT count(*) FROM {self._table} WHERE collection_name = %s",
            (collection,),
            prepare=False,
        ).fetchone()[0]

    def sample(self, collection: str, count: int, seed: str = "") -> list[SampledChunk]:
        """The same `count` chunks of the collection on every run: ordered by md5(id||seed)."""
        with decryption_errors():
            rows = self.connection.execute(
                f"SELECT id, ({self._metadata})->>'file_id', {self._text} FROM {self._table} "
                "WHERE collection_name = %(collection)s AND vector IS NOT NULL "
                "ORDER BY md5(id || %(seed)s) LIMIT %(count)s",
                {**self._params, "collection": collection, "seed": seed, "count": count},
                prepare=False,
            ).fetchall()
        return [SampledChunk(row[0], row[1], row[2] or "") for row in rows]

    def search(
        self,
        collection: str,
        vector: np.ndarray,
        settings: Mapping[str, str],
        exact: bool = False,
    ) -> tuple[tuple[Hit, ...], float]:
        """The top k of `collection` for `vector` and the milliseconds the query took, with
        `settings` applied locally (Open WebUI's SET LOCAL and any candidate tuning)."""
        values = f"(VALUES (0, %(q)s::{self._vector_type}({len(vector)}))) AS q(qid, q_vector)"
        query = (
            f"SELECT r.id, r.file_id, r.text_md5 FROM {values} "
            f"JOIN LATERAL (SELECT id, ({self._metadata})->>'file_id' AS file_id, "
            f"md5(coalesce({self._text}, '')) AS text_md5, "
            f"vector <=> q.q_vector AS distance FROM {self._table} "
            "WHERE collection_name = %(collection)s ORDER BY vector <=> q.q_vector "
            "LIMIT %(k)s) r ON true ORDER BY q.qid, r.distance"
        )
        with decryption_errors(), self.connection.transaction():
            set_local(self.connection, settings)
            if exact:
                set_local(self.connection, {"enable_indexscan": "off"})
            started = time.perf_counter()
            rows = self.connection.execute(
                query,
                {**self._params, "q": _as_text(vector), "collection": collection, "k": self.k},
                prepare=False,
            ).fetchall()
            elapsed = (time.perf_counter() - started) * 1000
        return tuple(Hit(row[0], row[1], row[2]) for row in rows), elapsed

    def prepare_queries(
        self,
        collection: str,
        samples: Sequence[SampledChunk],
        embed: EmbedQueries,
        settings: Mapping[str, str],
    ) -> list[ProbeQuery]:
        """Embed every sample's text and shortened text once and find their exact top k."""
        texts = [s.text for s in samples] + [s.short_text for s in samples]
        vectors = embed(texts) if texts else []
        queries = []
        for position, vector in enumerate(vectors):
            sample = samples[position % len(samples)]
            exact, exact_ms = self.search(collection, vector, settings, exact=True)
            queries.append(ProbeQuery(sample, position >= len(samples), vector, exact, exact_ms))
        return queries

    def measure(
        self,
        collection: str,
        rows: int,
        queries: Sequence[ProbeQuery],
        settings: Mapping[str, str],
        thresholds: Thresholds,
        old_store: OldStore | None = None,
    ) -> CollectionQuality:
        """Run every query under the index with `settings` and judge the collection; with
        `old_store`, also how much of its top k the new table's top k holds."""
        measures = []
        for query in queries:
            hits, index_ms = self.search(collection, query.vector, settings)
            shared = None
            if old_store is not None:
                theirs = old_store.nearest_texts(collection, query.vector, self.k)
                if theirs:
                    shared = overlap(
                        [h.text_md5 for h in hits], [text_md5(t) for t in theirs], self.k
                    )
            measures.append(
                QueryMeasure(
                    chunk_id=query.sample.chunk_id,
                    short=query.short,
                    recall=recall_at_k(
                        [h.chunk_id for h in hits], [h.chunk_id for h in query.exact], self.k
                    ),
                    self_retrieved=self_retrieved(query.sample, hits, self.k),
                    index_ms=index_ms,
                    exact_ms=query.exact_ms,
                    old_store_overlap=shared,
                )
            )
        return summarize(collection, rows, measures, thresholds)


def _as_text(vector: np.ndarray) -> str:
    """pgvector's text form, which a vector and a halfvec column both accept."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"

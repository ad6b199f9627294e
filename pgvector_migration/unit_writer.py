"""Embed write units through the cache and replace each one atomically in document_chunk.

Shared by every kind of collection (files, knowledge bases, memories), so they all get the same
cache, dimension check, atomic replacement and per-unit failure reporting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import psycopg

from pgvector_migration.pipeline.completeness import WrittenRecord
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.resources.embeddings import (
    Embedder,
    EmbeddingError,
    EmbeddingResource,
    EmbeddingStats,
    embed_with_cache,
)
from pgvector_migration.resources.migration_state import MigrationState
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings

CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP = 3


@dataclass
class WriteReport:
    """What a writer did: units and chunks written, embedding cost, failures by source id."""

    collections_written: int = 0
    chunks_written: int = 0
    stats: EmbeddingStats = field(default_factory=EmbeddingStats)
    failures: dict[str, dict] = field(default_factory=dict)


def waves(units: Iterable[WriteUnit], texts_per_wave: int) -> Iterator[list[WriteUnit]]:
    """Group whole units until a wave holds enough texts to fill embedding batches; memory is
    bounded by the wave, not by the partition."""
    wave: list[WriteUnit] = []
    texts = 0
    for unit in units:
        wave.append(unit)
        texts += len(unit.chunks)
        if texts >= texts_per_wave:
            yield wave
            wave, texts = [], 0
    if wave:
        yield wave


class UnitWriter:
    """Writes units with one embedder into the target; construct with `prepare`."""

    def __init__(
        self,
        vector_store: PgVectorResource,
        state: MigrationState,
        embedder: Embedder,
        dimension: int,
        batch_size: int,
        embedding_model: str,
    ) -> None:
        self._vector_store = vector_store
        self._state = state
        self._embedder = embedder
        self._dimension = dimension
        self._batch_size = batch_size
        self._embedding_model = embedding_model

    @classmethod
    def prepare(
        cls,
        settings: RagSettings,
        embeddings: EmbeddingResource,
        vector_store: PgVectorResource,
        state: MigrationState,
    ) -> UnitWriter:
        """Load the engine, learn its dimension (from the cache when it has one) and create or
        check `document_chunk`; raises before anything is written when they do not fit."""
        embedder = embeddings.embedder(settings)
        dimension = state.cached_dimension(embedder.model_key) or embedder.dimension()
        vector_store.ensure_table(dimension)
        state.ensure_cache()
        return cls(
            vector_store,
            state,
            embedder,
            dimension,
            embeddings.batch_size(settings),
            settings.embedding_model,
        )

    def write(
        self, units: Iterable[WriteUnit], on_failure: Callable[[WriteUnit, str], None]
    ) -> WriteReport:
        """Embed and write every unit; a unit that fails is reported through `on_failure` (once
        per source id) and never stops the others. After repeated embedding failures in a row,
        the remaining units are failed without sending more requests."""
        report = WriteReport()
        failed_in_a_row = 0
        last_error = ""

        def fail(unit: WriteUnit, message: str) -> None:
            if unit.source_id not in report.failures:
                report.failures[unit.source_id] = {
                    "id": unit.source_id,
                    "name": unit.label,
                    "error": message,
                }
                on_failure(unit, message)

        with self._vector_store.connect() as connection:
            model_key = self._embedder.model_key
            for wave in waves(units, max(self._batch_size * 4, 256)):
                wave = [unit for unit in wave if unit.source_id not in report.failures]
                if failed_in_a_row >= CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP:
                    for unit in wave:
                        fail(unit, f"not attempted after repeated embedding failures: {last_error}")
                    continue
                texts = [chunk.embedding_input for unit in wave for chunk in unit.chunks]
                try:
                    vectors = embed_with_cache(
                        texts,
                        self._embedder,
                        self._batch_size,
                        lambda keys: self._state.cached_embeddings(connection, model_key, keys),
                        lambda fresh: self._state.store_embeddings(connection, model_key, fresh),
                        report.stats,
                    )
                except EmbeddingError as error:
                    failed_in_a_row += 1
                    last_error = str(error)
                    for unit in wave:
                        fail(unit, last_error)
                    continue
                failed_in_a_row = 0
                offset = 0
                for unit in wave:
                    unit_vectors = vectors[offset : offset + len(unit.chunks)]
                    offset += len(unit.chunks)
                    wrong = [len(v) for v in unit_vectors if len(v) != self._dimension]
                    if wrong:
                        fail(
                            unit,
                            f"the model returned {wrong[0]}-dimensional vectors but "
                            f"document_chunk.vector has {self._dimension} dimensions",
                        )
                        continue
                    record = WrittenRecord(
                        unit.content_hash,
                        unit.settings_fingerprint,
                        self._embedding_model,
                        len(unit.chunks),
                    )
                    try:
                        self._vector_store.replace_unit(connection, unit, unit_vectors, record)
                    except psycopg.DataError as error:
                        fail(unit, f"{unit.collection_name}: {error}")
                        continue
                    report.collections_written += 1
                    report.chunks_written += len(unit.chunks)
        return report

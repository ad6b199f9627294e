"""Embed write units through the cache and replace each one atomically in document_chunk.

Shared by every kind of collection (files, knowledge bases, memories), so they all get the same
cache, dimension check, atomic replacement and per-unit failure reporting.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from pgvector_migration.embedding.cache import CachedEmbedding, EmbeddingStats, WaveUnderWay
from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.pipeline.completeness import WrittenRecord
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    MEMORY_COLLECTION_PREFIX,
    Chunk,
    WriteUnit,
)
from pgvector_migration.process_memory import limit_malloc_arenas, release_free_heap
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.migration_state import MigrationState

CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP = 3
LOCAL_BATCHES_PER_WAVE = 8
API_BATCHES_PER_WAVE = 4
# Waves whose requests may be out at once; memory is bounded by them (their texts and vectors).
MAX_WAVES_UNDER_WAY = 8


@dataclass
class WriteReport:
    """What a writer did: units and chunks written, embedding cost, failures by source id."""

    collections_written: int = 0
    chunks_written: int = 0
    requests: int = 0
    tokens: int = 0
    rate_limited: int = 0
    retries: int = 0
    stats: EmbeddingStats = field(default_factory=EmbeddingStats)
    failures: dict[str, dict] = field(default_factory=dict)


def postgres_reason(error: psycopg.Error) -> str:
    """PostgreSQL's own words for an error: its primary message, with the detail when it has
    one, never the CONTEXT or HINT lines (a full disk reads "could not extend file ...: No
    space left on device", not "COPY document_chunk, line 11"). Errors raised by psycopg
    before the server saw anything have no primary message: their first line is used."""
    primary = error.diag.message_primary
    if not primary:
        lines = str(error).strip().splitlines()
        primary = lines[0] if lines else type(error).__name__
    detail = error.diag.message_detail
    return f"{primary} ({detail})" if detail else primary


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


def model_dimension(
    dispatcher: EmbeddingDispatcher,
    vector_store: PgVectorResource,
    state: MigrationState,
    reembed: bool = False,
) -> int:
    """The vector length the target needs (its column's, or PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH
    for a new table), confirmed for this model by vectors of that length it made before (so a
    re-run loads no model and sends no request), else by asking the engine; `reembed` trusts
    nothing cached. What the engine answers is returned, so a mismatch is reported by the
    target's check, naming both numbers."""
    table = vector_store.describe_table()
    wanted = table.dimension if table.exists else vector_store.resolved_vector_length()
    if not reembed and state.has_cached_dimension(dispatcher.model_key, wanted):
        return wanted
    return dispatcher.dimension(expected=wanted)


def prepare_target(
    dispatcher: EmbeddingDispatcher,
    vector_store: PgVectorResource,
    state: MigrationState,
    reembed: bool = False,
) -> int:
    """The engine's vector dimension, with `document_chunk` created or checked against it and
    the embedding cache in place; raises before anything is written when they do not fit. From
    then on every vector the engine returns must have that length."""
    dimension = model_dimension(dispatcher, vector_store, state, reembed)
    vector_store.ensure_table(dimension)
    state.ensure_cache()
    dispatcher.expected_dimension = dimension
    return dimension


def text_failure(unit: WriteUnit, chunk: Chunk, error: EmbeddingError) -> str:
    """Why a unit failed, naming the text's own source: the memory (one user's unit holds all
    their memories), the knowledge base, or the chunk of the file."""
    if unit.collection_name.startswith(MEMORY_COLLECTION_PREFIX):
        what = f"memory {chunk.id}"
    elif unit.collection_name == KNOWLEDGE_BASES_COLLECTION:
        what = f"knowledge base {unit.label!r} ({unit.source_id})"
    else:
        what = f"chunk {chunk.position} of {unit.label}"
    return f"{what} could not be embedded: {error}"


class UnitWriter:
    """Writes units with one engine into the target; construct with `prepare`.

    Embedding and writing overlap: while one wave's rows are COPYed by a writer thread (its own
    connection), later waves are looked up in the cache and their requests are in flight, as
    many as keep every request slot the provider's budget allows busy (up to
    MAX_WAVES_UNDER_WAY). At most one wave waits to be written, so memory stays bounded by the
    waves under way."""

    def __init__(
        self,
        vector_store: PgVectorResource,
        state: MigrationState,
        dispatcher: EmbeddingDispatcher,
        dimension: int,
        embedding_model: str,
        texts_per_wave: int,
        reembed: bool,
    ) -> None:
        self._vector_store = vector_store
        self._state = state
        self._dispatcher = dispatcher
        self._dimension = dimension
        self._embedding_model = embedding_model
        self._texts_per_wave = texts_per_wave
        self._reembed = reembed

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
        dispatcher = embeddings.dispatcher(settings)
        dimension = prepare_target(dispatcher, vector_store, state, embeddings.reembed)
        # A few requests' worth a wave (more waves are under way at once); a local model gets a
        # few batches at a time, so its tokenised inputs stay small and writing starts early.
        texts_per_wave = (
            max(embeddings.max_batch_size * API_BATCHES_PER_WAVE, 512)
            if dispatcher.is_api
            else embeddings.local_batch_size * LOCAL_BATCHES_PER_WAVE
        )
        return cls(
            vector_store,
            state,
            dispatcher,
            dimension,
            settings.embedding_model,
            texts_per_wave,
            embeddings.reembed,
        )

    def write(
        self, units: Iterable[WriteUnit], on_failure: Callable[[WriteUnit, str], None]
    ) -> WriteReport:
        """Embed and write every unit; a unit that fails is reported through `on_failure` (once
        per source id) and never stops the others. After repeated embedding failures in a row,
        the remaining units are failed without sending more requests."""
        limit_malloc_arenas()
        report = WriteReport()
        failures_lock = threading.Lock()
        failed_in_a_row = 0
        last_error = ""
        stats = self._dispatcher.stats
        before = (stats.requests, stats.tokens, stats.rate_limited, stats.retries)

        def fail(unit: WriteUnit, message: str) -> None:
            with failures_lock:
                if unit.source_id in report.failures:
                    return
                report.failures[unit.source_id] = {
                    "id": unit.source_id,
                    "name": unit.label,
                    "error": message,
                }
            on_failure(unit, message)

        with (
            self._vector_store.connect(with_vectors=True) as cache_connection,
            self._vector_store.connect(with_vectors=True) as write_connection,
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
        ):
            model_key = self._dispatcher.model_key
            # A forced re-embedding trusts no vector made before it began, but reuses the ones
            # it makes itself: a text that comes back after its wave finished is not sent again.
            made_since = (
                cache_connection.execute("SELECT now()").fetchone()[0] if self._reembed else None
            )
            embedding = CachedEmbedding(
                self._dispatcher.submit,
                lambda keys: self._state.cached_embeddings(
                    cache_connection, model_key, keys, self._dimension, made_since
                ),
                lambda fresh: self._state.store_embeddings(
                    cache_connection, model_key, fresh, replace=self._reembed
                ),
                report.stats,
            )
            under_way: deque[tuple[list[WriteUnit], WaveUnderWay]] = deque()
            pending = None

            def finish_oldest() -> None:
                nonlocal failed_in_a_row, last_error, pending
                wave, started = under_way.popleft()
                results = embedding.finish(started)
                errors = [r for r in results if isinstance(r, EmbeddingError)]
                if errors and len(errors) == len(results):
                    failed_in_a_row += 1
                    last_error = str(errors[0])
                else:
                    failed_in_a_row = 0
                ready, vectors = self._embedded_units(wave, results, fail)
                if pending is not None:
                    pending.result()
                pending = writer.submit(
                    self._write_wave, write_connection, ready, vectors, report, fail
                )

            for wave in waves(units, self._texts_per_wave):
                wave = [unit for unit in wave if unit.source_id not in report.failures]
                if failed_in_a_row >= CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP:
                    for unit in wave:
                        fail(unit, f"not attempted after repeated embedding failures: {last_error}")
                    continue
                texts = [chunk.embedding_input for unit in wave for chunk in unit.chunks]
                under_way.append((wave, embedding.start(texts)))
                # The oldest wave is finished once its answers are in and the writer is free
                # (so waiting for the writer never keeps requests from being sent), or when
                # the waves under way hold more texts than the request slots can take.
                while under_way and (
                    (not under_way[0][1].texts_in_flight and (pending is None or pending.done()))
                    or len(under_way) > MAX_WAVES_UNDER_WAY
                    or self._texts_in_flight(under_way) > self._texts_wanted_in_flight()
                    or self._writer_behind(under_way, pending)
                ):
                    finish_oldest()
            while under_way:
                finish_oldest()
            if pending is not None:
                pending.result()
        report.requests = stats.requests - before[0]
        report.tokens = stats.tokens - before[1]
        report.rate_limited = stats.rate_limited - before[2]
        report.retries = stats.retries - before[3]
        return report

    def _texts_wanted_in_flight(self) -> int:
        """Enough texts to fill every request slot the in-flight limit allows, twice over."""
        return max(self._texts_per_wave, self._dispatcher.requests_worth_of_texts() * 2)

    @staticmethod
    def _texts_in_flight(under_way: deque[tuple[list[WriteUnit], WaveUnderWay]]) -> int:
        return sum(started.texts_in_flight for _, started in under_way)

    def _writer_behind(
        self, under_way: deque[tuple[list[WriteUnit], WaveUnderWay]], writing: Future | None
    ) -> bool:
        """Whether writing is the bottleneck and enough is asked for: an answered wave waits
        for the writer and the waves under way, answered or not, hold one round of request
        slots. Asking further ahead than that cannot make the run faster; it only keeps
        more answered vectors in memory (measured at 1536 dimensions with a provider faster
        than the writer: 130 MB of them in the run's process)."""
        if writing is None or writing.done() or under_way[0][1].texts_in_flight:
            return False
        asked = sum(len(started.asked) for _, started in under_way)
        return asked > max(self._texts_per_wave, self._dispatcher.requests_worth_of_texts())

    @staticmethod
    def _embedded_units(
        wave: list[WriteUnit], results: list, fail: Callable[[WriteUnit, str], None]
    ) -> tuple[list[WriteUnit], list]:
        """The units of a wave whose every text got a vector, with those vectors in order; each
        other unit is failed, naming its first text that could not be embedded."""
        ready, vectors, offset = [], [], 0
        for unit in wave:
            unit_results = results[offset : offset + len(unit.chunks)]
            offset += len(unit.chunks)
            failed = next(
                (
                    (chunk, result)
                    for chunk, result in zip(unit.chunks, unit_results, strict=True)
                    if isinstance(result, EmbeddingError)
                ),
                None,
            )
            if failed is not None:
                fail(unit, text_failure(unit, *failed))
                continue
            ready.append(unit)
            vectors += unit_results
        return ready, vectors

    def _write_wave(
        self,
        connection,
        wave: list[WriteUnit],
        vectors: list,
        report: WriteReport,
        fail: Callable[[WriteUnit, str], None],
    ) -> None:
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
            except psycopg.Error as error:
                # The unit's transaction is rolled back; the next unit can go on unless the
                # connection itself is gone.
                if connection.broken:
                    raise
                reason = self._vector_store.lock_timeout_reason(error) or postgres_reason(error)
                fail(unit, f"writing {unit.collection_name}: {reason}")
                continue
            report.collections_written += 1
            report.chunks_written += len(unit.chunks)
        # The wave's answers, vectors and COPY buffers are freed now; the next waves' differ in
        # size, so without this the heap keeps the largest mix it ever held.
        release_free_heap()

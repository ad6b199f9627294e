"""embedded_collections: embed the staged chunks (through the cache) and write each
(file, collection) atomically into document_chunk."""

import itertools
from collections.abc import Iterable, Iterator

import psycopg
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from pgvector_migration.assets.chunking import chunked_documents
from pgvector_migration.assets.common import effective_settings, markdown_table
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.completeness import WrittenRecord
from pgvector_migration.resources.embeddings import (
    EmbeddingError,
    EmbeddingResource,
    EmbeddingStats,
    embed_with_cache,
)
from pgvector_migration.resources.migration_state import StagedUnit
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError

CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP = 3


def waves(units: Iterable[StagedUnit], texts_per_wave: int) -> Iterator[list[StagedUnit]]:
    """Group whole units until a wave holds enough texts to fill embedding batches; memory is
    bounded by the wave, not the partition."""
    wave: list[StagedUnit] = []
    texts = 0
    for unit in units:
        wave.append(unit)
        texts += len(unit.chunks)
        if texts >= texts_per_wave:
            yield wave
            wave, texts = [], 0
    if wave:
        yield wave


@asset(
    partitions_def=knowledge_partitions,
    group_name="migration",
    deps=[chunked_documents],
    description="Vectors for the staged chunks (each distinct text embedded once, cached by "
    "model and text hash) written to document_chunk: one transaction per (file, collection) "
    "deletes its old rows and COPYs the new ones.",
)
def embedded_collections(
    context: AssetExecutionContext,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    partition_key = context.partition_key
    settings = effective_settings(openwebui, embeddings)
    state = vector_store.state()
    units = state.staged_units(partition_key)
    first_unit = next(units, None)
    if first_unit is None:
        return MaterializeResult(
            metadata={"collections_written": MetadataValue.int(0), **_empty_metadata()}
        )
    try:
        embedder = embeddings.embedder(settings)
        dimension = state.cached_dimension(embedder.model_key) or embedder.dimension()
        vector_store.ensure_table(dimension)
    except (TargetConfigurationError, EmbeddingError, ValueError) as error:
        raise Failure(description=str(error)) from error
    state.ensure_cache()
    batch_size = embeddings.batch_size(settings)
    stats = EmbeddingStats()
    failures: dict[str, dict] = {}
    collections_written = chunks_written = 0
    failed_in_a_row = 0
    last_error = ""

    def fail(unit: StagedUnit, message: str) -> None:
        if unit.file_id not in failures:
            state.record_failure(partition_key, unit.file_id, unit.filename, "embedding", message)
            failures[unit.file_id] = {
                "file_id": unit.file_id,
                "filename": unit.filename,
                "error": message,
            }
            context.log.warning(f"file {unit.file_id} ({unit.filename}): {message}")

    with vector_store.connect() as connection:
        for wave in waves(itertools.chain([first_unit], units), max(batch_size * 4, 256)):
            wave = [unit for unit in wave if unit.file_id not in failures]
            if failed_in_a_row >= CONSECUTIVE_EMBEDDING_FAILURES_TO_STOP:
                for unit in wave:
                    fail(unit, f"not attempted after repeated embedding failures: {last_error}")
                continue
            texts = [chunk.embedding_input for unit in wave for chunk in unit.chunks]
            try:
                vectors = embed_with_cache(
                    texts,
                    embedder,
                    batch_size,
                    lambda keys: state.cached_embeddings(connection, embedder.model_key, keys),
                    lambda fresh: state.store_embeddings(connection, embedder.model_key, fresh),
                    stats,
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
                wrong = [len(v) for v in unit_vectors if len(v) != dimension]
                if wrong:
                    fail(
                        unit,
                        f"the model returned {wrong[0]}-dimensional vectors but "
                        f"document_chunk.vector has {dimension} dimensions",
                    )
                    continue
                record = WrittenRecord(
                    unit.content_hash,
                    unit.settings_fingerprint,
                    settings.embedding_model,
                    len(unit.chunks),
                )
                try:
                    vector_store.replace_unit(
                        connection,
                        unit.collection_name,
                        unit.file_id,
                        unit.chunks,
                        unit_vectors,
                        record,
                    )
                except psycopg.DataError as error:
                    fail(unit, f"{unit.collection_name}: {error}")
                    continue
                collections_written += 1
                chunks_written += len(unit.chunks)
    return MaterializeResult(
        metadata={
            "collections_written": MetadataValue.int(collections_written),
            **_empty_metadata(),
            "chunks_written": MetadataValue.int(chunks_written),
            "texts_embedded": MetadataValue.int(stats.embedded),
            "texts_reused": MetadataValue.int(stats.reused),
            "embedding_requests": MetadataValue.int(stats.requests),
            "files_failed": MetadataValue.int(len(failures)),
            "failures": markdown_table(list(failures.values()), ["file_id", "filename", "error"]),
            "embedding_model": MetadataValue.text(
                f"{settings.embedding_engine or 'local'}: {settings.embedding_model}"
            ),
        }
    )


def _empty_metadata() -> dict:
    """The counters of a partition with nothing to write, so every run has the same keys."""
    return {
        name: MetadataValue.int(0)
        for name in (
            "chunks_written",
            "texts_embedded",
            "texts_reused",
            "embedding_requests",
            "files_failed",
        )
    }

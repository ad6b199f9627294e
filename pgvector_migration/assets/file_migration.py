"""The step that materializes chunked_documents, transplanted_embeddings and
embedded_collections: one op, so a file's units are embedded as soon as they are staged while
later files still load, and any of the three can still be materialized alone.

Loading runs in the step's thread (its worker processes read and split the uploads) and hands
each file's units, once committed to staging, to a writer thread that embeds and writes them.
Everything else is as when the assets ran one after the other: the chunks are staged before
they are written, one transaction per (file, collection), and a stopped run leaves staged
units that the next one writes. Only with an old vector store to transplant from does
embedding wait for loading: the transplant needs every staged text first.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, multi_asset

from pgvector_migration.assets.chunking import (
    ChunkingConfig,
    chunked_documents,
    chunking_metadata,
    stage_selected,
)
from pgvector_migration.assets.common import (
    EMBEDDING_POOL,
    effective_settings,
    migration_backfill_policy,
)
from pgvector_migration.assets.embedding import embed_units, embedded_collections, writing_metadata
from pgvector_migration.assets.transplant import (
    transplant_needed,
    transplant_vectors,
    transplanted_embeddings,
)
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.pipeline.unit_handoff import HandoffAbandoned, UnitHandoff
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.old_vector_store import OldVectorStoreResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store.migration_state import MigrationState

# Files staged but not yet taken by the writer, and their chunks; loading waits beyond either
# (memory holds their chunks, and the provider's budget, not loading, sets the pace). Two
# waves' worth of chunks keeps the writer fed through a slow file.
FILES_WAITING_TO_EMBED = 64
CHUNKS_WAITING_TO_EMBED = 4096


def streamed_then_staged(
    handoff: UnitHandoff, state: MigrationState, keys: list[str]
) -> Iterator[WriteUnit]:
    """The units loading hands over, then any other staged unit of the run's partitions (left
    by an earlier run that stopped), each once; nothing more once the handoff is abandoned."""
    yield from handoff.units()
    if handoff.abandoned:
        return
    for unit in state.staged_units(keys):
        if (unit.collection_name, unit.source_id) not in handoff.handed_over:
            yield unit


@multi_asset(
    name="migrate_files",
    specs=[chunked_documents, transplanted_embeddings, embedded_collections],
    partitions_def=knowledge_partitions,
    backfill_policy=migration_backfill_policy(),
    can_subset=True,
    pool=EMBEDDING_POOL,
)
def migrate_files(
    context: AssetExecutionContext,
    config: ChunkingConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
    old_vector_store: OldVectorStoreResource,
) -> Iterator[MaterializeResult]:
    selected = context.selected_asset_keys
    chunk = chunked_documents.key in selected
    transplant = transplanted_embeddings.key in selected
    embed = embedded_collections.key in selected
    keys = context.partition_keys
    settings = effective_settings(openwebui, embeddings)
    state = vector_store.state()
    needs_transplant = transplant and transplant_needed(old_vector_store, embeddings.reembed)
    transplant_arguments = (context, settings, vector_store, embeddings, old_vector_store)
    started = datetime.now(UTC)
    results: list[MaterializeResult] = []
    with state.partition_leases(keys):
        if chunk and embed and not needs_transplant:
            handoff = UnitHandoff(FILES_WAITING_TO_EMBED, CHUNKS_WAITING_TO_EMBED)

            def write_handed_over():
                try:
                    return embed_units(
                        context,
                        streamed_then_staged(handoff, state, keys),
                        settings,
                        embeddings,
                        vector_store,
                    )
                finally:
                    handoff.abandon()  # a writer that failed releases loading at once

            with ThreadPoolExecutor(1, thread_name_prefix="embed-staged") as writer_thread:
                writing = writer_thread.submit(write_handed_over)
                try:
                    outcome = stage_selected(
                        context, config, openwebui, vector_store, state, settings, handoff.put
                    )
                except HandoffAbandoned:
                    writing.result()  # the writer's own error is the step's
                    raise
                except BaseException:
                    # Loading failed or the run is being stopped: the writer finishes the
                    # waves it has under way and takes nothing more; the rest stays staged.
                    handoff.abandon()
                    raise
                handoff.close()
                report = writing.result()
            results.append(chunking_metadata(context, outcome))
            if transplant:
                results.append(transplant_vectors(*transplant_arguments))
        else:
            if chunk:
                outcome = stage_selected(context, config, openwebui, vector_store, state, settings)
                results.append(chunking_metadata(context, outcome))
            if transplant:
                results.append(transplant_vectors(*transplant_arguments))
            if embed:
                report = embed_units(
                    context, state.staged_units(keys), settings, embeddings, vector_store
                )
        if embed:
            results.append(
                writing_metadata(context, state, report, settings, vector_store, started)
            )
    yield from results

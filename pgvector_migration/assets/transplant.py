"""transplanted_embeddings: seed the embedding cache with the old store's vectors, so that
embedded_collections sends only the texts the store does not have to the engine."""

from collections.abc import Sequence

from dagster import AssetExecutionContext, AssetSpec, Failure, MaterializeResult, MetadataValue

from pgvector_migration.assets.chunking import chunked_documents
from pgvector_migration.assets.common import downstream_automation
from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.pipeline.transplant import (
    TargetModel,
    TransplantRefused,
    TransplantReport,
    find_candidates,
    transplanted_vectors,
    verify_samples,
)
from pgvector_migration.resources.chroma_store import ChromaStoreError
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.old_vector_store import OldVectorStoreResource
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.migration_state import MigrationState
from pgvector_migration.unit_writer import prepare_target

TRANSPLANT_ORIGIN = "transplant"
# One old store serves every partition of a run at once: its figures are the run's.
RUN_SCOPE = "the whole run (every knowledge base it covers)"


transplanted_embeddings = AssetSpec(
    "transplanted_embeddings",
    deps=[chunked_documents],
    group_name="migration",
    automation_condition=downstream_automation(),
    description="Vectors of the old vector store (Chroma) for the staged chunks, copied into "
    "the embedding cache when the store's embedding_config names the migration's model, the "
    "dimension fits, and a sample re-embedded afresh agrees; a no-op without a store.",
)


def texts_to_embed(state: MigrationState, partition_keys: Sequence[str], model_key: str):
    """The staged chunks' collections (in order) and the text keys the cache does not have."""
    collections: dict[str, None] = {}
    keys: set[bytes] = set()
    for unit in state.staged_units(partition_keys):
        collections[unit.collection_name] = None
        keys.update(text_key(chunk.embedding_input) for chunk in unit.chunks)
    return list(collections), keys - state.cached_keys(model_key, list(keys))


def report_metadata(report: TransplantReport) -> dict[str, MetadataValue]:
    return {
        "store": MetadataValue.text(report.store),
        "vectors_transplanted": MetadataValue.int(report.vectors_seeded),
        "collections_read": MetadataValue.int(report.collections_read),
        "chunks_read": MetadataValue.int(report.chunks_read),
        "chunks_other_model": MetadataValue.int(report.chunks_other_model),
        "chunks_wrong_dimension": MetadataValue.int(report.chunks_wrong_dimension),
        "chunks_not_needed": MetadataValue.int(report.chunks_not_needed),
        "samples_compared": MetadataValue.int(report.sampled),
        # Only read when samples_compared > 0, where the lowest similarity exists.
        "min_sample_similarity": MetadataValue.float(report.min_similarity or 0.0),
        "models_in_store": MetadataValue.json(dict(report.models_seen)),
    }


def skipped(store: str, reason: str) -> MaterializeResult:
    return MaterializeResult(
        asset_key=transplanted_embeddings.key,
        metadata={
            "scope": MetadataValue.text(RUN_SCOPE),
            "store": MetadataValue.text(store),
            "skipped": MetadataValue.text(reason),
            "vectors_transplanted": MetadataValue.int(0),
        },
    )


def transplant_needed(old_vector_store: OldVectorStoreResource, reembed: bool) -> bool:
    """Whether the transplant can seed anything: an old store is configured and cached
    vectors are used."""
    return old_vector_store.description() is not None and not reembed


def transplant_vectors(
    context: AssetExecutionContext,
    settings: RagSettings,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
    old_vector_store: OldVectorStoreResource,
) -> MaterializeResult:
    """Seed the cache with the old store's vectors of the staged texts (see the asset's
    description); the run's figures."""
    store = old_vector_store.description()
    if store is None:
        return skipped("none", "no old vector store configured")
    if embeddings.reembed:
        return skipped(store, "re-embedding forced: stored vectors are not used")
    state = vector_store.state()
    dispatcher = embeddings.dispatcher(settings)
    try:
        dimension = prepare_target(dispatcher, vector_store, state)
    except (TargetConfigurationError, EmbeddingError) as error:
        raise Failure(description=str(error)) from error
    collections, needed = texts_to_embed(state, context.partition_keys, dispatcher.model_key)
    if not needed:
        return skipped(store, "every staged text already has a cached vector")
    target = TargetModel(
        settings.embedding_engine,
        settings.embedding_model,
        dimension,
        old_vector_store.declared_model,
    )
    try:
        source = old_vector_store.open()
    except ChromaStoreError as error:
        raise Failure(description=str(error)) from error
    report = TransplantReport(source.description)
    candidates = find_candidates(source, collections, needed, target, report)
    try:
        fresh = verify_samples(
            source,
            candidates,
            target,
            old_vector_store.samples_per_collection,
            old_vector_store.min_similarity,
            dispatcher.embed,
            report,
        )
    except (TransplantRefused, EmbeddingError) as error:
        raise Failure(description=str(error), metadata=report_metadata(report)) from error
    with vector_store.connect(with_vectors=True) as connection:
        state.store_embeddings(connection, dispatcher.model_key, fresh)
    report.vectors_seeded = state.seed_embeddings(
        dispatcher.model_key,
        transplanted_vectors(source, candidates, target, report),
        TRANSPLANT_ORIGIN,
    )
    context.log.info(
        f"{report.vectors_seeded} vectors transplanted from {report.store}, "
        f"{report.sampled} samples compared"
    )
    return MaterializeResult(
        asset_key=transplanted_embeddings.key,
        metadata={"scope": MetadataValue.text(RUN_SCOPE), **report_metadata(report)},
    )

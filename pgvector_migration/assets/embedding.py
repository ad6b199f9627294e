"""embedded_collections: embed the staged chunks (through the cache) and write each
(file, collection) atomically into document_chunk."""

import itertools

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pgvector_migration.assets.chunking import chunked_documents
from pgvector_migration.assets.common import (
    EMBEDDING_POOL,
    downstream_automation,
    effective_settings,
    write_metadata,
    write_units,
)
from pgvector_migration.assets.transplant import transplanted_embeddings
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.embeddings import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.unit_writer import WriteReport


@asset(
    partitions_def=knowledge_partitions,
    group_name="migration",
    deps=[chunked_documents, transplanted_embeddings],
    pool=EMBEDDING_POOL,
    automation_condition=downstream_automation(),
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
        return MaterializeResult(metadata=write_metadata(WriteReport(), settings))
    report = write_units(
        context,
        partition_key,
        itertools.chain([first_unit], units),
        settings,
        embeddings,
        vector_store,
    )
    return MaterializeResult(
        metadata={
            **write_metadata(report, settings),
            "files_failed": MetadataValue.int(len(report.failures)),
        }
    )

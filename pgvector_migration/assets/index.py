"""vector_index: the ANN index of document_chunk, rebuilt once loading is done."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.assets.system_collections import (
    knowledge_base_collection,
    memory_collections,
)
from pgvector_migration.resources.vector_store import PgVectorResource


@asset(
    group_name="index",
    deps=[embedded_collections, knowledge_base_collection, memory_collections],
    description="idx_document_chunk_vector (ivfflat or hnsw, cosine) and the text-search "
    "index, rebuilt after loading so the index reflects the whole table.",
)
def vector_index(
    context: AssetExecutionContext, vector_store: PgVectorResource
) -> MaterializeResult:
    build = vector_store.rebuild_index()
    context.log.info(
        f"built {build.method} {build.options} over {build.rows} rows in {build.seconds:.1f}s"
    )
    return MaterializeResult(
        metadata={
            "method": MetadataValue.text(build.method),
            "options": MetadataValue.text(build.options),
            "rows": MetadataValue.int(build.rows),
            "build_seconds": MetadataValue.float(round(build.seconds, 3)),
        }
    )

"""document_chunk_table and vector_index: the loaded table as a whole, checked, then indexed."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pgvector_migration.assets.common import markdown_table, table_figure
from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.assets.system_collections import (
    knowledge_base_collection,
    memory_collections,
)
from pgvector_migration.resources.vector_index import rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource


@asset(
    group_name="index",
    deps=[embedded_collections, knowledge_base_collection, memory_collections],
    description="document_chunk as a whole once loading is done: rows per kind of collection. "
    "Its blocking checks (no duplicate chunks, every vector of the column's dimension) keep a "
    "broken load from being indexed.",
)
def document_chunk_table(vector_store: PgVectorResource) -> MaterializeResult:
    kinds = vector_store.rows_by_kind()
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(sum(kinds.values())),
            "by_kind": markdown_table(
                [{"kind": kind, "rows": rows} for kind, rows in sorted(kinds.items())],
                ["kind", "rows"],
            ),
        }
    )


@asset(
    group_name="index",
    deps=[document_chunk_table],
    description="idx_document_chunk_vector (ivfflat or hnsw, cosine) and the text-search "
    "index, rebuilt after loading so the index reflects the whole table.",
)
def vector_index(
    context: AssetExecutionContext, vector_store: PgVectorResource
) -> MaterializeResult:
    build = rebuild_vector_index(vector_store)
    if build.skipped_reason:
        context.log.info(f"index not built: {build.skipped_reason}")
    else:
        context.log.info(
            f"built {build.method} {build.options} over {build.rows} rows in {build.seconds:.1f}s"
            f" with {build.sizing}"
        )
    return MaterializeResult(
        metadata={
            **table_figure(vector_store),
            "method": MetadataValue.text(build.method),
            "options": MetadataValue.text(build.options),
            "rows": MetadataValue.int(build.rows),
            "build_seconds": MetadataValue.float(round(build.seconds, 3)),
            "build_sizing": MetadataValue.text(build.sizing or "-"),
            "concurrently": MetadataValue.bool(build.concurrently),
            "skipped": MetadataValue.text(build.skipped_reason or "no"),
            "text_search_index": MetadataValue.text(build.text_search_skipped_reason or "built"),
        }
    )

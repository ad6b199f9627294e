"""Asset checks a person reads in the UI: per partition after loading, and over the whole table
before the index is built (blocking, so a broken load never gets indexed)."""

from collections.abc import Sequence

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from pgvector_migration.assets.common import markdown_table
from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.assets.index import document_chunk_table
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY, file_collection_name
from pgvector_migration.resources.vector_store import PgVectorResource


def partition_collections(vector_store: PgVectorResource, partition_key: str) -> list[str]:
    file_ids = vector_store.state().inventory_file_ids(partition_key)
    names = [file_collection_name(file_id) for file_id in file_ids]
    return names if partition_key == STANDALONE_PARTITION_KEY else [*names, partition_key]


def duplicates_result(vector_store: PgVectorResource, names: Sequence[str] | None):
    duplicates = vector_store.duplicate_chunks(names)
    return AssetCheckResult(
        passed=not duplicates,
        metadata={
            "duplicate_groups": MetadataValue.int(len(duplicates)),
            "duplicates": markdown_table(
                [
                    {
                        "collection": collection,
                        "file_id": file_id,
                        "copies": copies,
                        "rows": present,
                        "rows_written": expected,
                    }
                    for collection, file_id, copies, present, expected in duplicates
                ],
                ["collection", "file_id", "copies", "rows", "rows_written"],
            ),
        },
    )


def dimensions_result(vector_store: PgVectorResource, names: Sequence[str] | None):
    dimension, mismatches = vector_store.dimension_mismatches(names)
    return AssetCheckResult(
        passed=not mismatches,
        metadata={
            "column_dimension": MetadataValue.int(dimension or 0),
            "rows_with_other_dimensions": MetadataValue.int(sum(n for _, _, n in mismatches)),
            "mismatches": markdown_table(
                [{"collection": c, "dimension": d, "rows": n} for c, d, n in mismatches],
                ["collection", "dimension", "rows"],
            ),
        },
    )


@asset_check(
    asset=embedded_collections,
    partitions_def=knowledge_partitions,
    description="Every file of the partition was processed or deliberately skipped: no file "
    "failed or was unreadable, and every collection this run selected was written.",
)
def all_collections_complete(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    state = vector_store.state()
    failures = state.failures(context.partition_key)
    failed_ids = {failure["file_id"] for failure in failures}
    problems = [dict(f) for f in failures]
    for row in state.completeness_rows(context.partition_key):
        if row["file_id"] in failed_ids:
            continue
        if row["status"] == "unreadable" or (row["selected"] and not row["written"]):
            problems.append(
                {
                    "file_id": row["file_id"],
                    "filename": row["filename"],
                    "stage": row["collection_name"],
                    "error": row["reason"] or "selected but not written",
                }
            )
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "problems": MetadataValue.int(len(problems)),
            "details": markdown_table(problems, ["file_id", "filename", "stage", "error"]),
        },
    )


@asset_check(
    asset=embedded_collections,
    partitions_def=knowledge_partitions,
    description="No chunk of the partition's collections is stored twice: no (collection, "
    "file) holds equal chunks beyond the rows its last write made (equal chunks that Open WebUI "
    "itself writes are fine).",
)
def no_duplicate_chunks(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    return duplicates_result(
        vector_store, partition_collections(vector_store, context.partition_key)
    )


@asset_check(
    asset=embedded_collections,
    partitions_def=knowledge_partitions,
    description="Every vector of the partition's collections has the column's dimension.",
)
def vector_dimensions_match(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    return dimensions_result(
        vector_store, partition_collections(vector_store, context.partition_key)
    )


@asset_check(
    asset=document_chunk_table,
    blocking=True,
    description="No chunk anywhere in document_chunk is stored twice (as no_duplicate_chunks "
    "judges it); blocks the index build.",
)
def table_has_no_duplicate_chunks(vector_store: PgVectorResource) -> AssetCheckResult:
    return duplicates_result(vector_store, None)


@asset_check(
    asset=document_chunk_table,
    blocking=True,
    description="Every vector in document_chunk has the column's dimension; blocks the index "
    "build.",
)
def table_vector_dimensions_match(vector_store: PgVectorResource) -> AssetCheckResult:
    return dimensions_result(vector_store, None)


PARTITION_CHECKS = [all_collections_complete, no_duplicate_chunks, vector_dimensions_match]
TABLE_CHECKS = [table_has_no_duplicate_chunks, table_vector_dimensions_match]

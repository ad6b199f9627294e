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


def run_partitions(context: AssetCheckExecutionContext) -> list[str]:
    """The knowledge partitions the check's run covered. The checks are not partitioned
    themselves: Dagster evaluates a partitioned check only in a run of one partition, and a
    migration run covers many."""
    op_context = context.op_execution_context
    if op_context.has_partition_key or op_context.has_partition_key_range:
        return list(op_context.partition_keys)
    return context.instance.get_dynamic_partitions(knowledge_partitions.name)


def partition_collections(
    vector_store: PgVectorResource, partition_keys: Sequence[str]
) -> list[str]:
    names: set[str] = set()
    for key, file_ids in vector_store.state().inventory_file_ids(partition_keys).items():
        names.update(file_collection_name(file_id) for file_id in file_ids)
        if file_ids and key != STANDALONE_PARTITION_KEY:
            names.add(key)
    return sorted(names)


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
    asset=embedded_collections.key,
    description="Every file of the run's knowledge bases was processed or deliberately "
    "skipped: no file failed or was unreadable, and every collection the run selected was "
    "written. Failed files make it an error (the run itself finishes: the others are written).",
)
def all_collections_complete(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    state = vector_store.state()
    keys = run_partitions(context)
    failures = state.failures(keys)
    failed_ids = {(failure["partition_key"], failure["item_id"]) for failure in failures}
    problems = [dict(f) for f in failures]
    for row in state.completeness_rows(keys):
        if (row["partition_key"], row["file_id"]) in failed_ids:
            continue
        if row["status"] == "unreadable" or (row["selected"] and not row["written"]):
            problems.append(
                {
                    "partition_key": row["partition_key"],
                    "file_id": row["file_id"],
                    "filename": row["filename"],
                    "stage": row["collection_name"],
                    "error": row["reason"] or "selected but not written",
                }
            )
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "partitions_checked": MetadataValue.int(len(keys)),
            "problems": MetadataValue.int(len(problems)),
            "partitions_with_problems": MetadataValue.json(
                sorted({p["partition_key"] for p in problems})
            ),
            "details": markdown_table(
                problems, ["partition_key", "file_id", "filename", "stage", "error"]
            ),
        },
    )


@asset_check(
    asset=embedded_collections.key,
    description="No chunk of the run's collections is stored twice: no (collection, file) "
    "holds equal chunks beyond the rows its last write made (equal chunks that Open WebUI "
    "itself writes are fine).",
)
def no_duplicate_chunks(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    return duplicates_result(
        vector_store, partition_collections(vector_store, run_partitions(context))
    )


@asset_check(
    asset=embedded_collections.key,
    description="Every vector of the run's collections has the column's dimension.",
)
def vector_dimensions_match(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    return dimensions_result(
        vector_store, partition_collections(vector_store, run_partitions(context))
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

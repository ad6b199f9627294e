"""Asset checks a person reads in the UI after a partition's run."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, asset_check

from pgvector_migration.assets.common import markdown_table
from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.vector_store import PgVectorResource


@asset_check(
    asset=embedded_collections,
    partitions_def=knowledge_partitions,
    description="Every file of the partition was processed or deliberately skipped: no file "
    "failed and no selected collection is left without its rows.",
)
def all_files_processed(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    failures = vector_store.state().failures(context.partition_key)
    return AssetCheckResult(
        passed=not failures,
        metadata={
            "files_failed": MetadataValue.int(len(failures)),
            "failures": markdown_table(failures, ["file_id", "filename", "stage", "error"]),
        },
    )

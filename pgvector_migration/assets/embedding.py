"""embedded_collections: embed the staged chunks (through the cache) and write each
(file, collection) atomically into document_chunk."""

import itertools
from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pgvector_migration.assets.chunking import chunked_documents
from pgvector_migration.assets.common import (
    EMBEDDING_POOL,
    FILES_FAILED_TAG,
    add_partition_figures,
    downstream_automation,
    effective_settings,
    markdown_table,
    migration_backfill_policy,
    run_write_metadata,
    write_units,
)
from pgvector_migration.assets.transplant import transplanted_embeddings
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.unit_writer import WriteReport


@asset(
    partitions_def=knowledge_partitions,
    backfill_policy=migration_backfill_policy(),
    group_name="migration",
    deps=[chunked_documents, transplanted_embeddings],
    pool=EMBEDDING_POOL,
    automation_condition=downstream_automation(),
    description="Vectors for the staged chunks (each distinct text embedded once, cached by "
    "model and text hash) written to document_chunk: one transaction per (file, collection) "
    "deletes its old rows and COPYs the new ones. Every knowledge base of the run is embedded "
    "in one stream, so small knowledge bases keep the provider as busy as a large one.",
)
def embedded_collections(
    context: AssetExecutionContext,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    keys = context.partition_keys
    settings = effective_settings(openwebui, embeddings)
    state = vector_store.state()
    started = datetime.now(UTC)
    with state.partition_leases(keys):
        # A file that fails is reported once by the writer, and fails in every partition that
        # selected any of its collections (its own collection is theirs too).
        partitions_of = {
            file_id: sorted({key for partitions in names.values() for key in partitions})
            for file_id, names in state.selected_units(keys).items()
        }
        units = state.staged_units(keys)
        first_unit = next(units, None)
        report = WriteReport()
        if first_unit is not None:
            report = write_units(
                context,
                lambda unit: partitions_of.get(unit.source_id, []),
                itertools.chain([first_unit], units),
                settings,
                embeddings,
                vector_store,
            )
    written = state.units_written_since(keys, started)
    failed: dict[str, list[dict]] = {key: [] for key in keys}
    for failure in state.failures(keys):
        failed[failure["partition_key"]].append(failure)
    own = {
        key: {
            "collections_written": MetadataValue.int(written[key][0]),
            "chunks_written": MetadataValue.int(written[key][1]),
            "files_failed": MetadataValue.int(len({f["item_id"] for f in failed[key]})),
            "failures": markdown_table(failed[key], ["file_id", "filename", "stage", "error"]),
        }
        for key in keys
        if written[key][0] or failed[key]
    }
    files_failed = len({(f["partition_key"], f["item_id"]) for fs in failed.values() for f in fs})
    if files_failed:
        # A run with failed files finishes (the others are written) but says so where runs
        # are listed, not only in the report.
        context.instance.add_run_tags(context.run.run_id, {FILES_FAILED_TAG: str(files_failed)})
    return MaterializeResult(
        metadata={
            **run_write_metadata(report, settings, len(keys)),
            "run_files_failed": MetadataValue.int(files_failed),
            **add_partition_figures(context, own),
        }
    )

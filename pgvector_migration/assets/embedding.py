"""embedded_collections: embed the staged chunks (through the cache) and write each
(file, collection) atomically into document_chunk."""

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue

from pgvector_migration.assets.chunking import chunked_documents
from pgvector_migration.assets.common import (
    FILES_FAILED_TAG,
    add_partition_figures,
    downstream_automation,
    markdown_table,
    run_write_metadata,
    write_units,
)
from pgvector_migration.assets.transplant import transplanted_embeddings
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.migration_state import MigrationState
from pgvector_migration.unit_writer import UnitWriter, WriteReport

embedded_collections = AssetSpec(
    "embedded_collections",
    deps=[chunked_documents, transplanted_embeddings],
    group_name="migration",
    automation_condition=downstream_automation(),
    description="Vectors for the staged chunks (each distinct text embedded once, cached by "
    "model and text hash) written to document_chunk: one transaction per (file, collection) "
    "deletes its old rows and COPYs the new ones. Every knowledge base of the run is embedded "
    "in one stream, so small knowledge bases keep the provider as busy as a large one; with "
    "chunked_documents in the same run, a file is embedded as soon as it is staged.",
)


def failure_partitions(state: MigrationState, keys: Sequence[str]):
    """For each unit, the partitions its failure is recorded under: a file that fails is
    reported once by the writer, and fails in every partition that selected any of its
    collections (its own collection is theirs too)."""
    partitions_of = {
        file_id: sorted({key for partitions in names.values() for key in partitions})
        for file_id, names in state.selected_units(keys).items()
    }
    return lambda unit: partitions_of.get(unit.source_id, [])


def embed_units(
    context: AssetExecutionContext,
    units: Iterable[WriteUnit],
    settings: RagSettings,
    embeddings: EmbeddingResource,
    vector_store: PgVectorResource,
    writer: UnitWriter | None = None,
) -> WriteReport:
    """Embed and write the run's units (the staged ones, or those handed over as they are
    staged); nothing is prepared when there is no unit."""
    units = iter(units)
    first_unit = next(units, None)
    if first_unit is None:
        return WriteReport()
    return write_units(
        context,
        failure_partitions(vector_store.state(), context.partition_keys),
        itertools.chain([first_unit], units),
        settings,
        embeddings,
        vector_store,
        writer,
    )


def writing_metadata(
    context: AssetExecutionContext,
    state: MigrationState,
    report: WriteReport,
    settings: RagSettings,
    vector_store: PgVectorResource,
    started: datetime,
) -> MaterializeResult:
    """Each partition's figures (read from the ledger and the failures), the run's tag when
    files failed, and the run's result."""
    keys = context.partition_keys
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
        asset_key=embedded_collections.key,
        metadata={
            **run_write_metadata(report, settings, vector_store, len(keys)),
            "run_files_failed": MetadataValue.int(files_failed),
            **add_partition_figures(context, own, embedded_collections.key),
        },
    )

"""chunked_documents: load, split and stage the chunks of every selected (file, collection)."""

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from dagster import AssetExecutionContext, AssetSpec, Config, MaterializeResult, MetadataValue
from pydantic import Field

from pgvector_migration.assets.common import (
    add_partition_figures,
    downstream_automation,
    markdown_table,
)
from pgvector_migration.assets.completeness import completeness_report
from pgvector_migration.pipeline.planning import FilePlan, plan_files, planning_workers
from pgvector_migration.pipeline.records import SourceFile, WriteUnit
from pgvector_migration.pipeline.text_source import TextSource, fallback_note
from pgvector_migration.resources.extraction_http import send_over_http
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.migration_state import MigrationState
from pgvector_migration.unit_writer import postgres_reason


class ChunkingConfig(Config):
    workers: int = Field(
        default=0,
        description="Processes that load and split uploads at once; 0 means one per CPU core. "
        "Stored text (text_source 'stored') is always split in one process.",
    )
    text_source: TextSource = Field(
        default=TextSource.UPLOAD,
        description="Where file text comes from ('upload', 'upload-only' or 'stored'); must "
        "match completeness_report's setting (the CLI sets both).",
    )


chunked_documents = AssetSpec(
    "chunked_documents",
    deps=[completeness_report],
    group_name="migration",
    automation_condition=downstream_automation(),
    description="Chunks of every (file, collection) the completeness report selected, made "
    "with Open WebUI's loader, splitter and metadata, staged in pgvector_migration.staged_chunk. "
    "A file in several knowledge bases of the run is loaded once. A file that fails is "
    "recorded with its reason and never stops the others. Materialized by the migrate_files "
    "step, which embeds each file's units as soon as they are staged when embedded_collections "
    "is in the same run.",
)


def chunking_metadata(
    context: AssetExecutionContext, outcome: "StagingOutcome"
) -> MaterializeResult:
    """Each partition's chunking figures, and the run's result."""
    keys = context.partition_keys
    own = {}
    for key in keys:
        failures = [row for row in outcome.failures if key in row["partitions"]]
        from_stored = [row for row in outcome.from_stored if key in row["partitions"]]
        if not (outcome.files[key] or failures):
            continue  # nothing chunked or failed: the run's figures say so
        own[key] = {
            "files_chunked": MetadataValue.int(outcome.files[key]),
            "chunks_staged": MetadataValue.int(outcome.chunks[key]),
            "files_failed": MetadataValue.int(len(failures)),
            "files_from_stored_text": MetadataValue.int(len(from_stored)),
            "stored_text_files": markdown_table(from_stored, ["file_id", "filename", "reason"]),
            "failures": markdown_table(failures, ["file_id", "filename", "error"]),
        }
    return MaterializeResult(
        asset_key=chunked_documents.key,
        metadata={
            "partitions_in_run": MetadataValue.int(len(keys)),
            "run_files_chunked": MetadataValue.int(sum(outcome.files.values())),
            "run_files_failed": MetadataValue.int(len(outcome.failures)),
            **add_partition_figures(context, own, chunked_documents.key),
        },
    )


@dataclass
class StagingOutcome:
    """What chunking did, per partition of the run (a file counts in each partition holding it)."""

    files: Counter = field(default_factory=Counter)
    chunks: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    from_stored: list[dict] = field(default_factory=list)


def staged_units_of(file: SourceFile, plan: FilePlan) -> list[WriteUnit]:
    """The units one file's plan staged, as the writer would read them back from staging (a
    collection without chunks stages no row, so it is no unit)."""
    return [
        WriteUnit(
            name, file.id, file.filename, plan.content_hash, plan.settings_fingerprint, chunks
        )
        for name, chunks in plan.chunks_by_collection.items()
        if chunks
    ]


def stage_selected(
    context: AssetExecutionContext,
    config: ChunkingConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    state: MigrationState,
    settings: RagSettings,
    on_staged: Callable[[list[WriteUnit]], None] | None = None,
) -> StagingOutcome:
    """Load, split and stage every selected file of the run's partitions; each file's units
    are handed to `on_staged` once their chunks are committed to staging (so a writer can
    embed them while later files load)."""
    selected = state.selected_units(context.partition_keys)
    outcome = StagingOutcome()
    fetch = "missing-content" if config.text_source is TextSource.STORED else "always"
    files = (
        (file, list(selected[file.id]))
        for file in openwebui.iter_files(list(selected), fetch_s3=fetch)
    )
    workers = planning_workers(config.text_source, len(selected), config.workers, os.cpu_count())
    with vector_store.connect() as connection:

        def failed(file, partitions: list[str], message: str) -> None:
            for key in partitions:
                state.record_failure(key, file.id, file.filename, "chunking", message)
            outcome.failures.append(
                {
                    "file_id": file.id,
                    "filename": file.filename,
                    "error": message,
                    "partitions": partitions,
                }
            )
            context.log.warning(f"file {file.id} ({file.filename}): {message}")

        for file, plan, message in plan_files(
            files, settings, config.text_source, workers, send_over_http
        ):
            partitions = sorted({k for keys in selected[file.id].values() for k in keys})
            if plan is None:
                failed(file, partitions, message)
                continue
            try:
                state.stage_chunks(
                    connection,
                    file.id,
                    plan.chunks_by_collection,
                    plan.content_hash,
                    plan.settings_fingerprint,
                )
            except psycopg.Error as error:
                # Rolled back: one file's rows never stop the others, unless the connection
                # itself is gone.
                if connection.broken:
                    raise
                failed(file, partitions, f"staging its chunks: {postgres_reason(error)}")
                continue
            if plan.fallback_reason:
                note = fallback_note(plan.fallback_reason)
                state.annotate_completeness(connection, partitions, file.id, note)
                outcome.from_stored.append(
                    {
                        "file_id": file.id,
                        "filename": file.filename,
                        "reason": note,
                        "partitions": partitions,
                    }
                )
                context.log.warning(f"file {file.id} ({file.filename}): {note}")
            for name, chunks in plan.chunks_by_collection.items():
                for key in selected[file.id].get(name, []):
                    outcome.chunks[key] += len(chunks)
            outcome.files.update(partitions)
            if on_staged is not None:
                on_staged(staged_units_of(file, plan))
    return outcome

"""What a migration would do to each file, assessed in this process with reads only.

A dry run must work for a role that may only look (CONNECT, USAGE, SELECT), so it runs the
completeness assessment itself instead of the `assess_knowledge_base` job, whose assets record
the inventory and the report in our tables."""

from __future__ import annotations

from collections.abc import Sequence

from pgvector_migration.pipeline.completeness import UnitStatus
from pgvector_migration.pipeline.file_assessment import assess_file
from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY, file_collection_name
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.resources.migration_state import MigrationState
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.summary import FileOutcome, partition_outcomes

NEVER_SELECTED = (UnitStatus.UNSUPPORTED, UnitStatus.UNREADABLE)


def assess_partition(
    key: str,
    file_ids: Sequence[str],
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    state: MigrationState,
    settings: RagSettings,
    overwrite: bool,
    text_source: TextSource,
) -> list[FileOutcome]:
    """One outcome per file of the partition (limited to `file_ids` when given): what the
    migration's completeness report would select, and why a file would be skipped."""
    partition_files, _ = openwebui.partition_file_ids(key)
    if file_ids:
        partition_files = [file_id for file_id in partition_files if file_id in set(file_ids)]
    collection_names = [file_collection_name(file_id) for file_id in partition_files]
    if partition_files and key != STANDALONE_PARTITION_KEY:
        collection_names.append(key)
    present = vector_store.present_rows(collection_names)
    records = state.written_records(collection_names)
    rows = []
    fetch = "missing-content" if text_source is TextSource.STORED else "always"
    for file in openwebui.iter_files(partition_files, fetch_s3=fetch):
        names = file.collection_names(key)
        for _, name, assessment in assess_file(
            file, names, present, records, settings, text_source
        ):
            selected = assessment.status.needs_work or (
                overwrite and assessment.status not in NEVER_SELECTED
            )
            rows.append(
                {
                    "file_id": file.id,
                    "filename": file.filename,
                    "collection_name": name,
                    "status": str(assessment.status),
                    "reason": assessment.reason,
                    "selected": selected,
                    "written": False,
                }
            )
    return partition_outcomes(rows, [], dry_run=True)

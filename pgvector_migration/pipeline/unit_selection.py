"""Which (file, collection) units a run of knowledge partitions covers and rewrites, and which
of them its report shows: the decisions of the completeness report, made without reading or
writing anything."""

from __future__ import annotations

from collections.abc import Mapping

from pgvector_migration.pipeline.completeness import Assessment, UnitStatus
from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY, file_collection_name

# A complete unit is shown in a report only among its first rows; the others are what to read.
COMPLETE_ROWS_SHOWN = 20


def partitions_by_file(file_ids: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The partitions of the run holding each file, in the run's partition order."""
    partitions_of: dict[str, list[str]] = {}
    for key, ids in file_ids.items():
        for file_id in ids:
            partitions_of.setdefault(file_id, []).append(key)
    return partitions_of


def run_collection_names(file_ids: Mapping[str, list[str]], keys: list[str]) -> list[str]:
    """Every collection the run's files are written to: each file's own collection and each
    knowledge base of the run that holds files."""
    names = {file_collection_name(file_id) for ids in file_ids.values() for file_id in ids}
    names.update(k for k in keys if file_ids[k] and k != STANDALONE_PARTITION_KEY)
    return sorted(names)


def is_selected(assessment: Assessment, overwrite: bool, written_recently: bool) -> bool:
    """Whether the run rewrites the unit: when it needs work, or when overwriting, unless it
    cannot be written at all or is complete and was written after the overwrite's cut-off."""
    if assessment.status.needs_work:
        return True
    return (
        overwrite
        and assessment.status not in (UnitStatus.UNSUPPORTED, UnitStatus.UNREADABLE)
        and not (assessment.status == UnitStatus.COMPLETE and written_recently)
    )


def shows_in_preview(assessment: Assessment, rows_shown: int, limit: int) -> bool:
    """Whether the report's preview, already `rows_shown` long, gets this unit's row."""
    return rows_shown < limit and (
        assessment.status != UnitStatus.COMPLETE or rows_shown < COMPLETE_ROWS_SHOWN
    )

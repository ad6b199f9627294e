"""Which file rows have lost their source in Open WebUI, and only those we may delete.

A collection is ours to prune when it is a file collection (`file-{id}`), a current knowledge
base's collection, or a collection we wrote ourselves; `web-search-*`, hash-named and any other
collection is never touched."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pgvector_migration.pipeline.records import (
    FILE_COLLECTION_PREFIX,
    KNOWLEDGE_BASES_COLLECTION,
    MEMORY_COLLECTION_PREFIX,
)


@dataclass(frozen=True)
class Orphan:
    """Rows to delete: a whole collection (`file_id` None) or one file's rows in it."""

    collection_name: str
    file_id: str | None
    rows: int
    reason: str


def find_orphans(
    owners: Iterable[tuple[str, str | None, int]],
    existing_file_ids: set[str],
    files_by_knowledge: Mapping[str, list[str]],
    knowledge_ids: set[str],
    collections_we_wrote: set[str],
) -> list[Orphan]:
    """`owners` are (collection, file id from metadata, rows) groups of document_chunk; a
    collection that goes as a whole is listed once with all its rows."""
    orphans: dict[tuple[str, str | None], Orphan] = {}

    def add(collection: str, file_id: str | None, rows: int, reason: str) -> None:
        known = orphans.get((collection, file_id))
        total = rows + (known.rows if known else 0)
        orphans[(collection, file_id)] = Orphan(collection, file_id, total, reason)

    for collection, file_id, rows in owners:
        if collection == KNOWLEDGE_BASES_COLLECTION or collection.startswith(
            MEMORY_COLLECTION_PREFIX
        ):
            continue
        if collection.startswith(FILE_COLLECTION_PREFIX):
            if collection.removeprefix(FILE_COLLECTION_PREFIX) not in existing_file_ids:
                add(collection, None, rows, "the file was deleted")
        elif collection in knowledge_ids:
            if file_id not in files_by_knowledge.get(collection, []):
                add(collection, file_id, rows, "the file is no longer in this knowledge base")
        elif collection in collections_we_wrote:
            add(collection, None, rows, "the knowledge base was deleted")
    return list(orphans.values())


def system_orphans(
    knowledge_base_row_ids: Iterable[str],
    knowledge_ids: set[str],
    memory_collection_rows: Mapping[str, int],
    memory_user_ids: set[str],
) -> list[Orphan]:
    """What pruning the system collections deletes: `knowledge-bases` rows of deleted
    knowledge bases (`file_id` holds the row's knowledge id) and the memory collections of
    users who have no memories left."""
    orphans = [
        Orphan(KNOWLEDGE_BASES_COLLECTION, row_id, 1, "the knowledge base was deleted")
        for row_id in sorted(set(knowledge_base_row_ids) - knowledge_ids)
    ]
    orphans += [
        Orphan(name, None, rows, "the user has no memories")
        for name, rows in sorted(memory_collection_rows.items())
        if name.removeprefix(MEMORY_COLLECTION_PREFIX) not in memory_user_ids
    ]
    return orphans


DEFAULT_MAX_PRUNE_SHARE = 0.5


@dataclass(frozen=True)
class PrunePlan:
    """What a prune would delete, against the size of document_chunk and whether the source
    has anything at all, so a prune pointed at the wrong (or an empty) Open WebUI database is
    refused before it deletes the table."""

    orphans: list[Orphan]
    table_rows: int
    source_is_empty: bool

    @property
    def rows(self) -> int:
        return sum(orphan.rows for orphan in self.orphans)

    def refusal(self, max_share: float) -> str | None:
        """Why this plan must not run without --force-prune, or None."""
        if not self.rows:
            return None
        share = self.rows / max(self.table_rows, 1)
        deleting = (
            f"pruning would delete {self.rows} of the {self.table_rows} rows of document_chunk "
            f"({share:.0%})"
        )
        if self.source_is_empty:
            return (
                f"{deleting}, yet the Open WebUI database has no files, knowledge bases or "
                "memories: check DATABASE_URL and DATA_DIR; --force-prune deletes them anyway"
            )
        if share > max_share:
            return (
                f"{deleting}, more than --prune-max-share {max_share:g}: check that DATABASE_URL "
                "is the Open WebUI database this table belongs to (see --dry-run --prune); "
                "--force-prune deletes them anyway"
            )
        return None

    def lines(self) -> list[str]:
        """The plan for a person: one line per collection (or file in it) that would go."""
        lines = [f"prune plan: {self.rows} of {self.table_rows} rows of document_chunk would go"]
        for orphan in self.orphans:
            scope = "" if orphan.file_id is None else f" ({orphan.file_id})"
            lines.append(
                f"  would delete {orphan.rows} rows of {orphan.collection_name}{scope}: "
                f"{orphan.reason}"
            )
        return lines

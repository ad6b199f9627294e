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

"""Which files each knowledge base lists, and so which files each partition covers.

Open WebUI records membership in `knowledge_file` (0.6.41+) or in `knowledge.data`; either way
the source may list files that are gone or rows of knowledge bases that were deleted. These
functions sort the (knowledge id, file id) pairs the source holds into what a migration needs,
without reading anything themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY


@dataclass(frozen=True)
class KnowledgeMembership:
    """Which files each existing knowledge base lists; (knowledge id, file id) pairs listed by
    an existing knowledge base whose file row is gone; and pairs left behind by a deleted
    knowledge base (such a file belongs to no knowledge base, so to the standalone partition)."""

    files_by_knowledge: dict[str, list[str]]
    dangling: list[tuple[str, str]]
    of_deleted_knowledge: list[tuple[str, str]]
    ordered_file_ids: list[str]
    knowledge_ids: frozenset[str]

    @property
    def file_ids(self) -> frozenset[str]:
        return frozenset(self.ordered_file_ids)


def knowledge_membership(
    pairs: Iterable[tuple[str, str]], ordered_file_ids: list[str], knowledge_ids: Iterable[str]
) -> KnowledgeMembership:
    """Sort the source's (knowledge id, file id) pairs, in the source's order, into listed
    files (each once per knowledge base), dangling pairs and pairs of deleted knowledge bases."""
    existing = set(ordered_file_ids)
    known = set(knowledge_ids)
    files_by_knowledge: dict[str, list[str]] = {}
    dangling, of_deleted = [], []
    for knowledge_id, file_id in pairs:
        if knowledge_id not in known:
            of_deleted.append((knowledge_id, file_id))
        elif file_id in existing:
            listed = files_by_knowledge.setdefault(knowledge_id, [])
            if file_id not in listed:
                listed.append(file_id)
        else:
            dangling.append((knowledge_id, file_id))
    return KnowledgeMembership(
        files_by_knowledge, dangling, of_deleted, ordered_file_ids, frozenset(known)
    )


def partition_notes(membership: KnowledgeMembership, partition_key: str) -> list[tuple[str, str]]:
    """What the source holds that no file outcome shows, as (id, note): a knowledge base
    listing a file that is gone, and (standalone partition) rows of deleted knowledge bases,
    whose files are migrated as files in no knowledge base."""
    if partition_key != STANDALONE_PARTITION_KEY:
        return [
            (file_id, f"knowledge base {knowledge_id} lists file {file_id}, which is gone")
            for knowledge_id, file_id in membership.dangling
            if knowledge_id == partition_key
        ]
    existing = membership.file_ids
    listed = {file_id for ids in membership.files_by_knowledge.values() for file_id in ids}

    def fate(file_id: str) -> str:
        if file_id not in existing:
            return "is gone too; nothing to migrate"
        if file_id in listed:
            return "is still in other knowledge bases, and migrated with them"
        return "is in no knowledge base now, so it is migrated to its own collection only"

    return [
        (
            file_id,
            f"knowledge_file row of deleted knowledge base {knowledge_id}: file {file_id} "
            f"{fate(file_id)}",
        )
        for knowledge_id, file_id in membership.of_deleted_knowledge
    ]


def partition_file_ids(
    membership: KnowledgeMembership, partition_key: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """The file ids one partition covers, and the dangling ids its knowledge base lists; the
    standalone partition holds every file that no knowledge base lists. The caller checks
    that the knowledge base exists."""
    if partition_key == STANDALONE_PARTITION_KEY:
        in_knowledge = {
            file_id for ids in membership.files_by_knowledge.values() for file_id in ids
        }
        return [f for f in membership.ordered_file_ids if f not in in_knowledge], []
    dangling = [pair for pair in membership.dangling if pair[0] == partition_key]
    return membership.files_by_knowledge.get(partition_key, []), dangling

"""Deciding what a rebuild of the `knowledge-bases` and `user-memory-{user_id}` collections
does: which source rows become units and which cannot be written, how each unit stands
against what is recorded, which units are written, and which collections or rows are left
over. The assets read the sources and write the results; every decision is made here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgvector_migration.pipeline.completeness import Assessment, UnitStatus, assess_recorded
from pgvector_migration.pipeline.metadata import sanitize_text
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.pipeline.source_rows import knowledge_base_problem, memory_problem
from pgvector_migration.pipeline.system_collections import (
    KnowledgeBase,
    Memory,
    knowledge_base_unit,
    memory_collection_name,
    memory_units,
)

# (source id, label, reason) of a source row that cannot be written.
Unusable = tuple[str, str, str]
PREVIEW_COLUMNS = ("collection", "source", "status", "rows", "present", "reason")


@dataclass(frozen=True)
class SystemUnits:
    """The units a rebuild writes, the rows that cannot be written, and (for memories) the
    collections to keep although none of their memories could be written."""

    units: list[WriteUnit]
    unusable: list[Unusable]
    kept_collections: frozenset[str] = frozenset()


def knowledge_base_units(
    knowledge_bases: Sequence[KnowledgeBase], settings_fingerprint: str
) -> SystemUnits:
    """One unit per writable knowledge base; each unwritable one with its reason."""
    problems = {knowledge.id: knowledge_base_problem(knowledge) for knowledge in knowledge_bases}
    return SystemUnits(
        [
            knowledge_base_unit(knowledge, settings_fingerprint)
            for knowledge in knowledge_bases
            if not problems[knowledge.id]
        ],
        [
            (knowledge.id, sanitize_text(knowledge.name or knowledge.id), problems[knowledge.id])
            for knowledge in knowledge_bases
            if problems[knowledge.id]
        ],
    )


def memory_collection_units(memories: Sequence[Memory], settings_fingerprint: str) -> SystemUnits:
    """One unit per user with writable memories; each unwritable memory with its reason. A
    user whose memories all failed keeps the collection until the rows are repaired."""
    problems = {memory.id: memory_problem(memory) for memory in memories}
    return SystemUnits(
        memory_units(
            [memory for memory in memories if not problems[memory.id]], settings_fingerprint
        ),
        [
            (memory.id, f"memory {memory.id}", problems[memory.id])
            for memory in memories
            if problems[memory.id]
        ],
        frozenset(
            memory_collection_name(memory.user_id)
            for memory in memories
            if problems[memory.id] and isinstance(memory.user_id, str)
        ),
    )


def leftover_knowledge_rows(
    present: Iterable[str], knowledge_bases: Sequence[KnowledgeBase]
) -> list[str]:
    """The rows of `knowledge-bases` whose knowledge base was deleted, in id order."""
    return sorted(set(present) - {knowledge.id for knowledge in knowledge_bases})


def leftover_memory_collections(present: Iterable[str], planned: SystemUnits) -> list[str]:
    """The `user-memory-*` collections no user's memories call for any more."""
    wanted = {unit.collection_name for unit in planned.units} | planned.kept_collections
    return [name for name in present if name not in wanted]


def assess_units(
    units: Sequence[WriteUnit],
    records: Mapping[tuple[str, str], Any],
    present_count: Callable[[WriteUnit], int],
    settings_fingerprint: str,
    embedding_model: str,
) -> list[tuple[WriteUnit, Assessment]]:
    """How each unit stands against its rows and what was recorded when it was written."""
    return [
        (
            unit,
            assess_recorded(
                present_count(unit),
                records.get((unit.collection_name, unit.source_id)),
                unit.content_hash,
                settings_fingerprint,
                embedding_model,
                len(unit.chunks),
            ),
        )
        for unit in units
    ]


def units_to_write(
    assessed: Sequence[tuple[WriteUnit, Assessment]], overwrite: bool
) -> list[WriteUnit]:
    """Every unit when overwriting, else those that are not complete."""
    return [unit for unit, assessment in assessed if overwrite or assessment.status.needs_work]


def rebuild_preview(
    assessed: Sequence[tuple[WriteUnit, Assessment]], unusable: Sequence[Unusable]
) -> list[dict[str, Any]]:
    """One row per unit and per unusable source row, for the report table."""
    preview: list[dict[str, Any]] = [
        {
            "collection": unit.collection_name,
            "source": unit.label,
            "status": str(assessment.status),
            "rows": len(unit.chunks),
            "present": assessment.present_chunks,
            "reason": assessment.reason,
        }
        for unit, assessment in assessed
    ]
    preview += [
        {"collection": "", "source": label, "status": "failed", "reason": reason}
        for _, label, reason in unusable
    ]
    return preview


def complete_before(assessed: Sequence[tuple[WriteUnit, Assessment]]) -> int:
    return sum(1 for _, assessment in assessed if assessment.status == UnitStatus.COMPLETE)

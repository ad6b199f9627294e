"""The collections Open WebUI keeps next to the file collections: `knowledge-bases` (one row per
knowledge base, used to pick knowledge bases by meaning) and `user-memory-{user_id}` (one row per
memory). Their rows are rebuilt exactly as Open WebUI writes them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pgvector_migration.pipeline.ids import text_sha256
from pgvector_migration.pipeline.metadata import stored_form
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    MEMORY_COLLECTION_PREFIX,
    Chunk,
    WriteUnit,
)


@dataclass(frozen=True)
class KnowledgeBase:
    """A `knowledge` row; `name` is None only in a corrupt row (see `source_rows`)."""

    id: str
    name: str | None
    description: str | None


@dataclass(frozen=True)
class Memory:
    """A `memory` row; `user_id` and `content` are None only in a corrupt row."""

    id: str
    user_id: str | None
    content: str | None
    type: str | None
    path: str | None
    created_at: int | None
    updated_at: int | None


def knowledge_base_text(name: str, description: str | None) -> str:
    """Open WebUI embeds a knowledge base as its name, a blank line and its description."""
    return f"{name}\n\n{description}" if description else name


def clean_memory_path(path: str | None) -> str | None:
    """Open WebUI's normalised memory path: slashes collapsed and trimmed, empty as None.

    Open WebUI refuses invalid paths when a memory is saved, so stored ones are valid; an invalid
    one found anyway is kept as it is rather than dropping the memory."""
    value = re.sub(r"/+", "/", (path or "").strip().strip("/"))
    return value or None


def memory_text(content: str, path: str | None) -> str:
    """The text Open WebUI stores and embeds for a memory: its path on the first line."""
    cleaned = clean_memory_path(path)
    return f"{cleaned}\n{content}" if cleaned else content


def memory_collection_name(user_id: str) -> str:
    return f"{MEMORY_COLLECTION_PREFIX}{user_id}"


def knowledge_base_unit(knowledge: KnowledgeBase, settings_fingerprint: str) -> WriteUnit:
    """One knowledge base's row in `knowledge-bases`; its id is the knowledge id."""
    text = knowledge_base_text(knowledge.name, knowledge.description)
    chunk = Chunk(
        id=knowledge.id,
        collection_name=KNOWLEDGE_BASES_COLLECTION,
        file_id=knowledge.id,
        position=0,
        text=text,
        metadata=stored_form({"knowledge_base_id": knowledge.id}),
        embed_verbatim=True,
    )
    return WriteUnit(
        KNOWLEDGE_BASES_COLLECTION,
        knowledge.id,
        knowledge.name,
        text_sha256(text),
        settings_fingerprint,
        [chunk],
    )


def memory_units(memories: Iterable[Memory], settings_fingerprint: str) -> list[WriteUnit]:
    """One unit per user: the whole `user-memory-{user_id}` collection, rows in memory order.

    The content hash covers every memory's id, text and metadata, so adding, editing or deleting
    one memory makes the collection stale and the rewrite leaves no deleted memory behind."""
    by_user: dict[str, list[Chunk]] = {}
    for memory in memories:
        chunks = by_user.setdefault(memory.user_id, [])
        chunks.append(
            Chunk(
                id=memory.id,
                collection_name=memory_collection_name(memory.user_id),
                file_id=memory.user_id,
                position=len(chunks),
                text=memory_text(memory.content, memory.path),
                metadata=stored_form(
                    {
                        "created_at": memory.created_at,
                        "updated_at": memory.updated_at,
                        "type": memory.type,
                        "path": memory.path,
                    }
                ),
                embed_verbatim=True,
            )
        )
    units = []
    for user_id, chunks in by_user.items():
        digest = text_sha256(
            json.dumps([[c.id, c.text, c.metadata] for c in chunks], sort_keys=True)
        )
        units.append(
            WriteUnit(
                memory_collection_name(user_id),
                user_id,
                f"memories of user {user_id}",
                digest,
                settings_fingerprint,
                chunks,
            )
        )
    return units

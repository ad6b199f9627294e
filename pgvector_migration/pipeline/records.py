"""The records that flow through the pipeline: files, documents and chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STANDALONE_PARTITION_KEY = "standalone-files"
KNOWLEDGE_BASES_COLLECTION = "knowledge-bases"
MEMORY_COLLECTION_PREFIX = "user-memory-"


FILE_COLLECTION_PREFIX = "file-"


def file_collection_name(file_id: str) -> str:
    """Open WebUI's per-file collection."""
    return f"{FILE_COLLECTION_PREFIX}{file_id}"


@dataclass(frozen=True)
class SourceFile:
    """One row of Open WebUI's `file` table, with where its bytes are on this machine.

    `upload_path` is the resolved local path (None when no readable upload exists) and
    `upload_problem` says why not, when it matters; `oversize` says why an upload that must be
    read is over the configured size limit, if it is; `source_problem` says why the row itself
    cannot be migrated (see `pipeline.source_rows`); `notes` are worth reporting without
    stopping the file.
    """

    id: str
    user_id: str | None
    filename: str
    stored_path: str | None
    content_type: str | None
    meta: dict[str, Any]
    data: dict[str, Any]
    content_hash_column: str | None
    knowledge_ids: tuple[str, ...] = ()
    upload_path: Path | None = None
    upload_problem: str | None = None
    oversize: str | None = None
    source_problem: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def stored_content(self) -> str | None:
        """The extracted text Open WebUI kept in `file.data.content`, if any."""
        content = self.data.get("content")
        return content if isinstance(content, str) else None

    def collection_names(self, partition_key: str) -> list[str]:
        """The collections this partition must fill for the file: its own and the partition's."""
        names = [file_collection_name(self.id)]
        if partition_key != STANDALONE_PARTITION_KEY:
            names.append(partition_key)
        return names


@dataclass
class TextDocument:
    """A piece of text with metadata, as a loader or splitter hands it on."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One row of `document_chunk`, without its vector yet."""

    id: str
    collection_name: str
    file_id: str
    position: int
    text: str
    metadata: dict[str, Any]
    embed_verbatim: bool = False

    @property
    def embedding_input(self) -> str:
        """The text Open WebUI sends to the embedding model: for document chunks newlines
        become spaces; knowledge-base and memory texts are sent as they are."""
        return self.text if self.embed_verbatim else document_embedding_input(self.text)


def document_embedding_input(text: str) -> str:
    """What Open WebUI embeds for a document chunk: its text with newlines as spaces."""
    return text.replace("\n", " ")


@dataclass(frozen=True)
class WriteUnit:
    """What one transaction replaces: the rows of one source (a file, a knowledge base, a
    user's memories) in one collection."""

    collection_name: str
    source_id: str
    label: str
    content_hash: str
    settings_fingerprint: str
    chunks: list[Chunk]


def owns_whole_collection(collection_name: str, source_id: str) -> bool:
    """Whether one source owns every row of the collection (a file's own collection, a user's
    memory collection), so replacing it replaces the whole collection."""
    return collection_name == file_collection_name(source_id) or (
        collection_name == f"{MEMORY_COLLECTION_PREFIX}{source_id}"
    )

"""The records that flow through the pipeline: files, documents and chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STANDALONE_PARTITION_KEY = "standalone-files"


def file_collection_name(file_id: str) -> str:
    """Open WebUI's per-file collection."""
    return f"file-{file_id}"


@dataclass(frozen=True)
class SourceFile:
    """One row of Open WebUI's `file` table, with where its bytes are on this machine.

    `upload_path` is the resolved local path (None when no readable upload exists) and
    `upload_problem` says why not, when it matters.
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

    @property
    def embedding_input(self) -> str:
        """The text Open WebUI sends to the embedding model: newlines become spaces."""
        return self.text.replace("\n", " ")

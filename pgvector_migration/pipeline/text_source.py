"""Where a file's text comes from: its upload, read as Open WebUI's upload pipeline reads it, or
the text Open WebUI stored in `file.data.content`.

Open WebUI builds a file's chunks from the documents its loader makes at upload time (one per PDF
page with page metadata, one per CSV row, unstructured elements for .rst), so the upload is the
default. The stored text is one string per file: it reproduces neither those documents nor
their metadata, and is used only when the upload cannot be read, or when asked for.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pgvector_migration.pipeline.records import SourceFile, TextDocument

UPLOAD_DIGEST_CHUNK_BYTES = 1 << 20


class TextSource(enum.StrEnum):
    """Which text a run builds chunks from."""

    UPLOAD = "upload"
    """The upload, with Open WebUI's upload-time loader; the stored text when the upload is
    missing, refused by the extraction engine or unreadable (the default)."""
    UPLOAD_ONLY = "upload-only"
    """The upload or nothing: a file whose upload cannot be read fails (`--reextract`)."""
    STORED = "stored"
    """`file.data.content`, the upload only when no text was stored (`--stored-text`: fast,
    works without the uploads folder, but one document per file, without page or row
    metadata)."""


class TextOrigin(enum.StrEnum):
    """Where one file's text actually came from in a run."""

    UPLOAD = "upload"
    STORED = "stored"


@dataclass(frozen=True)
class SourceText:
    """A file's documents, the full text Open WebUI hashes, where they came from, and why the
    stored text was used when the upload was wanted."""

    documents: list[TextDocument]
    text: str
    origin: TextOrigin
    fallback_reason: str | None = None


def upload_digest(path: Path) -> str:
    """A short digest of the upload's bytes: a unit written from an upload is current as long
    as these bytes and the settings are, without parsing the upload again."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(UPLOAD_DIGEST_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()[:16]


def source_fingerprint(splitting_fingerprint: str, origin: TextOrigin, file: SourceFile) -> str:
    """What a written unit is checked against: the settings that shape its chunks and, for text
    read from an upload, the upload's bytes."""
    if origin is TextOrigin.STORED or file.upload_path is None:
        return splitting_fingerprint
    return f"{splitting_fingerprint}+upload:{upload_digest(file.upload_path)}"


FALLBACK_NOTE_PREFIX = "from Open WebUI's stored text, not the upload: "


def fallback_note(reason: str) -> str:
    """How a file built from its stored text is described in reports."""
    return f"{FALLBACK_NOTE_PREFIX}{reason}"


def with_note(reason: str, note: str) -> str:
    """A completeness reason with a note added (once)."""
    if note in reason:
        return reason
    return f"{reason}; {note}" if reason else note


def fallback_of(reason: str) -> str | None:
    """The stored-text note inside a completeness reason, if there is one."""
    start = reason.find(FALLBACK_NOTE_PREFIX)
    return reason[start:] if start >= 0 else None

"""Deterministic chunk ids, so that re-running a migration replaces rows instead of adding."""

from __future__ import annotations

import hashlib
import uuid

CHUNK_ID_NAMESPACE = uuid.UUID("6f1c1b0e-5d7a-4c1e-9a43-2f1f3c9b7e21")


def text_sha256(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes, the digest Open WebUI stores as `hash`."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def text_key(text: str) -> bytes:
    """The embedding cache's key of a text: the raw sha256 of what is sent to the engine."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def chunk_id_for(collection_name: str, file_id: str, position: int, text: str) -> str:
    """The id of one chunk: a uuid (like Open WebUI's own ids) derived from where it belongs.

    The same collection, file, position and text always give the same id; a chunk of the same
    file in another collection gets another id, as `document_chunk.id` is one key for all
    collections.
    """
    name = "\x1f".join((collection_name, file_id, str(position), text_sha256(text)))
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, name))

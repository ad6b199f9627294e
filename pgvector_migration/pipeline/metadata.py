"""Chunk metadata in the exact shape Open WebUI stores in `document_chunk.vmetadata`."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from pgvector_migration.pipeline.records import SourceFile

# Loader fields Open WebUI drops because they repeat the content or are too large to store.
EXCLUDED_KEYS = frozenset(
    {
        "content",
        "pages",
        "tables",
        "paragraphs",
        "sections",
        "figures",
        "documents",
        "keyValuePairs",
        "styles",
        "languages",
    }
)

_SURROGATES = re.compile("[\ud800-\udfff]")


def sanitize_text(value: str) -> str:
    """Drop NUL bytes and lone surrogates, which PostgreSQL text cannot hold."""
    if "\x00" not in value and not _SURROGATES.search(value):
        return value
    return _SURROGATES.sub("", value.replace("\x00", ""))


def holds_invalid_text(value: str) -> bool:
    """Whether PostgreSQL text (or a jsonb key) cannot hold `value` as it is: a NUL character or
    a lone surrogate (which is also what bytes that are not UTF-8 become when read leniently)."""
    return "\x00" in value or bool(_SURROGATES.search(value))


def without_excluded_keys(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Open WebUI's `filter_metadata`: the loader's metadata minus the large, redundant keys."""
    return {key: value for key, value in metadata.items() if key not in EXCLUDED_KEYS}


def file_meta_fields(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The file's `meta` as Open WebUI puts it into chunk metadata: upload-form `data` flattened
    in underneath the top-level fields, which win on a clash."""
    fields = dict(meta or {})
    form_data = fields.pop("data", None)
    if isinstance(form_data, Mapping):
        fields = {**without_excluded_keys(form_data), **fields}
    return without_excluded_keys(fields)


def source_document_metadata(file: SourceFile, loader_metadata: Mapping[str, Any]) -> dict:
    """Metadata of one document before splitting, as Open WebUI's file processing builds it."""
    return {
        **file_meta_fields(file.meta),
        **without_excluded_keys(loader_metadata),
        "name": file.filename,
        "created_by": file.user_id,
        "file_id": file.id,
        "source": file.filename,
    }


def embedding_config(engine: str, model: str) -> dict[str, str]:
    """The `embedding_config` Open WebUI attaches to every chunk."""
    return {"engine": engine, "model": model}


def stored_form(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What Open WebUI's pgvector client writes to `vmetadata`: no None values, lists, dicts
    and datetimes as their Python `str()`, strings sanitized."""
    stored: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in EXCLUDED_KEYS or value is None:
            continue
        if isinstance(value, (dt.datetime, list, dict)):
            stored[key] = sanitize_text(str(value))
        elif isinstance(value, str):
            stored[key] = sanitize_text(value)
        else:
            stored[key] = value
    return stored


# Keys every chunk gets from the file row itself; a `meta` field of the same name never reaches
# the stored metadata.
FILE_IDENTITY_KEYS = frozenset(
    {"name", "created_by", "file_id", "source", "hash", "embedding_config", "start_index"}
)


def unstorable_metadata(meta: Mapping[str, Any]) -> str | None:
    """Why the fields a file's `meta` adds to every chunk cannot be stored in `vmetadata`, or
    None when they can.

    Open WebUI writes `vmetadata` through the standard JSON encoder into jsonb: a NaN or
    infinite number is refused ("Token NaN is invalid") and so is a key holding a NUL or a lone
    surrogate ("unsupported Unicode escape sequence"); values are cleaned, keys are not. Such a
    file was never indexed by Open WebUI either. Nested values are stored as their `str()`,
    which is where absurd nesting gives up.
    """
    fields = {
        key: value for key, value in file_meta_fields(meta).items() if key not in FILE_IDENTITY_KEYS
    }
    try:
        stored = stored_form(fields)
    except (RecursionError, MemoryError):
        return "it is nested too deeply to be stored as text"
    for key, value in stored.items():
        if holds_invalid_text(key):
            return f"the key {key!r} holds a NUL character or a lone surrogate"
        if isinstance(value, float) and not math.isfinite(value):
            return f"the field {key!r} is {value}, which JSON cannot hold"
    return None


def chunk_metadata(
    split_metadata: Mapping[str, Any],
    file: SourceFile,
    content_hash: str,
    engine: str,
    model: str,
) -> dict[str, Any]:
    """Final stored metadata of a chunk: the split document's metadata, the file identity and
    content hash, and the embedding config."""
    return stored_form(
        {
            **split_metadata,
            "file_id": file.id,
            "name": file.filename,
            "hash": content_hash,
            "embedding_config": embedding_config(engine, model),
        }
    )

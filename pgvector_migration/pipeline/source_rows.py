"""Rows of Open WebUI's tables as they really are, checked before anything uses them.

One rule for garbage in a row: what Open WebUI 0.12.4 would still index is indexed the way it
would (its own cleaning repeated: NUL characters and lone surrogates dropped from text values,
a non-text `content_type` read as none); what it could not read or store fails alone, with its
id and the column at fault, so the rest of its partition goes on and the repaired row is picked
up by `--retry-failed`. Text columns are read leniently (bytes that are not UTF-8 become lone
surrogates) so that one such row cannot stop the query that reads its neighbours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pgvector_migration.pipeline.metadata import (
    holds_invalid_text,
    sanitize_text,
    unstorable_metadata,
)
from pgvector_migration.pipeline.system_collections import (
    KnowledgeBase,
    Memory,
    knowledge_base_text,
    memory_text,
)


class RowError(ValueError):
    """A column of a source row cannot be used; the message names the column and why."""


def not_utf8(value: Any) -> bool:
    """Whether a text column held bytes that are not UTF-8 (read as lone surrogates): Open
    WebUI's own reads of that row fail."""
    return isinstance(value, str) and holds_invalid_text(value.replace("\x00", ""))


def json_column(value: Any, column: str) -> dict[str, Any]:
    """A JSON object column (`file.meta`, `file.data`): NULL is an empty object; anything else
    that is not a JSON object is a `RowError`, since Open WebUI cannot load such a row."""
    if value is None:
        return {}
    if not_utf8(value):
        raise RowError(f"{column} is not valid UTF-8")
    parsed = value
    if isinstance(value, (str, bytes)):
        try:
            parsed = json.loads(value)
        except RecursionError:
            raise RowError(f"{column} is nested too deeply to be read") from None
        except ValueError as error:
            raise RowError(f"{column} is not valid JSON ({error})") from None
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise RowError(f"{column} is a JSON {type(parsed).__name__}, not an object")
    return parsed


def text_content_type(value: Any) -> str | None:
    """`meta.content_type` as Open WebUI's `FileMeta` reads it: a list gives its first string,
    any other non-string none."""
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str)), None)
    return sanitize_text(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class FileRow:
    """The usable fields of one `file` row; `problem` says why the file cannot be migrated
    (its other fields are then safe to show and store, not to index)."""

    filename: str
    stored_path: str | None
    content_type: str | None
    meta: dict[str, Any]
    data: dict[str, Any]
    problem: str | None = None


def read_file_row(
    file_id: str,
    user_id: Any,
    filename: Any,
    path: Any,
    meta: Any,
    data: Any,
    content_hash: Any,
) -> FileRow:
    """Check one `file` row. A NUL in the filename or path is dropped, as Open WebUI drops it
    from the metadata it stores; bytes that are not UTF-8, a `meta` or `data` that is not a
    JSON object, content that is not text, or `meta` fields jsonb cannot hold fail the file."""
    shown_name = filename if isinstance(filename, str) else None
    shown_path = sanitize_text(path) if isinstance(path, str) else None
    try:
        for column, value in (
            ("file.user_id", user_id),
            ("file.filename", filename),
            ("file.path", path),
            ("file.hash", content_hash),
        ):
            if not_utf8(value):
                raise RowError(f"{column} is not valid UTF-8 ({ascii(value)})")
        meta_fields = json_column(meta, "file.meta")
        data_fields = json_column(data, "file.data")
        content = data_fields.get("content")
        if content is not None and not isinstance(content, str):
            raise RowError(f"file.data.content is a JSON {type(content).__name__}, not text")
        unstorable = unstorable_metadata(meta_fields)
        if unstorable:
            raise RowError(f"file.meta cannot be stored in document_chunk.vmetadata: {unstorable}")
    except RowError as error:
        return FileRow(
            sanitize_text(shown_name or file_id),
            shown_path,
            None,
            {},
            {},
            f"file {file_id}: {error}; Open WebUI cannot index this row either. Repair it, "
            "then run again with --retry-failed",
        )
    name = meta_fields.get("name")
    fallback = name if isinstance(name, str) else file_id
    return FileRow(
        sanitize_text(shown_name or fallback),
        shown_path,
        text_content_type(meta_fields.get("content_type")),
        meta_fields,
        data_fields,
    )


def memory_problem(memory: Memory) -> str | None:
    """Why one memory cannot be written to `user-memory-{user_id}`, or None. Open WebUI cannot
    load a memory without content or user, and its vector upsert stores the text unchanged, so
    a NUL or undecodable byte in it fails there too; an empty text has nothing to embed."""
    where = f"memory {memory.id} of user {memory.user_id}"
    if not isinstance(memory.user_id, str) or not memory.user_id:
        return f"memory {memory.id} has no user_id"
    if memory.content is None:
        return f"{where} has no content (NULL); delete or repair it in Open WebUI"
    if not isinstance(memory.content, str) or not (
        memory.path is None or isinstance(memory.path, str)
    ):
        return f"{where}: its content or path is not text"
    text = memory_text(memory.content, memory.path)
    if holds_invalid_text(text):
        return f"{where}: its text holds a NUL character or bytes that are not UTF-8"
    if not text.strip():
        return f"{where} is empty: there is no text to embed"
    return None


def knowledge_base_problem(knowledge: KnowledgeBase) -> str | None:
    """Why one knowledge base cannot be written to `knowledge-bases`, or None (a NULL name:
    Open WebUI cannot load it; nothing to embed; text PostgreSQL cannot store)."""
    if knowledge.name is None:
        return f"knowledge base {knowledge.id} has no name (NULL); give it one in Open WebUI"
    if not isinstance(knowledge.name, str) or not (
        knowledge.description is None or isinstance(knowledge.description, str)
    ):
        return f"knowledge base {knowledge.id}: its name or description is not text"
    text = knowledge_base_text(knowledge.name, knowledge.description)
    if holds_invalid_text(text):
        return (
            f"knowledge base {knowledge.id}: its name or description holds a NUL character or "
            "bytes that are not UTF-8"
        )
    if not text.strip():
        return (
            f"knowledge base {knowledge.id} has an empty name and no description: there is no "
            "text to embed; give it a name in Open WebUI"
        )
    return None

"""The embedding cache's namespace: which cached vectors a given engine may reuse.

Vectors are reusable only for the same engine, model and prefix, and, for API engines, the same
way of sending the prefix (`RAG_EMBEDDING_PREFIX_FIELD_NAME` puts it in a body field instead of
in front of every text). The key is stored with every cached vector, so its format never
changes.
"""

from __future__ import annotations

from pgvector_migration.settings import RagSettings


def compose_model_key(
    engine: str, model: str, prefix: str | None, prefix_field: str | None = None
) -> str:
    """The model key of an engine given by its parts (what an engine object knows of itself)."""
    key = f"{engine or 'local'}|{model}|{prefix or ''}"
    if engine and prefix is not None and prefix_field is not None:
        key += f"|field={prefix_field}"
    return key


def model_key_of_settings(settings: RagSettings) -> str:
    """The model key of the engine these (effective) settings describe, without building the
    engine: what the dry run and the transplant look the cache up by."""
    return compose_model_key(
        settings.embedding_engine,
        settings.embedding_model,
        settings.embedding_content_prefix,
        settings.embedding_prefix_field_name,
    )

"""What every migration asset needs: the effective settings and metadata helpers."""

from collections.abc import Sequence
from typing import Any

from dagster import Failure, MetadataValue

from pgvector_migration.resources.embeddings import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.settings import RagSettings, SettingsError

PREVIEW_ROWS = 50


def effective_settings(openwebui: OpenWebUIResource, embeddings: EmbeddingResource) -> RagSettings:
    """Open WebUI's settings with every resource override applied, validated; a bad setting
    fails the step before anything is written."""
    settings = embeddings.effective_settings(openwebui.rag_settings())
    try:
        settings.validate()
    except SettingsError as error:
        raise Failure(description=str(error)) from error
    return settings


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> MetadataValue:
    """A preview table for the UI, cut at PREVIEW_ROWS rows with a note saying so."""

    def cell(value: Any) -> str:
        return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")[:160]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows[:PREVIEW_ROWS]
    ]
    if len(rows) > PREVIEW_ROWS:
        lines.append(f"\n{len(rows) - PREVIEW_ROWS} more rows not shown.")
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return MetadataValue.md("\n".join(lines))

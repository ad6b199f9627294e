"""What the dispatcher needs of an engine behind an HTTP API, whichever it is, and what the
resource hands every engine besides Open WebUI's settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pgvector_migration.embedding.responses import EmbeddingResponse


@runtime_checkable
class APIEmbedder(Protocol):
    """An engine behind an HTTP API. One `request()` is one attempt: it returns the vectors in
    input order or raises `TransientEmbeddingError` (worth retrying), `RequestTooLargeError`
    (a smaller batch may pass) or `EmbeddingError`, each message naming the URL and the HTTP
    status. Pacing, retries and splitting are the dispatcher's."""

    engine: str
    model: str
    model_key: str

    def request(self, texts: Sequence[str]) -> EmbeddingResponse: ...


@dataclass(frozen=True)
class EngineOptions:
    """What the embedding resource adds to Open WebUI's settings to build an engine."""

    request_timeout_seconds: float
    local_model_path: str | None = None
    local_batch_size: int = 64

"""Ollama's `/api/embed` endpoint."""

from __future__ import annotations

from typing import Any

from pgvector_migration.embedding.errors import InvalidResponseError
from pgvector_migration.embedding.http import BearerKeyEmbedder


class OllamaEmbedder(BearerKeyEmbedder):
    """Ollama's `/api/embed`, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_ollama_batch_embeddings`): `POST {base_url}/api/embed`
    with `{"input": texts, "model": model, "truncate": true}`, `Content-Type:
    application/json` and `Authorization: Bearer {key}` only when a key is set; the vectors
    are the response's `embeddings`, in input order."""

    engine = "ollama"
    url_setting = "ollama_base_url"
    key_setting = "ollama_api_key"
    required_settings = ("ollama_base_url",)
    path = "/api/embed"

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs, "model": self.model, "truncate": True}

    def _failed(self, status: int) -> bool:
        return status != 200  # Open WebUI accepts nothing but 200 from Ollama

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        if not isinstance(data, dict) or not isinstance(data.get("embeddings"), list):
            raise InvalidResponseError(f"{where} returned a body without an `embeddings` list")
        vectors = data["embeddings"]
        if len(vectors) != count:
            raise InvalidResponseError(
                f"{where} returned {len(vectors)} embeddings for {count} inputs"
            )
        tokens = data.get("prompt_eval_count")
        return list(vectors), tokens if isinstance(tokens, int) else 0

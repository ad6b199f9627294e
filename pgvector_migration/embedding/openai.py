"""OpenAI and any OpenAI-compatible `/embeddings` endpoint (vLLM, LiteLLM, LocalAI, ...)."""

from __future__ import annotations

from typing import Any

from pgvector_migration.embedding.http import BearerKeyEmbedder
from pgvector_migration.embedding.responses import openai_style_vectors


class OpenAIEmbedder(BearerKeyEmbedder):
    """Any OpenAI-compatible `/embeddings` endpoint, called as Open WebUI 0.12.4 calls it
    (`agenerate_openai_batch_embeddings`): `POST {base_url}/embeddings` with `{"input": texts,
    "model": model}` and a bearer key; we add `encoding_format: base64`, what the OpenAI
    client itself asks for (the same float32 values). A provider that ignores the field and
    sends float lists works as well: each vector is decoded as whatever it is."""

    engine = "openai"
    url_setting = "openai_api_base_url"
    key_setting = "openai_api_key"
    required_settings = ("openai_api_base_url",)
    path = "/embeddings"
    asks_base64 = True

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs, "model": self.model}

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        return openai_style_vectors(data, count, where)

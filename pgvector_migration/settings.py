"""Open WebUI's effective retrieval settings, resolved the way Open WebUI resolves them.

Open WebUI keeps persistent settings in its `config` table, and a value stored there wins over
the environment variable of the same setting; the environment wins over the built-in default.
We resolve in the same order so that a re-embed uses exactly the splitter and model the
deployment itself would use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SUPPORTED_TEXT_SPLITTERS = ("", "character", "token")
DEFAULT_EXTRACTION_ENGINES = ("", "default")
HTTP_EXTRACTION_ENGINES = ("external", "tika", "docling")
# Engines Open WebUI 0.12.4 knows but whose services this version does not call.
UNSUPPORTED_EXTRACTION_ENGINES = (
    "datalab_marker",
    "document_intelligence",
    "mineru",
    "mistral_ocr",
    "paddleocr_vl",
)
DEFAULT_EXTRACTION_TIMEOUT_SECONDS = 600
PDF_LOADER_MODES = ("page", "single")


class SettingsError(ValueError):
    """A setting has a value we cannot work with; the message names the setting."""


@dataclass(frozen=True)
class SettingSpec:
    """Where one setting lives: its `config` key, its environment name and its default.

    `legacy_config_keys` are the paths the same setting had in the one-row JSON `config` of
    Open WebUI up to 0.9 (its migration to per-key rows renames them); `default_from` computes
    a default that Open WebUI derives from other environment variables; `blank_env_is_value`
    marks a setting Open WebUI reads with `os.getenv(name, None)` and where an empty value
    therefore means something else than an unset one; `lower_case_env` marks one whose
    environment value Open WebUI lower-cases (a stored value is taken as it is).
    """

    config_key: str | None
    env_name: str
    default: Any
    kind: type
    legacy_config_keys: tuple[str, ...] = ()
    default_from: Callable[[Mapping[str, str]], Any] | None = None
    blank_env_is_value: bool = False
    lower_case_env: bool = False


def default_ollama_base_url(environ: Mapping[str, str]) -> str:
    """`OLLAMA_BASE_URL` as Open WebUI 0.12.4 derives it (config.py, "OLLAMA_BASE_URL"), the
    default of `RAG_OLLAMA_BASE_URL`.

    Open WebUI additionally probes port 11434 at start-up and switches to 12434 when only that
    one answers; a migration does not guess from the network, so that step is left out (set
    `RAG_OLLAMA_BASE_URL` when Ollama listens on 12434).
    """
    url = environ.get("OLLAMA_BASE_URL", "")
    if url.endswith("/"):
        url = url[:-1]
    api_url = environ.get("OLLAMA_API_BASE_URL", "http://localhost:11434/api")
    if url == "" and api_url != "":
        url = api_url[:-4] if api_url.endswith("/api") else api_url
    if environ.get("ENV", "dev") == "prod":
        k8s = environ.get("K8S_FLAG", "")
        if url == "/ollama" and not k8s:
            if environ.get("USE_OLLAMA_DOCKER", "false").lower() == "true":
                url = "http://localhost:11434"
            else:
                url = "http://host.docker.internal:11434"
        elif k8s:
            url = "http://ollama-service.open-webui.svc.cluster.local:11434"
    return url


SETTING_SPECS: dict[str, SettingSpec] = {
    "embedding_engine": SettingSpec("rag.embedding_engine", "RAG_EMBEDDING_ENGINE", "", str),
    "embedding_model": SettingSpec(
        "rag.embedding_model", "RAG_EMBEDDING_MODEL", DEFAULT_EMBEDDING_MODEL, str
    ),
    "embedding_batch_size": SettingSpec(
        "rag.embedding_batch_size", "RAG_EMBEDDING_BATCH_SIZE", 1, int
    ),
    "openai_api_base_url": SettingSpec(
        "rag.openai.api_base_url",
        "RAG_OPENAI_API_BASE_URL",
        "https://api.openai.com/v1",
        str,
        legacy_config_keys=("rag.openai_api_base_url",),
    ),
    "openai_api_key": SettingSpec(
        "rag.openai.api_key",
        "RAG_OPENAI_API_KEY",
        "",
        str,
        legacy_config_keys=("rag.openai_api_key",),
    ),
    "ollama_base_url": SettingSpec(
        "rag.ollama.base_url",
        "RAG_OLLAMA_BASE_URL",
        "http://localhost:11434",
        str,
        legacy_config_keys=("rag.ollama.url",),
        default_from=default_ollama_base_url,
    ),
    "ollama_api_key": SettingSpec(
        "rag.ollama.api_key", "RAG_OLLAMA_API_KEY", "", str, legacy_config_keys=("rag.ollama.key",)
    ),
    "azure_openai_base_url": SettingSpec(
        "rag.azure_openai.base_url", "RAG_AZURE_OPENAI_BASE_URL", "", str
    ),
    "azure_openai_api_key": SettingSpec(
        "rag.azure_openai.api_key", "RAG_AZURE_OPENAI_API_KEY", "", str
    ),
    "azure_openai_api_version": SettingSpec(
        "rag.azure_openai.api_version", "RAG_AZURE_OPENAI_API_VERSION", "", str
    ),
    "embedding_content_prefix": SettingSpec(None, "RAG_EMBEDDING_CONTENT_PREFIX", None, str),
    "embedding_prefix_field_name": SettingSpec(
        None, "RAG_EMBEDDING_PREFIX_FIELD_NAME", None, str, blank_env_is_value=True
    ),
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
        "rag.content_extraction_engine", "CONTENT_EXTRACTION_ENGINE", "", str, lower_case_env=True
    ),
    "pdf_extract_images": SettingSpec("rag.pdf_extract_images", "PDF_EXTRACT_IMAGES", False, bool),
    "pdf_loader_mode": SettingSpec("rag.pdf_loader_mode", "PDF_LOADER_MODE", "page", str),
    "rapidocr_params": SettingSpec(
        None, "RAPIDOCR_PARAMS", {"EngineConfig.onnxruntime.intra_op_num_threads": 1}, dict
    ),
    "content_extraction_supported_media_mime_types": SettingSpec(
        "rag.content_extraction.supported_media_mime_types",
        "CONTENT_EXTRACTION_SUPPORTED_MEDIA_MIME_TYPES",
        None,
        list,
        blank_env_is_value=True,
    ),
    "tika_server_url": SettingSpec(
        "rag.tika_server_url", "TIKA_SERVER_URL", "http://tika:9998", str
    ),
    "tika_server_version": SettingSpec("rag.tika_server_version", "TIKA_SERVER_VERSION", "3", str),
    "docling_server_url": SettingSpec(
        "rag.docling_server_url", "DOCLING_SERVER_URL", "http://docling:5001", str
    ),
    "docling_api_key": SettingSpec("rag.docling_api_key", "DOCLING_API_KEY", "", str),
    "docling_params": SettingSpec("rag.docling_params", "DOCLING_PARAMS", {}, dict),
    "external_document_loader_url": SettingSpec(
        "rag.external_document_loader_url", "EXTERNAL_DOCUMENT_LOADER_URL", "", str
    ),
    "external_document_loader_api_key": SettingSpec(
        "rag.external_document_loader_api_key", "EXTERNAL_DOCUMENT_LOADER_API_KEY", "", str
    ),
    "external_document_loader_headers": SettingSpec(
        "rag.external_document_loader_headers", "EXTERNAL_DOCUMENT_LOADER_HEADERS", {}, dict
    ),
    "extraction_timeout_seconds": SettingSpec(
        None,
        "PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT",
        DEFAULT_EXTRACTION_TIMEOUT_SECONDS,
        int,
    ),
    # Open WebUI's upload limit in MB; unset (its default) or 0 means no limit.
    "file_max_size_mb": SettingSpec("rag.file.max_size", "RAG_FILE_MAX_SIZE", None, int),
}

# Settings that only say how to reach an extraction service (or hold its secrets): never part
# of the fingerprint. The engine's own output options count only while that engine is on, so
# fingerprints made before these settings existed stay valid.
_EXTRACTION_TRANSPORT = (
    "content_extraction_supported_media_mime_types",
    "tika_server_url",
    "docling_server_url",
    "docling_api_key",
    "external_document_loader_url",
    "external_document_loader_api_key",
    "external_document_loader_headers",
    "extraction_timeout_seconds",
)
_EXTRACTION_OUTPUT_OPTIONS = {"tika": "tika_server_version", "docling": "docling_params"}


@dataclass(frozen=True)
class RagSettings:
    """The retrieval settings that decide what chunks and vectors Open WebUI writes."""

    embedding_engine: str
    embedding_model: str
    embedding_batch_size: int
    openai_api_base_url: str
    openai_api_key: str
    ollama_base_url: str
    ollama_api_key: str
    azure_openai_base_url: str
    azure_openai_api_key: str
    azure_openai_api_version: str
    embedding_content_prefix: str | None
    embedding_prefix_field_name: str | None
    text_splitter: str
    chunk_size: int
    chunk_overlap: int
    chunk_min_size_target: int
    enable_markdown_header_text_splitter: bool
    tiktoken_encoding_name: str
    content_extraction_engine: str
    pdf_extract_images: bool
    pdf_loader_mode: str
    rapidocr_params: dict[str, Any]
    content_extraction_supported_media_mime_types: list[str] | None
    tika_server_url: str
    tika_server_version: str
    docling_server_url: str
    docling_api_key: str
    docling_params: dict[str, Any]
    external_document_loader_url: str
    external_document_loader_api_key: str
    external_document_loader_headers: dict[str, Any]
    extraction_timeout_seconds: int
    file_max_size_mb: int | None = None

    def with_overrides(self, **overrides: Any) -> RagSettings:
        """Apply resource-config overrides; `None` means "keep Open WebUI's value"."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def splitting_fingerprint(self, reads_upload: bool = True) -> str:
        """A digest of everything that changes chunk texts, ids or metadata.

        A collection written under a different fingerprint is stale even when its content is not.
        The extraction engine only shapes text read from an upload: for a file split from its
        stored content (`reads_upload` False) it counts as the default engine.
        """
        relevant = asdict(self)
        if not reads_upload:
            relevant["content_extraction_engine"] = ""
        for secret_or_transport in (
            "openai_api_key",
            "openai_api_base_url",
            "ollama_base_url",
            "ollama_api_key",
            "azure_openai_base_url",
            "azure_openai_api_key",
            "azure_openai_api_version",
            "embedding_batch_size",
            "file_max_size_mb",
            *_EXTRACTION_TRANSPORT,
        ):
            relevant.pop(secret_or_transport)
        for engine, option in _EXTRACTION_OUTPUT_OPTIONS.items():
            value = relevant.pop(option)
            if relevant["content_extraction_engine"] == engine:
                relevant[option] = value
        # The PDF loader's mode and OCR parameters shape text only when an upload is read (the
        # OCR parameters only with image extraction on); at their defaults they are left out,
        # so fingerprints made before these settings existed stay valid.
        if not reads_upload or self.pdf_loader_mode == "page":
            relevant.pop("pdf_loader_mode")
        if not (reads_upload and self.pdf_extract_images):
            relevant.pop("rapidocr_params")
        # How the prefix reaches the provider (a body field instead of prepended to each text)
        # changes vectors, but only counts when set, so fingerprints made before the setting
        # existed stay valid.
        if self.embedding_prefix_field_name is None:
            relevant.pop("embedding_prefix_field_name")
        encoded = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def validate(self) -> None:
        """Refuse settings this version cannot reproduce, naming the setting and its value
        (the embedding engine's are checked by `embedding.registry.check_engine_settings`)."""
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
        self.validate_extraction()
        if self.pdf_loader_mode not in PDF_LOADER_MODES:
            raise SettingsError(
                f"PDF_LOADER_MODE (config rag.pdf_loader_mode) must be one of "
                f"{', '.join(repr(m) for m in PDF_LOADER_MODES)}, got {self.pdf_loader_mode!r}"
            )

    def validate_extraction(self) -> None:
        """Refuse a content-extraction engine we cannot call, or one that lacks its URL.

        Open WebUI itself quietly falls back to its default loaders when the engine's URL (or
        the external loader's key) is empty, or the engine is unknown; that is almost always a
        mistake, so we say so instead of guessing.
        """
        engine = self.content_extraction_engine
        if self.extraction_timeout_seconds <= 0:
            raise SettingsError(
                "PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT must be a positive number of seconds, "
                f"got {self.extraction_timeout_seconds}"
            )
        if engine in DEFAULT_EXTRACTION_ENGINES:
            return
        supported = ", ".join(
            repr(e) for e in (*DEFAULT_EXTRACTION_ENGINES, *HTTP_EXTRACTION_ENGINES)
        )
        if engine in UNSUPPORTED_EXTRACTION_ENGINES:
            raise SettingsError(
                f"CONTENT_EXTRACTION_ENGINE={engine!r} (config rag.content_extraction_engine) is "
                f"not supported yet; supported: {supported}. Files with stored content migrate "
                "without it; re-extraction (--reextract, or files without stored content) needs "
                "a supported engine"
            )
        if engine not in HTTP_EXTRACTION_ENGINES:
            raise SettingsError(
                f"CONTENT_EXTRACTION_ENGINE={engine!r} (config rag.content_extraction_engine) is "
                f"not an engine Open WebUI knows (it would use its default loaders); "
                f"supported: {supported}"
            )
        required = {
            "tika": (("tika_server_url", "TIKA_SERVER_URL", "rag.tika_server_url"),),
            "docling": (("docling_server_url", "DOCLING_SERVER_URL", "rag.docling_server_url"),),
            "external": (
                (
                    "external_document_loader_url",
                    "EXTERNAL_DOCUMENT_LOADER_URL",
                    "rag.external_document_loader_url",
                ),
                (
                    "external_document_loader_api_key",
                    "EXTERNAL_DOCUMENT_LOADER_API_KEY",
                    "rag.external_document_loader_api_key",
                ),
            ),
        }[engine]
        for field_name, env_name, config_key in required:
            if not getattr(self, field_name):
                raise SettingsError(
                    f"{env_name} (config {config_key}) is empty for "
                    f"CONTENT_EXTRACTION_ENGINE={engine}; Open WebUI would silently use its "
                    "default loaders instead, so set it, or set CONTENT_EXTRACTION_ENGINE to ''"
                )


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
    if spec.kind is dict:
        # A JSON object, stored as one or given as text; Open WebUI takes anything else
        # (unparseable text included) as no value at all.
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return {}
        return dict(value) if isinstance(value, Mapping) else {}
    if spec.kind is list:
        # A comma-separated list (environment) or a stored JSON list.
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise SettingsError(f"{where} must be a list, got {value!r}")
        return [str(item).strip() for item in items if str(item).strip()]
    return str(value)


def resolve_rag_settings(
    config_values: Mapping[str, Any], environ: Mapping[str, str]
) -> RagSettings:
    """Resolve every setting: the `config` table first, then the environment, then the default.

    `config_values` maps Open WebUI's dotted keys (`rag.chunk_size`) to stored values.
    """
    resolved: dict[str, Any] = {}
    for name, spec in SETTING_SPECS.items():
        stored, stored_key = None, None
        for key in (spec.config_key, *spec.legacy_config_keys) if spec.config_key else ():
            if config_values.get(key) is not None:
                stored, stored_key = config_values[key], key
                break
        in_environ = environ.get(spec.env_name)
        if stored is not None:
            value = _coerce(spec, stored, f"config table {stored_key}")
        elif in_environ is not None and (in_environ != "" or spec.blank_env_is_value):
            if spec.lower_case_env:
                in_environ = in_environ.lower()
            value = _coerce(spec, in_environ, f"environment {spec.env_name}")
        elif spec.default_from is not None:
            value = spec.default_from(environ)
        else:
            value = spec.default
        resolved[name] = value
    if resolved["embedding_batch_size"] < 1:
        resolved["embedding_batch_size"] = 1
    return RagSettings(**resolved)


def flatten_legacy_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn the one-row JSON `config.data` of Open WebUI up to 0.9 into dotted keys; a
    setting whose value is itself a JSON object (`rag.docling_params`) stays whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in _OBJECT_CONFIG_KEYS:
            flat.update(flatten_legacy_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


_OBJECT_CONFIG_KEYS = frozenset(
    key
    for spec in SETTING_SPECS.values()
    if spec.kind is dict
    for key in (spec.config_key, *spec.legacy_config_keys)
    if key
)

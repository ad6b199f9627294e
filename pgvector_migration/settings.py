"""Open WebUI's effective retrieval settings, resolved the way Open WebUI resolves them.

Open WebUI keeps persistent settings in its `config` table, and a value stored there wins over
the environment variable of the same setting; the environment wins over the built-in default.
We resolve in the same order so that a re-embed uses exactly the splitter and model the
deployment itself would use. What each setting is comes from its one declaration in
`setting_declarations`; this module derives the settings class, their validation, their
resolution and the fingerprint from those declarations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, make_dataclass, replace
from typing import Any

from pgvector_migration.setting_declarations import (
    DECLARATION_OF,
    DECLARATIONS,
    FINGERPRINT_RULES,
    Setting,
)
from pgvector_migration.setting_fingerprint import settings_fingerprint

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
PDF_LOADER_MODES = ("page", "single")
# The settings each engine cannot work without.
_REQUIRED_FOR_EXTRACTION = {
    "tika": ("tika_server_url",),
    "docling": ("docling_server_url",),
    "external": ("external_document_loader_url", "external_document_loader_api_key"),
}


class SettingsError(ValueError):
    """A setting has a value we cannot work with; the message names the setting."""


class _RagSettingsBehaviour:
    """What `RagSettings` does with its values; its fields come from the declarations."""

    def with_overrides(self, **overrides: Any) -> RagSettings:
        """Apply resource-config overrides; `None` means "keep Open WebUI's value"."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def splitting_fingerprint(self, reads_upload: bool = True) -> str:
        """A digest of everything that changes chunk texts, ids or metadata.

        A collection written under a different fingerprint is stale even when its content is not.
        The extraction engine only shapes text read from an upload: for a file split from its
        stored content (`reads_upload` False) it counts as the default engine.
        """
        return settings_fingerprint(asdict(self), reads_upload, FINGERPRINT_RULES)

    def validate(self) -> None:
        """Refuse settings this version cannot reproduce, naming the setting and its value
        (the embedding engine's are checked by `embedding.registry.check_engine_settings`)."""
        if self.text_splitter not in SUPPORTED_TEXT_SPLITTERS:
            raise SettingsError(
                f"{_env('text_splitter')}={self.text_splitter!r} is not supported; "
                f"supported: {', '.join(repr(s) for s in SUPPORTED_TEXT_SPLITTERS)}"
            )
        if self.chunk_size <= 0:
            raise SettingsError(f"{_env('chunk_size')} must be positive, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise SettingsError(
                f"{_env('chunk_overlap')} must be at least 0 and below {_env('chunk_size')} "
                f"({self.chunk_size}), got {self.chunk_overlap}"
            )
        self.validate_extraction()
        if self.pdf_loader_mode not in PDF_LOADER_MODES:
            raise SettingsError(
                f"{_where('pdf_loader_mode')} must be one of "
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
                f"{_env('extraction_timeout_seconds')} must be a positive number of seconds, "
                f"got {self.extraction_timeout_seconds}"
            )
        if engine in DEFAULT_EXTRACTION_ENGINES:
            return
        supported = ", ".join(
            repr(e) for e in (*DEFAULT_EXTRACTION_ENGINES, *HTTP_EXTRACTION_ENGINES)
        )
        engine_setting = f"{_env('content_extraction_engine')}={engine!r}"
        where_engine = f"(config {DECLARATION_OF['content_extraction_engine'].config_key})"
        if engine in UNSUPPORTED_EXTRACTION_ENGINES:
            raise SettingsError(
                f"{engine_setting} {where_engine} is "
                f"not supported yet; supported: {supported}. Files with stored content migrate "
                "without it; re-extraction (--reextract, or files without stored content) needs "
                "a supported engine"
            )
        if engine not in HTTP_EXTRACTION_ENGINES:
            raise SettingsError(
                f"{engine_setting} {where_engine} is "
                f"not an engine Open WebUI knows (it would use its default loaders); "
                f"supported: {supported}"
            )
        for name in _REQUIRED_FOR_EXTRACTION[engine]:
            if not getattr(self, name):
                raise SettingsError(
                    f"{_where(name)} is empty for "
                    f"{_env('content_extraction_engine')}={engine}; Open WebUI would silently "
                    "use its default loaders instead, so set it, or set "
                    f"{_env('content_extraction_engine')} to ''"
                )


def _env(name: str) -> str:
    return DECLARATION_OF[name].env_name


def _where(name: str) -> str:
    return DECLARATION_OF[name].where


def _field_type(setting: Setting) -> Any:
    return setting.kind | None if setting.optional else setting.kind


# The retrieval settings that decide what chunks and vectors Open WebUI writes: one frozen
# field per declaration, in declaration order.
RagSettings = make_dataclass(
    "RagSettings",
    [(setting.name, _field_type(setting)) for setting in DECLARATIONS],
    bases=(_RagSettingsBehaviour,),
    frozen=True,
)
RagSettings.__module__ = __name__
RagSettings.__doc__ = (
    "The retrieval settings that decide what chunks and vectors Open WebUI writes."
)


def _coerce(spec: Setting, value: Any, where: str) -> Any:
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
    for spec in DECLARATIONS:
        stored, stored_key = None, None
        for key in spec.config_keys:
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
        resolved[spec.name] = value
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
    key for spec in DECLARATIONS if spec.kind is dict for key in spec.config_keys
)

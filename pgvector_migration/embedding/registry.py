"""The embedding engines this version can run, each with the settings it needs: the one table
that the settings check, the dry run's probe and the resource's construction all read, so
adding an engine is one file and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgvector_migration.embedding.api import APIEmbedder, EngineOptions
from pgvector_migration.embedding.azure_openai import AzureOpenAIEmbedder
from pgvector_migration.embedding.local import LocalEmbedder
from pgvector_migration.embedding.ollama import OllamaEmbedder
from pgvector_migration.embedding.openai import OpenAIEmbedder
from pgvector_migration.settings import SETTING_SPECS, RagSettings, SettingsError

Embedder = APIEmbedder | LocalEmbedder


@dataclass(frozen=True)
class Engine:
    """One value of RAG_EMBEDDING_ENGINE. `model_is` says what RAG_EMBEDDING_MODEL is to it
    (None: the local model, found by name); `required` are the `RagSettings` fields it cannot
    send a request without; `url_setting` and `key_setting` are the fields the dry run's
    probe names when the provider is unreachable or refuses the key."""

    name: str
    build: Callable[[RagSettings, EngineOptions], Embedder]
    model_is: str | None = None
    required: tuple[str, ...] = ()
    url_setting: str | None = None
    key_setting: str | None = None


ENGINES: dict[str, Engine] = {
    engine.name: engine
    for engine in (
        Engine("", LocalEmbedder.from_settings),
        Engine(
            "openai",
            OpenAIEmbedder.from_settings,
            model_is="the model",
            required=("openai_api_base_url",),
            url_setting="openai_api_base_url",
            key_setting="openai_api_key",
        ),
        Engine(
            "ollama",
            OllamaEmbedder.from_settings,
            model_is="the model",
            required=("ollama_base_url",),
            url_setting="ollama_base_url",
            key_setting="ollama_api_key",
        ),
        Engine(
            "azure_openai",
            AzureOpenAIEmbedder.from_settings,
            model_is="the Azure deployment name",
            required=("azure_openai_base_url", "azure_openai_api_version"),
            url_setting="azure_openai_base_url",
            key_setting="azure_openai_api_key",
        ),
    )
}


def setting_name(field: str) -> str:
    """A setting as messages name it: its environment variable."""
    return SETTING_SPECS[field].env_name


def _setting_with_config_key(field: str) -> str:
    spec = SETTING_SPECS[field]
    return f"{spec.env_name} (config {spec.config_key})"


def engine_for(settings: RagSettings) -> Engine:
    """The engine these (effective) settings select, refused with a `SettingsError` naming the
    setting when it is unknown or lacks a setting it needs to send a request."""
    name = settings.embedding_engine
    engine = ENGINES.get(name)
    if engine is None:
        raise SettingsError(
            f"{setting_name('embedding_engine')}={name!r} is not supported yet; "
            f"supported: {', '.join(repr(known) for known in ENGINES)}"
        )
    if engine.model_is is not None and not settings.embedding_model:
        raise SettingsError(
            f"{_setting_with_config_key('embedding_model')} is empty for "
            f"{setting_name('embedding_engine')}={name}; it is {engine.model_is} sent with "
            "every request"
        )
    for field in engine.required:
        if not getattr(settings, field):
            raise SettingsError(
                f"{_setting_with_config_key(field)} is empty for "
                f"{setting_name('embedding_engine')}={name}"
            )
    return engine


def check_engine_settings(settings: RagSettings) -> None:
    """Refuse an embedding engine that is unknown or lacks a setting it needs, before anything
    is built or sent."""
    engine_for(settings)


def build_engine(settings: RagSettings, options: EngineOptions) -> Embedder:
    """The engine these settings describe, checked first."""
    return engine_for(settings).build(settings, options)

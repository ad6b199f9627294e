"""The embedding engines this version can run, by their RAG_EMBEDDING_ENGINE value: the one
table that the settings check and the resource's construction read. Each engine class says
what it needs (`url_setting`, `key_setting`, `required_settings`, `model_is`) and how it is
built from the settings (`from_settings`), so adding an engine is one file and one entry here.
"""

from __future__ import annotations

from pgvector_migration.embedding.api import APIEmbedder, EngineOptions
from pgvector_migration.embedding.azure_openai import AzureOpenAIEmbedder
from pgvector_migration.embedding.http import BearerKeyEmbedder
from pgvector_migration.embedding.local import LocalEmbedder
from pgvector_migration.embedding.ollama import OllamaEmbedder
from pgvector_migration.embedding.openai import OpenAIEmbedder
from pgvector_migration.setting_declarations import DECLARATION_OF
from pgvector_migration.settings import RagSettings, SettingsError

Embedder = APIEmbedder | LocalEmbedder
EngineClass = type[LocalEmbedder] | type[BearerKeyEmbedder] | type[AzureOpenAIEmbedder]

ENGINES: dict[str, EngineClass] = {
    engine.engine: engine
    for engine in (LocalEmbedder, OpenAIEmbedder, OllamaEmbedder, AzureOpenAIEmbedder)
}


def setting_name(field: str) -> str:
    """A `RagSettings` field as messages name it: its environment variable."""
    return DECLARATION_OF[field].env_name


def _named_with_config_key(field: str) -> str:
    return DECLARATION_OF[field].where


def engine_for(settings: RagSettings) -> EngineClass:
    """The engine these (effective) settings select, refused with a `SettingsError` naming the
    setting when it is unknown or lacks a setting it needs to send a request."""
    name = settings.embedding_engine
    engine_setting = setting_name("embedding_engine")
    engine = ENGINES.get(name)
    if engine is None:
        raise SettingsError(
            f"{engine_setting}={name!r} is not supported yet; "
            f"supported: {', '.join(repr(known) for known in ENGINES)}"
        )
    if engine.model_is is not None and not settings.embedding_model:
        raise SettingsError(
            f"{_named_with_config_key('embedding_model')} is empty for {engine_setting}={name}; "
            f"it is {engine.model_is} sent with every request"
        )
    for field in engine.required_settings:
        if not getattr(settings, field):
            raise SettingsError(
                f"{_named_with_config_key(field)} is empty for {engine_setting}={name}"
            )
    return engine


def check_engine_settings(settings: RagSettings) -> None:
    """Refuse an embedding engine that is unknown or lacks a setting it needs, before anything
    is built or sent."""
    engine_for(settings)


def build_engine(settings: RagSettings, options: EngineOptions) -> Embedder:
    """The engine these settings describe, checked first."""
    return engine_for(settings).from_settings(settings, options)

"""Unit tests for resolving, coercing and validating Open WebUI's retrieval settings."""

from __future__ import annotations

import pytest

from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.settings import (
    SettingsError,
    flatten_legacy_config,
    resolve_rag_settings,
)


def resolve(config=None, env=None):
    return resolve_rag_settings(config or {}, env or {})


# --- resolution order ---------------------------------------------------------------------


def test_defaults_when_neither_config_nor_environment_has_a_value():
    settings = resolve()
    assert settings.chunk_size == 1000
    assert settings.chunk_overlap == 100
    assert settings.chunk_min_size_target == 0
    assert settings.embedding_engine == ""
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL
    assert settings.enable_markdown_header_text_splitter is True
    assert settings.pdf_extract_images is False
    assert settings.embedding_content_prefix is None
    assert settings.openai_api_base_url == "https://api.openai.com/v1"


def test_config_table_value_beats_environment_and_default():
    settings = resolve({"rag.chunk_size": 500}, {"CHUNK_SIZE": "700"})
    assert settings.chunk_size == 500


def test_environment_beats_default():
    settings = resolve(env={"CHUNK_SIZE": "700", "RAG_EMBEDDING_MODEL": "env-model"})
    assert settings.chunk_size == 700
    assert settings.embedding_model == "env-model"


def test_empty_environment_value_falls_back_to_default():
    settings = resolve(env={"CHUNK_SIZE": "", "RAG_EMBEDDING_MODEL": ""})
    assert settings.chunk_size == 1000
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL


def test_config_table_value_wins_even_when_it_is_falsy():
    settings = resolve(
        {"rag.enable_markdown_header_text_splitter": False, "rag.embedding_engine": ""},
        {"ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER": "true", "RAG_EMBEDDING_ENGINE": "openai"},
    )
    assert settings.enable_markdown_header_text_splitter is False
    assert settings.embedding_engine == ""


def test_environment_only_setting_ignores_config_table():
    settings = resolve(
        {"rag.embedding_content_prefix": "from-config"},
        {"RAG_EMBEDDING_CONTENT_PREFIX": "passage: "},
    )
    assert settings.embedding_content_prefix == "passage: "


# --- coercion -----------------------------------------------------------------------------


def test_integer_settings_are_coerced_from_strings():
    settings = resolve({"rag.chunk_overlap": "50"}, {"CHUNK_SIZE": " 400 "})
    assert settings.chunk_size == 400
    assert settings.chunk_overlap == 50
    assert isinstance(settings.chunk_overlap, int)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "On"])
def test_truthy_strings_become_true(raw):
    settings = resolve(env={"PDF_EXTRACT_IMAGES": raw})
    assert settings.pdf_extract_images is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off"])
def test_other_strings_become_false(raw):
    settings = resolve(env={"ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER": raw})
    assert settings.enable_markdown_header_text_splitter is False


def test_json_booleans_in_config_table_are_kept():
    settings = resolve({"rag.pdf_extract_images": True})
    assert settings.pdf_extract_images is True


def test_non_integer_chunk_size_in_config_table_names_the_setting():
    with pytest.raises(SettingsError) as raised:
        resolve({"rag.chunk_size": "big"})
    message = str(raised.value)
    assert "rag.chunk_size" in message
    assert "'big'" in message
    assert "config table" in message


def test_non_integer_chunk_size_in_environment_names_the_environment_variable():
    with pytest.raises(SettingsError) as raised:
        resolve(env={"CHUNK_SIZE": "lots"})
    message = str(raised.value)
    assert "environment CHUNK_SIZE" in message
    assert "'lots'" in message


def test_null_in_config_table_falls_back_to_environment():
    assert resolve({"rag.chunk_size": None}, env={"CHUNK_SIZE": "700"}).chunk_size == 700


@pytest.mark.parametrize("raw", ["0", "-3"])
def test_embedding_batch_size_below_one_becomes_one(raw):
    assert resolve(env={"RAG_EMBEDDING_BATCH_SIZE": raw}).embedding_batch_size == 1


def test_embedding_batch_size_above_one_is_kept():
    assert resolve(env={"RAG_EMBEDDING_BATCH_SIZE": "16"}).embedding_batch_size == 16


# --- legacy config ------------------------------------------------------------------------


def test_flatten_legacy_config_turns_nesting_into_dotted_keys():
    flat = flatten_legacy_config(
        {
            "version": 0,
            "rag": {
                "chunk_size": 500,
                "template": "",
                "openai": {"api_base_url": "http://embed.local/v1", "api_key": "sk-x"},
            },
            "ui": {"prompt_suggestions": [{"title": "a"}]},
        }
    )
    assert flat == {
        "version": 0,
        "rag.chunk_size": 500,
        "rag.template": "",
        "rag.openai.api_base_url": "http://embed.local/v1",
        "rag.openai.api_key": "sk-x",
        "ui.prompt_suggestions": [{"title": "a"}],
    }


def test_flattened_legacy_config_resolves_like_per_key_config():
    flat = flatten_legacy_config(
        {"rag": {"chunk_size": 500, "openai": {"api_base_url": "http://embed.local/v1"}}}
    )
    settings = resolve(flat, {"CHUNK_SIZE": "900", "RAG_OPENAI_API_BASE_URL": "http://env/v1"})
    assert settings.chunk_size == 500
    assert settings.openai_api_base_url == "http://embed.local/v1"


# --- overrides ----------------------------------------------------------------------------


def test_with_overrides_ignores_none_and_applies_values():
    base = resolve()
    changed = base.with_overrides(chunk_size=300, embedding_model=None)
    assert changed.chunk_size == 300
    assert changed.embedding_model == base.embedding_model
    assert base.chunk_size == 1000


# --- validate -----------------------------------------------------------------------------


def test_default_settings_validate():
    resolve().validate()
    resolve(env={"RAG_EMBEDDING_ENGINE": "openai"}).validate()


def test_unsupported_engine_is_named_in_the_error():
    settings = resolve({"rag.embedding_engine": "cohere"})
    with pytest.raises(SettingsError) as raised:
        settings.validate()
    assert "'cohere'" in str(raised.value)
    assert "RAG_EMBEDDING_ENGINE" in str(raised.value)


def test_unsupported_text_splitter_is_named_in_the_error():
    settings = resolve({"rag.text_splitter": "token_transformers"})
    with pytest.raises(SettingsError, match="token_transformers"):
        settings.validate()


@pytest.mark.parametrize("overlap", [200, 250])
def test_overlap_not_below_chunk_size_is_refused(overlap):
    settings = resolve({"rag.chunk_size": 200, "rag.chunk_overlap": overlap})
    with pytest.raises(SettingsError, match="CHUNK_OVERLAP"):
        settings.validate()


def test_overlap_just_below_chunk_size_is_accepted():
    resolve({"rag.chunk_size": 200, "rag.chunk_overlap": 199}).validate()


def test_negative_overlap_is_refused():
    with pytest.raises(SettingsError, match="CHUNK_OVERLAP"):
        resolve({"rag.chunk_overlap": -1}).validate()


def test_non_positive_chunk_size_is_refused():
    with pytest.raises(SettingsError, match="CHUNK_SIZE"):
        resolve({"rag.chunk_size": 0, "rag.chunk_overlap": 0}).validate()


def test_content_extraction_engines_we_cannot_call_are_refused():
    with pytest.raises(SettingsError, match="'mistral_ocr'"):
        resolve({"rag.content_extraction_engine": "mistral_ocr"}).validate()
    with pytest.raises(SettingsError, match="TIKA_SERVER_URL"):
        resolve({"rag.content_extraction_engine": "tika", "rag.tika_server_url": ""}).validate()
    resolve({"rag.content_extraction_engine": "default"}).validate()
    resolve({"rag.content_extraction_engine": "tika"}).validate()


def test_openai_engine_without_base_url_is_refused():
    settings = resolve({"rag.embedding_engine": "openai", "rag.openai.api_base_url": ""})
    with pytest.raises(SettingsError, match="RAG_OPENAI_API_BASE_URL"):
        settings.validate()


# --- splitting fingerprint ----------------------------------------------------------------


def test_fingerprint_is_stable_for_equal_settings():
    assert resolve().splitting_fingerprint() == resolve().splitting_fingerprint()


@pytest.mark.parametrize(
    "override",
    [
        {"chunk_size": 999},
        {"chunk_overlap": 50},
        {"embedding_model": "other-model"},
        {"embedding_content_prefix": "passage: "},
        {"enable_markdown_header_text_splitter": False},
        {"text_splitter": "token"},
    ],
)
def test_fingerprint_changes_with_what_changes_chunks_or_vectors(override):
    base = resolve()
    assert base.with_overrides(**override).splitting_fingerprint() != base.splitting_fingerprint()


@pytest.mark.parametrize(
    "override",
    [
        {"openai_api_key": "sk-rotated"},
        {"openai_api_base_url": "http://proxy.local/v1"},
        {"embedding_batch_size": 64},
    ],
)
def test_fingerprint_ignores_secrets_and_transport(override):
    base = resolve()
    assert base.with_overrides(**override).splitting_fingerprint() == base.splitting_fingerprint()

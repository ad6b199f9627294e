"""Unit tests for resolving, coercing and validating Open WebUI's retrieval settings."""

from __future__ import annotations

from dataclasses import asdict, fields, replace

import pytest

from pgvector_migration.embedding.registry import check_engine_settings
from pgvector_migration.setting_declarations import (
    DECLARATION_OF,
    DECLARATIONS,
    Setting,
    fingerprint_rules,
)
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.setting_fingerprint import always, settings_fingerprint
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
    check_engine_settings(resolve(env={"RAG_EMBEDDING_ENGINE": "openai"}))


def test_unsupported_engine_is_named_in_the_error():
    settings = resolve({"rag.embedding_engine": "cohere"})
    with pytest.raises(SettingsError) as raised:
        check_engine_settings(settings)
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
        check_engine_settings(settings)


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


# Settings samples and the fingerprints the code before the declarations (git ff2e030,
# `settings.py` before `setting_declarations.py`) computed for them, with reads_upload True
# and False. Computed by loading `git show ff2e030:pgvector_migration/settings.py` as a module
# and calling `resolve_rag_settings(config, environ).splitting_fingerprint(reads_upload)`.
# A different value would make every user's collections stale after an upgrade.
FINGERPRINTS_AT_FF2E030 = {
    "defaults": ({}, {}, "2dec9860f87d9a89", "2dec9860f87d9a89"),
    "chunking": (
        {"rag.chunk_size": 400, "rag.chunk_overlap": 40, "rag.text_splitter": "token"},
        {
            "TIKTOKEN_ENCODING_NAME": "o200k_base",
            "CHUNK_MIN_SIZE_TARGET": "100",
            "ENABLE_MARKDOWN_HEADER_TEXT_SPLITTER": "false",
        },
        "924893d0d8cd63e7",
        "924893d0d8cd63e7",
    ),
    "openai": (
        {
            "rag.embedding_engine": "openai",
            "rag.embedding_model": "text-embedding-3-small",
            "rag.openai.api_key": "sk-secret",
            "rag.embedding_batch_size": 64,
        },
        {"RAG_OPENAI_API_BASE_URL": "http://127.0.0.1:9/v1", "RAG_FILE_MAX_SIZE": "20"},
        "8f8711ae7567db88",
        "8f8711ae7567db88",
    ),
    "prefix": (
        {},
        {
            "RAG_EMBEDDING_CONTENT_PREFIX": "passage: ",
            "RAG_EMBEDDING_PREFIX_FIELD_NAME": "input_type",
        },
        "5e54aa445558f959",
        "5e54aa445558f959",
    ),
    "tika": (
        {"rag.content_extraction_engine": "tika", "rag.tika_server_version": "4"},
        {
            "TIKA_SERVER_URL": "http://tika.internal:9998",
            "PGVECTOR_MIGRATION_EXTRACTION_TIMEOUT": "30",
        },
        "ce9cc5413e26bfcd",
        "2dec9860f87d9a89",
    ),
    "docling": (
        {
            "rag.content_extraction_engine": "docling",
            "rag.docling_params": {"do_ocr": True},
            "rag.docling_api_key": "k",
        },
        {},
        "3a1f31d35bf2f578",
        "2dec9860f87d9a89",
    ),
    "external": (
        {
            "rag.content_extraction_engine": "external",
            "rag.external_document_loader_url": "http://x",
            "rag.external_document_loader_api_key": "key",
        },
        {"CONTENT_EXTRACTION_SUPPORTED_MEDIA_MIME_TYPES": "image/*"},
        "c80e33dddb9b9dbc",
        "2dec9860f87d9a89",
    ),
    "pdf": (
        {"rag.pdf_loader_mode": "single", "rag.pdf_extract_images": True},
        {"RAPIDOCR_PARAMS": '{"Global.text_score": 0.6}'},
        "6233b9cd2b2d420b",
        "b5f8aa626a196de0",
    ),
    "azure": (
        {
            "rag.embedding_engine": "azure_openai",
            "rag.azure_openai.base_url": "http://a",
            "rag.azure_openai.api_version": "2024-02-01",
            "rag.azure_openai.api_key": "z",
        },
        {"RAG_OLLAMA_BASE_URL": "http://o:11434"},
        "31d2593d1a905664",
        "31d2593d1a905664",
    ),
}


@pytest.mark.parametrize("sample", sorted(FINGERPRINTS_AT_FF2E030))
def test_fingerprints_are_those_of_the_code_before_the_declarations(sample):
    config, environ, reading_upload, from_stored_text = FINGERPRINTS_AT_FF2E030[sample]
    settings = resolve(config, environ)
    assert settings.splitting_fingerprint(True) == reading_upload
    assert settings.splitting_fingerprint(False) == from_stored_text


@pytest.mark.parametrize("sample", sorted(FINGERPRINTS_AT_FF2E030))
@pytest.mark.parametrize("reads_upload", [True, False])
def test_a_new_setting_without_a_fingerprint_rule_changes_no_fingerprint(sample, reads_upload):
    config, environ, *_ = FINGERPRINTS_AT_FF2E030[sample]
    settings = resolve(config, environ)
    new = Setting("brand_new_option", "BRAND_NEW_OPTION", "x", str, "rag.brand_new_option")
    declarations = (*DECLARATIONS, new)
    values = {**asdict(settings), "brand_new_option": "something else"}

    extended = settings_fingerprint(values, reads_upload, fingerprint_rules(declarations))

    assert extended == settings.splitting_fingerprint(reads_upload)
    counted = replace(new, fingerprint=always)
    with_rule = fingerprint_rules((*DECLARATIONS, counted))
    assert settings_fingerprint(values, reads_upload, with_rule) != extended


def test_secrets_and_transport_settings_never_enter_the_fingerprint():
    for setting in DECLARATIONS:
        if setting.secret or setting.transport:
            assert setting.fingerprint is None, setting.name


@pytest.mark.parametrize(
    "name", [s.name for s in DECLARATIONS if s.fingerprint is None and s.kind in (str, int)]
)
def test_settings_outside_the_fingerprint_do_not_change_it(name):
    base = resolve()
    other = 7 if DECLARATION_OF[name].kind is int else "changed"
    changed = base.with_overrides(**{name: other})
    assert changed.splitting_fingerprint() == base.splitting_fingerprint()
    assert changed.splitting_fingerprint(False) == base.splitting_fingerprint(False)


def test_every_declared_setting_is_a_field_and_is_resolved_from_its_environment_name():
    settings = resolve()
    assert [f.name for f in fields(settings)] == [s.name for s in DECLARATIONS]
    for setting in DECLARATIONS:
        if setting.kind is int:
            value, raw = 4242, "4242"
        elif setting.kind is str:
            value, raw = "declared", "declared"
        else:
            continue
        resolved = resolve(env={setting.env_name: raw})
        assert getattr(resolved, setting.name) == value, setting.env_name
        if setting.config_key:
            stored = resolve(config={setting.config_key: raw})
            assert getattr(stored, setting.name) == value, setting.config_key

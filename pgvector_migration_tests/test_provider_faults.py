"""A provider that misbehaves on purpose, met by the dispatcher: every answer is checked before
it is used, each protocol fault is retried or failed with the URL named and never with Python's
own words, one refused text fails alone, and no request outlives its deadline."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from pgvector_migration.embedding.azure_openai import AzureOpenAIEmbedder
from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.embedding.ollama import OllamaEmbedder
from pgvector_migration.embedding.openai import OpenAIEmbedder
from pgvector_migration.redaction import redact_text, redact_url
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.provider_servers import AzureOpenAIServer, OllamaServer

MODEL = "fault-model"
DIMENSIONS = 8
TEXTS = [f"ordinary text number {i}" for i in range(12)]
PYTHON_INTERNALS = ("object has no attribute", "JSONDecodeError", "Traceback", "httpcore", "Errno")


@pytest.fixture
def server():
    with EmbeddingServer(dimensions=DIMENSIONS, api_key="sk-fault-secret") as running:
        running.hang_seconds = 10
        running.trickle_interval = 0.05
        yield running


def dispatcher_for(server: EmbeddingServer, deadline: float = 2.0, retries: int = 2):
    engine = OpenAIEmbedder(MODEL, server.base_url, "sk-fault-secret", None, timeout=deadline)
    dispatcher = EmbeddingDispatcher(
        engine, max_batch_inputs=16, max_in_flight=2, max_retries=retries
    )
    dispatcher.expected_dimension = DIMENSIONS
    return dispatcher


def assert_right(texts, results):
    assert len(results) == len(texts)
    for text, result in zip(texts, results, strict=True):
        assert not isinstance(result, EmbeddingError), result
        assert np.array_equal(result, np.asarray(expected_embedding(MODEL, text, DIMENSIONS)))


def assert_reported(error: EmbeddingError, server: EmbeddingServer, *words: str) -> None:
    message = str(error)
    assert server.base_url in message, message
    assert "sk-fault-secret" not in message
    assert not any(internal in message for internal in PYTHON_INTERNALS), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "fault",
    [
        "wrong_dimension",
        "bad_index",
        "nan",
        "infinity",
        "null",
        "out_of_range",
        "html",
        "truncated",
        "empty",
        "no_data",
        "reset",
        "hang",
        "trickle",
    ],
)
def test_one_faulty_answer_is_retried_and_nothing_of_it_is_used(server, fault):
    dispatcher = dispatcher_for(server, deadline=1.0)
    server.fault_next(fault)
    started = time.monotonic()
    assert_right(TEXTS, dispatcher.embed_each(TEXTS))
    assert dispatcher.stats.retries == 1
    assert time.monotonic() - started < 1.0 + 3.0  # one deadline at most, plus one backoff
    dispatcher.close()


def test_base64_where_floats_were_asked_is_decoded_exactly(server):
    dispatcher = dispatcher_for(server)
    server.fault_next("base64")
    assert_right(TEXTS, dispatcher.embed_each(TEXTS))
    assert dispatcher.stats.retries == 0
    dispatcher.close()


def test_without_index_fields_the_order_is_taken_as_open_webui_takes_it(server):
    dispatcher = dispatcher_for(server)
    server.fault_next("no_index")
    assert_right(TEXTS, dispatcher.embed_each(TEXTS))
    dispatcher.close()


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("html", ["text/html", "not JSON"]),
        ("truncated", ["cut off"]),
        ("empty", ["empty body"]),
        ("no_data", ["without `data`"]),
        ("reset", ["reset"]),
        ("wrong_dimension", ["7-dimensional", "8 dimensions"]),
        ("hang", ["timed out", "1 s"]),
    ],
)
def test_a_fault_that_persists_fails_with_the_url_and_in_our_words(server, fault, words):
    dispatcher = dispatcher_for(server, deadline=1.0, retries=1)
    server.fault_when("ordinary", fault)
    started = time.monotonic()
    results = dispatcher.embed_each(TEXTS[:2])
    assert all(isinstance(result, EmbeddingError) for result in results)
    assert_reported(results[0], server, *words)
    # Two attempts of at most one deadline each, a split of two single texts, backoff.
    assert time.monotonic() - started < 8
    dispatcher.close()


@pytest.mark.parametrize("fault", ["reject", "nan", "null", "wrong_dimension"])
def test_one_refused_text_fails_alone_and_its_neighbours_get_their_vectors(server, fault):
    texts = [*TEXTS[:7], "the forbidden text", *TEXTS[7:]]
    dispatcher = dispatcher_for(server, retries=1)
    server.fault_when("forbidden", fault)
    results = dispatcher.embed_each(texts)
    failed = [text for text, r in zip(texts, results, strict=True) if isinstance(r, EmbeddingError)]
    assert failed == ["the forbidden text"]
    assert_reported(results[7], server)
    assert_right(TEXTS, [r for r in results if not isinstance(r, EmbeddingError)])
    dispatcher.close()


def test_index_fields_that_stay_wrong_are_outwitted_by_splitting(server):
    """All-zero `index` fields cannot be matched to several texts, but a single text's answer
    needs no index: splitting ends with every text's own vector, never another's."""
    dispatcher = dispatcher_for(server, retries=1)
    server.fault_when("ordinary", "bad_index")
    assert_right(TEXTS[:4], dispatcher.embed_each(TEXTS[:4]))
    assert dispatcher.stats.splits >= 1
    dispatcher.close()


def test_a_provider_that_refuses_everything_is_not_asked_text_by_text(server):
    texts = [f"text {i}" for i in range(64)]
    dispatcher = dispatcher_for(server, retries=0)
    server.fault_when("text", "reject")
    results = dispatcher.embed_each(texts)
    assert all(isinstance(result, EmbeddingError) for result in results)
    # Four batches of 16; each sent whole, then in two halves, then in four quarters: every
    # quarter refused too, the fault is the provider's, not one text's.
    assert server.request_count == 4 * (1 + 2 + 4)
    dispatcher.close()


def test_a_trickling_answer_is_cut_at_the_deadline_and_the_wait_is_logged(server, caplog):
    server.trickle_interval = 0.3
    dispatcher = dispatcher_for(server, deadline=1.5, retries=0)
    server.fault_when("ordinary", "trickle")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        results = dispatcher.embed_each(TEXTS[:1])
    assert time.monotonic() - started < 1.5 + 1.0
    assert_reported(results[0], server, "timed out")
    assert any("waiting for" in record.getMessage() for record in caplog.records)
    dispatcher.close()


def test_credentials_in_the_url_never_appear_in_a_message(server):
    base = server.base_url.replace("http://", "http://admin:hunter2-password@")
    engine = OpenAIEmbedder(MODEL, base, "sk-fault-secret", None, timeout=1.0)
    dispatcher = EmbeddingDispatcher(engine, max_batch_inputs=4, max_in_flight=1, max_retries=0)
    server.fault_when("ordinary", "html")
    results = dispatcher.embed_each(TEXTS[:1])
    message = str(results[0])
    assert "hunter2-password" not in message and "sk-fault-secret" not in message
    assert "admin:***@127.0.0.1" in message
    dispatcher.close()


def test_redaction_masks_passwords_and_keys_and_keeps_the_rest():
    assert redact_url("https://u:p%40ss@host:8443/v1?api-key=abc&x=1") == (
        "https://u:***@host:8443/v1?api-key=***&x=1"
    )
    assert redact_url("http://host/v1") == "http://host/v1"
    assert redact_text("failed: postgresql://me:s3cret@db/x and key sk-123456", ["sk-123456"]) == (
        "failed: postgresql://me:***@db/x and key ***"
    )


@pytest.mark.parametrize("engine_kind", ["ollama", "azure_openai"])
@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("nan", ["NaN"]),
        ("wrong_dimension", ["7-dimensional"]),
        ("html", ["not JSON"]),
        ("missing_vectors", ["without"]),
    ],
)
def test_ollama_and_azure_answers_are_checked_the_same_way(engine_kind, fault, words):
    texts = [*TEXTS[:5], "the forbidden text", *TEXTS[5:8]]
    server_type = OllamaServer if engine_kind == "ollama" else AzureOpenAIServer
    with server_type(dimensions=DIMENSIONS) as server:
        if engine_kind == "ollama":
            engine = OllamaEmbedder(MODEL, server.base_url, "", None, timeout=2)
        else:
            engine = AzureOpenAIEmbedder(
                MODEL, server.base_url, "azure-test-key", "2024-10-21", None, 2
            )
        dispatcher = EmbeddingDispatcher(
            engine, max_batch_inputs=16, max_in_flight=1, max_retries=1
        )
        dispatcher.expected_dimension = DIMENSIONS
        server.corrupt_when("forbidden", fault)
        results = dispatcher.embed_each(texts)
        failed = [t for t, r in zip(texts, results, strict=True) if isinstance(r, EmbeddingError)]
        assert failed == ["the forbidden text"]
        message = str(results[5])
        assert server.base_url in message and all(word in message for word in words), message
        assert not any(internal in message for internal in PYTHON_INTERNALS), message
        for text, result in zip(texts, results, strict=True):
            if text != "the forbidden text":
                assert np.array_equal(result, expected_embedding(MODEL, text, DIMENSIONS))
        dispatcher.close()

"""Request shaping, pacing, retries and splitting against the real loopback OpenAI server."""

from __future__ import annotations

import numpy as np
import pytest

from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.embedding.openai import OpenAIEmbedder
from pgvector_migration.pipeline.batching import RequestLimits, TokenEstimator, shape_batches
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL = "dispatch-model"


def dispatcher_for(server: EmbeddingServer, **options) -> EmbeddingDispatcher:
    engine = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=5)
    defaults = {"max_batch_inputs": 16, "max_in_flight": 4, "max_retries": 4}
    return EmbeddingDispatcher(engine, **{**defaults, **options})


def assert_vectors(texts, vectors, dimensions=8):
    assert len(vectors) == len(texts)
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, expected_embedding(MODEL, text, dimensions), atol=1e-6)


def test_batches_respect_inputs_and_tokens_per_request():
    estimator = TokenEstimator(bytes_per_token=4)
    items = [(i, "x" * 400) for i in range(10)]  # 100 tokens each
    batches = shape_batches(items, RequestLimits(max_tokens_per_request=350), estimator, 100)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    batches = shape_batches(items, RequestLimits(), estimator, max_inputs=4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [key for batch in batches for key, _ in batch] == list(range(10))


def test_estimator_learns_the_providers_token_count():
    estimator = TokenEstimator()
    texts = ["y" * 1000]
    for _ in range(30):
        estimator.observe(texts, 250)
    assert estimator.estimate("z" * 1000) == pytest.approx(250, rel=0.02)


def test_concurrent_batches_come_back_in_order():
    texts = [f"text number {i}" for i in range(100)]
    with EmbeddingServer(dimensions=8) as server:
        dispatcher = dispatcher_for(server)
        assert_vectors(texts, dispatcher.embed(texts))
        assert server.request_count == 7
        assert dispatcher.stats.requests == 7 and dispatcher.stats.tokens > 0
        dispatcher.close()


def test_rate_limits_and_server_errors_are_retried_after_the_asked_delay():
    texts = [f"t{i}" for i in range(40)]
    with EmbeddingServer(dimensions=8, retry_after_seconds=0.05) as server:
        server.fail_next(3, status=429)
        server.fail_next(2, status=503)
        dispatcher = dispatcher_for(server, max_in_flight=1, max_retries=6)
        assert_vectors(texts, dispatcher.embed(texts))
        assert dispatcher.stats.rate_limited == 3
        assert dispatcher.stats.retries == 5
        dispatcher.close()


def test_a_batch_refused_as_too_large_is_split():
    texts = [f"t{i}" for i in range(10)]
    with EmbeddingServer(dimensions=8, max_inputs_per_request=3) as server:
        dispatcher = dispatcher_for(server, max_batch_inputs=10)
        assert_vectors(texts, dispatcher.embed(texts))
        assert dispatcher.stats.splits >= 2
        dispatcher.close()


def test_a_provider_that_keeps_failing_ends_with_its_url_and_status():
    with EmbeddingServer(dimensions=8, retry_after_seconds=0.01) as server:
        server.fail_next(100, status=500)
        dispatcher = dispatcher_for(server, max_retries=2)
        with pytest.raises(EmbeddingError) as raised:
            dispatcher.embed(["a"])
        assert server.base_url in str(raised.value) and "HTTP 500" in str(raised.value)
        assert server.request_count == 3
        dispatcher.close()


def test_a_response_slower_than_the_timeout_is_retried_then_reported():
    with EmbeddingServer(dimensions=8, latency_seconds=1.0) as server:
        engine = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=0.2)
        dispatcher = EmbeddingDispatcher(engine, max_batch_inputs=8, max_in_flight=1, max_retries=1)
        with pytest.raises(EmbeddingError) as raised:
            dispatcher.embed(["slow"])
        assert server.base_url in str(raised.value) and "timed out" in str(raised.value).lower()
        assert dispatcher.stats.retries == 1
        dispatcher.close()

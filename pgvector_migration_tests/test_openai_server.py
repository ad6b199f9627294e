"""Tests for the fake OpenAI embeddings server, over real HTTP with the real SDK."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import openai
import pytest

from pgvector_migration_testing.embedding_vectors import count_tokens, expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import RateLimitDecision, StaticRateLimiter

MODEL = "text-embedding-3-small"
KEY = "sk-test-key"


def make_client(server: EmbeddingServer, api_key: str = KEY, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key=api_key, **kwargs)


def raw_request(
    url: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers.items()), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), json.loads(exc.read())


@pytest.fixture
def server():
    with EmbeddingServer(dimensions=8, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def client(server):
    with make_client(server) as c:
        yield c


# -- deterministic vectors ---------------------------------------------------


def test_expected_embedding_is_deterministic_and_normalised():
    a = expected_embedding(MODEL, "hello", 16)
    assert a == expected_embedding(MODEL, "hello", 16)
    assert len(a) == 16
    assert all(isinstance(x, float) for x in a)
    assert abs(np.linalg.norm(a) - 1.0) < 1e-6
    assert a != expected_embedding(MODEL, "hello!", 16)
    assert a != expected_embedding("other-model", "hello", 16)
    with pytest.raises(ValueError):
        expected_embedding(MODEL, "x", 0)


# -- SDK round trips ---------------------------------------------------------


def test_single_string_input_default_sdk_encoding(server, client):
    resp = client.embeddings.create(model=MODEL, input="hello world")
    # The SDK asks for base64 by default and decodes it transparently.
    assert server.requests[0].encoding_format == "base64"
    assert resp.object == "list"
    assert resp.model == MODEL
    assert len(resp.data) == 1
    assert resp.data[0].index == 0
    assert resp.data[0].object == "embedding"
    np.testing.assert_allclose(
        resp.data[0].embedding, expected_embedding(MODEL, "hello world", 8), atol=1e-6
    )
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == count_tokens("hello world")


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_list_input_explicit_encodings(server, client, encoding_format):
    texts = ["alpha", "beta", "gamma", "ünïcödé ✓"]
    resp = client.embeddings.create(model=MODEL, input=texts, encoding_format=encoding_format)
    assert [d.index for d in resp.data] == [0, 1, 2, 3]
    for text, item in zip(texts, resp.data, strict=True):
        if encoding_format == "base64":
            # Explicit base64: the SDK hands back the raw string.
            assert isinstance(item.embedding, str)
            vector = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4").tolist()
        else:
            vector = item.embedding
        np.testing.assert_allclose(vector, expected_embedding(MODEL, text, 8), atol=1e-6)
    assert resp.usage.total_tokens == sum(count_tokens(t) for t in texts)
    assert server.inputs == texts


def test_float_and_base64_agree_exactly(server, client):
    as_float = client.embeddings.create(model=MODEL, input="same", encoding_format="float")
    as_default = client.embeddings.create(model=MODEL, input="same")
    assert as_float.data[0].embedding == as_default.data[0].embedding
    assert as_float.data[0].embedding == expected_embedding(MODEL, "same", 8)


def test_dimensions_override(server, client):
    resp = client.embeddings.create(model=MODEL, input="x", dimensions=3)
    assert len(resp.data[0].embedding) == 3
    np.testing.assert_allclose(resp.data[0].embedding, expected_embedding(MODEL, "x", 3), atol=1e-6)
    assert server.requests[-1].dimensions == 3
    server.dimensions = 5  # runtime change of the default
    resp = client.embeddings.create(model=MODEL, input="x")
    assert len(resp.data[0].embedding) == 5


def test_models_endpoint_lists_models_seen(server, client):
    client.embeddings.create(model="model-a", input="x")
    client.embeddings.create(model="model-b", input="x")
    assert [m.id for m in client.models.list()] == ["model-a", "model-b"]
    assert client.models.retrieve("model-a").id == "model-a"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


# -- auth and errors ---------------------------------------------------------


def test_missing_or_wrong_key_gets_401(server):
    with (
        make_client(server, api_key="sk-wrong") as bad,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        bad.embeddings.create(model=MODEL, input="x")
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert info.value.type == "invalid_request_error"

    status, _, body = raw_request(server.base_url + "/embeddings", {"model": MODEL, "input": "x"})
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    assert isinstance(body["error"]["message"], str)

    assert [(r.status, r.authorization) for r in server.requests] == [
        (401, "Bearer sk-wrong"),
        (401, None),
    ]
    assert server.inputs == []


def test_fail_next_then_recovers(server, client):
    server.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            client.embeddings.create(model=MODEL, input="x")
        assert info.value.status_code == 503
    resp = client.embeddings.create(model=MODEL, input="x")
    assert len(resp.data) == 1
    assert [r.status for r in server.requests] == [503, 503, 200]
    assert server.inputs == ["x"]


def test_fail_next_with_sdk_retries(server):
    # Calls queue up; the SDK honours retry-after-ms (50 ms by default).
    server.fail_next(1, status=429)
    server.fail_next(1, status=429)
    start = time.monotonic()
    with make_client(server, max_retries=2) as retrying:
        resp = retrying.embeddings.create(model=MODEL, input="x")
    assert time.monotonic() - start < 0.5
    assert len(resp.data) == 1
    assert [r.status for r in server.requests] == [429, 429, 200]


def test_fail_first_at_construction():
    with EmbeddingServer(fail_first=1, fail_status=502) as srv, make_client(srv) as c:
        with pytest.raises(openai.InternalServerError):
            c.embeddings.create(model=MODEL, input="x")
        assert c.embeddings.create(model=MODEL, input="x").data


def test_429_has_retry_after_headers(server, client):
    server.retry_after_seconds = 1.5
    server.fail_next(1, status=429)
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model=MODEL, input="x")
    headers = info.value.response.headers
    assert headers["retry-after-ms"] == "1500"
    assert float(headers["retry-after"]) == 1.5
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.body["message"]


def test_oversize_batch_is_400(server, client):
    server.max_inputs_per_request = 3
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=["a", "b", "c", "d"])
    assert info.value.status_code == 400
    assert "maximum is 3" in info.value.message
    assert client.embeddings.create(model=MODEL, input=["a", "b", "c"]).data
    assert [r.status for r in server.requests] == [400, 200]
    assert server.requests[0].inputs == ["a", "b", "c", "d"]
    assert server.inputs == ["a", "b", "c"]


def test_default_batch_limit_is_2048():
    with EmbeddingServer(dimensions=2) as srv, make_client(srv) as c:
        assert len(c.embeddings.create(model=MODEL, input=["t"] * 2048).data) == 2048
        with pytest.raises(openai.BadRequestError):
            c.embeddings.create(model=MODEL, input=["t"] * 2049)


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL},
        {"input": "x"},
        {"model": MODEL, "input": []},
        {"model": MODEL, "input": [""]},
        {"model": MODEL, "input": [[1, 2, 3]]},
        {"model": MODEL, "input": "x", "dimensions": 0},
        {"model": MODEL, "input": "x", "encoding_format": "int8"},
        b"{not json",
    ],
)
def test_invalid_bodies_are_400(server, body):
    status, _, payload = raw_request(
        server.base_url + "/embeddings", body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert server.requests[-1].status == 400
    assert server.errors == []


def test_unknown_path_404_and_both_embedding_paths(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    status, _, body = raw_request(server.url + "/v1/nope", {"x": 1}, headers=auth)
    assert status == 404
    assert "error" in body
    status, _, _ = raw_request(server.url + "/v1/embeddings", method="GET", headers=auth)
    assert status == 405
    for path in ("/v1/embeddings", "/embeddings"):
        status, _, body = raw_request(
            server.url + path, {"model": MODEL, "input": "p"}, headers=auth
        )
        assert status == 200
        assert body["data"][0]["embedding"] == expected_embedding(MODEL, "p", 8)
    assert [r.path for r in server.requests] == ["/v1/embeddings", "/embeddings"]


def test_rate_limit_headers_on_every_response(server, client):
    raw = client.embeddings.with_raw_response.create(model=MODEL, input="x")
    names = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
    ]
    for name in names:
        assert int(raw.headers[name]) > 0
    status, headers, _ = raw_request(server.url + "/nowhere")
    assert status == 404
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in names:
        assert int(lowered[name]) > 0


def test_pluggable_rate_limiter_can_reject():
    class Deny(StaticRateLimiter):
        def admit(self, tokens: int) -> RateLimitDecision:
            return RateLimitDecision(allowed=False, headers=self.headers(), retry_after_seconds=2)

    with EmbeddingServer(rate_limiter=Deny()) as srv, make_client(srv) as c:
        with pytest.raises(openai.RateLimitError) as info:
            c.embeddings.create(model=MODEL, input="x")
        assert info.value.response.headers["retry-after-ms"] == "2000"
        assert info.value.response.headers["retry-after"] == "2"


# -- records, latency, concurrency, lifecycle --------------------------------


def test_request_records(server, client):
    client.embeddings.create(model=MODEL, input=["a", "b"])
    client.embeddings.create(model="other", input="c", encoding_format="float")
    assert server.request_count == 2
    first, second = server.requests
    assert first.inputs == ["a", "b"]
    assert first.model == MODEL
    assert first.authorization == f"Bearer {KEY}"
    assert first.status == 200
    assert first.dimensions == 8
    assert second.model == "other"
    assert second.encoding_format == "float"
    assert server.inputs == ["a", "b", "c"]
    server.reset()
    assert server.request_count == 0
    assert server.inputs == []


def test_latency(server, client):
    server.latency_seconds = 0.2
    start = time.monotonic()
    client.embeddings.create(model=MODEL, input="slow")
    assert time.monotonic() - start >= 0.2


def test_concurrent_requests_are_all_recorded(server):
    texts = [f"text-{i}" for i in range(40)]
    results: dict[str, list[float]] = {}
    with make_client(server) as c:

        def work(chunk: list[str]) -> None:
            resp = c.embeddings.create(model=MODEL, input=chunk)
            for text, item in zip(chunk, resp.data, strict=True):
                results[text] = item.embedding

        threads = [threading.Thread(target=work, args=(texts[i : i + 5],)) for i in range(0, 40, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert server.request_count == 8
    assert sorted(server.inputs) == sorted(texts)
    for text in texts:
        assert results[text] == expected_embedding(MODEL, text, 8)


def test_stop_closes_port_and_does_not_hang_with_open_connections():
    srv = EmbeddingServer().start()
    url = srv.base_url
    c = make_client(srv)  # its keep-alive connection stays open across stop()
    c.embeddings.create(model=MODEL, input="x")
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 1
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=url, api_key="k", max_retries=0).embeddings.create(
            model=MODEL, input="x"
        )
    c.close()
    with pytest.raises(RuntimeError):
        _ = srv.base_url

"""BudgetRateLimiter over real HTTP: budgets, 429s with retry headers, x-ratelimit-* headers."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

from pgvector_migration_testing.embedding_vectors import count_tokens
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import BudgetRateLimiter

MODEL = "text-embedding-3-small"
KEY = "sk-budget"


class FakeClock:
    """A clock the test moves by hand, so bucket levels are exact."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def text_of(tokens: int) -> str:
    text = "a" * (4 * tokens)
    assert count_tokens(text) == tokens
    return text


_clients: dict[tuple[str, int], openai.OpenAI] = {}


def post(server: EmbeddingServer, tokens: int, max_retries: int = 0) -> Any:
    """One embeddings request of `tokens` tokens; returns the raw SDK response (or raises).
    Clients are reused per (server, retries): building one costs tens of milliseconds."""
    key = (server.base_url, max_retries)
    if key not in _clients:
        _clients[key] = openai.OpenAI(
            base_url=server.base_url, api_key=KEY, max_retries=max_retries
        )
    client = _clients[key]
    return client.embeddings.with_raw_response.create(model=MODEL, input=[text_of(tokens)])


def rejected(server: EmbeddingServer, tokens: int) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as info:
        post(server, tokens)
    return info.value


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    for client in _clients.values():
        client.close()
    _clients.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def serve(limiter: BudgetRateLimiter) -> EmbeddingServer:
    return EmbeddingServer(dimensions=4, api_key=KEY, rate_limiter=limiter)


def test_format_duration_is_openais():
    fmt = BudgetRateLimiter.format_duration
    assert [fmt(s) for s in (0, 0.02, 0.0004, 1, 1.5, 17.28, 83.4, 360, 3600)] == [
        "0s",
        "20ms",
        "1ms",
        "1s",
        "1.5s",
        "17.28s",
        "1m23.4s",
        "6m0s",
        "1h0m0s",
    ]


def test_headers_report_limits_remaining_and_reset(clock):
    limiter = BudgetRateLimiter(6000, 600, clock=clock)
    with serve(limiter) as server:
        response = post(server, 1500)
        headers = response.headers
        assert headers["x-ratelimit-limit-requests"] == "600"
        assert headers["x-ratelimit-limit-tokens"] == "6000"
        assert headers["x-ratelimit-remaining-requests"] == "599"
        assert headers["x-ratelimit-remaining-tokens"] == "4500"
        # 6000 tokens/min refill at 100/s: 1500 tokens are back in 15 s; one request in 100 ms.
        assert headers["x-ratelimit-reset-tokens"] == "15s"
        assert headers["x-ratelimit-reset-requests"] == "100ms"
        clock.advance(7.5)
        # Every response carries the current state, even a 404.
        with (
            openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client,
            pytest.raises(openai.NotFoundError) as info,
        ):
            client.models.retrieve("never-seen")
        headers = info.value.response.headers
        assert headers["x-ratelimit-remaining-tokens"] == "5250"
        assert headers["x-ratelimit-reset-tokens"] == "7.5s"
        assert headers["x-ratelimit-remaining-requests"] == "600"
        assert headers["x-ratelimit-reset-requests"] == "0s"


def test_token_budget_gives_429_with_retry_after_then_admits(clock):
    limiter = BudgetRateLimiter(1200, 1000, clock=clock)  # 20 tokens/s
    with serve(limiter) as server:
        post(server, 1000)
        error = rejected(server, 300)  # 200 in the bucket: 100 missing = 5 s
        assert error.response.headers["retry-after-ms"] == "5000"
        assert error.response.headers["retry-after"] == "5"
        assert error.response.headers["x-ratelimit-remaining-tokens"] == "200"
        assert "tokens per min" in error.message
        clock.advance(4.99)
        error = rejected(server, 300)
        assert error.response.headers["retry-after-ms"] == "10"
        assert error.response.headers["retry-after"] == "1"
        clock.advance(0.01)
        assert post(server, 300).headers["x-ratelimit-remaining-tokens"] == "0"
        assert limiter.stats()["admitted_requests"] == 2
        assert limiter.stats()["admitted_tokens"] == 1300
        assert limiter.stats()["rejected_requests"] == 2


def test_request_budget_gives_429(clock):
    limiter = BudgetRateLimiter(1_000_000, 2, clock=clock)  # one request back every 30 s
    with serve(limiter) as server:
        post(server, 1)
        response = post(server, 1)
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"] == "1m0s"
        error = rejected(server, 1)
        assert error.response.headers["retry-after-ms"] == "30000"
        assert error.response.headers["retry-after"] == "30"
        assert "requests per min" in error.message
        clock.advance(30)
        post(server, 1)
        # Rejections cost nothing by default.
        assert limiter.stats()["rejected_requests"] == 1
        assert server.requests[-1].ok


def test_rejected_requests_can_count_against_the_request_budget(clock):
    limiter = BudgetRateLimiter(1_000_000, 60, count_rejected_requests=True, clock=clock)
    with serve(limiter) as server:
        for _ in range(60):
            post(server, 1)
        clock.advance(0.5)  # half a request back
        rejected(server, 1)  # ... and spent on the rejection
        assert limiter.headers()["x-ratelimit-remaining-requests"] == "0"
        clock.advance(0.5)
        rejected(server, 1)


def test_request_larger_than_the_budget_is_refused_without_retry_headers(clock):
    limiter = BudgetRateLimiter(100, 100, clock=clock)
    with serve(limiter) as server:
        error = rejected(server, 101)
        assert "Request too large" in error.message
        assert "retry-after" not in error.response.headers
        assert "retry-after-ms" not in error.response.headers


def test_concurrent_requests_never_overspend(clock):
    # Eight at once: the server's listen backlog is 5, more would wait for SYN retransmits.
    limiter = BudgetRateLimiter(400, 10_000, clock=clock)
    statuses: list[int] = []
    lock = threading.Lock()
    with serve(limiter) as server:

        def one() -> None:
            try:
                status = post(server, 100).status_code
            except openai.RateLimitError as error:
                status = error.status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [200] * 4 + [429] * 4
    assert limiter.stats()["admitted_tokens"] == 400


def test_sdk_retries_honour_retry_after_ms():
    limiter = BudgetRateLimiter(6000, 10_000)  # real clock: 100 tokens/s
    with serve(limiter) as server:
        post(server, 5990)
        started = time.monotonic()
        post(server, 50, max_retries=3)
        elapsed = time.monotonic() - started
    statuses = [record.status for record in server.requests]
    assert statuses[0] == 200 and statuses[-1] == 200
    assert 429 in statuses
    assert 0.35 <= elapsed < 2.5
    stats = limiter.stats()
    assert stats["admitted_requests"] == 2
    assert stats["first_admitted_at"] <= stats["last_admitted_at"]

"""The fake OpenAI server's rate limiters: what it answers 429 to, and the ``x-ratelimit-*``
headers it sends on every response.

:class:`StaticRateLimiter` (the default) admits everything; :class:`BudgetRateLimiter` is a
real requests-per-minute and tokens-per-minute budget, like an OpenAI project's, for the tests
and benchmarks of a client's pacing. Anything with ``admit(tokens) -> RateLimitDecision`` and
``headers() -> dict[str, str]`` can take their place.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_RATE_LIMIT_REQUESTS",
    "DEFAULT_RATE_LIMIT_TOKENS",
    "BudgetRateLimiter",
    "RateLimitDecision",
    "StaticRateLimiter",
]

DEFAULT_RATE_LIMIT_REQUESTS = 1_000_000
DEFAULT_RATE_LIMIT_TOKENS = 1_000_000_000


@dataclass
class RateLimitDecision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    message: str = "Rate limit reached."


class StaticRateLimiter:
    """Admits everything and reports large, fixed ``x-ratelimit-*`` values.

    A budget-enforcing limiter can replace it: anything with
    ``admit(tokens) -> RateLimitDecision`` (called once per embeddings
    request that passed auth and fault injection) and ``headers() ->
    dict[str, str]`` (sent on every response) will do.
    """

    def __init__(
        self,
        requests_limit: int = DEFAULT_RATE_LIMIT_REQUESTS,
        tokens_limit: int = DEFAULT_RATE_LIMIT_TOKENS,
    ) -> None:
        self.requests_limit = requests_limit
        self.tokens_limit = tokens_limit

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(self.requests_limit),
            "x-ratelimit-reset-requests": "0s",
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(self.tokens_limit),
            "x-ratelimit-reset-tokens": "0s",
        }

    def admit(self, tokens: int) -> RateLimitDecision:
        return RateLimitDecision(allowed=True, headers=self.headers())


class BudgetRateLimiter:
    """A real requests-per-minute and tokens-per-minute budget, like an OpenAI project's.

    Each budget is a token bucket holding at most one minute's worth and refilling
    continuously at ``limit / 60`` per second (so a full bucket allows a burst of one
    minute's budget, and the sustained rate is exactly the limit). A request is admitted
    only when both buckets hold enough (one request, and its tokens as counted by
    :func:`~pgvector_migration_testing.embedding_vectors.count_tokens`); otherwise it gets a
    429 whose ``retry-after-ms`` (rounded up) and ``retry-after`` (whole seconds, rounded up,
    as HTTP requires) say when it would be admitted. A request with more tokens than the
    whole per-minute budget can never be admitted: its 429 carries no retry headers.
    Rejected requests cost nothing unless ``count_rejected_requests`` (OpenAI says
    unsuccessful requests count toward the request limit).

    ``headers()`` reports ``x-ratelimit-limit-*``, ``x-ratelimit-remaining-*`` (whole units
    in the bucket now) and ``x-ratelimit-reset-*`` (time until the bucket is full again, in
    OpenAI's format: ``"6m0s"``, ``"1.5s"``, ``"20ms"``). Thread-safe; ``clock`` (seconds,
    monotonic) can be replaced to make tests deterministic. Counters of admitted and rejected
    requests are in :meth:`stats`.
    """

    def __init__(
        self,
        tokens_per_minute: int,
        requests_per_minute: int,
        *,
        count_rejected_requests: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tokens_per_minute < 1 or requests_per_minute < 1:
            raise ValueError("tokens_per_minute and requests_per_minute must be positive")
        self.tokens_limit = int(tokens_per_minute)
        self.requests_limit = int(requests_per_minute)
        self.count_rejected_requests = count_rejected_requests
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._updated = now
        self._tokens = float(self.tokens_limit)
        self._requests = float(self.requests_limit)
        self._admitted_requests = 0
        self._admitted_tokens = 0
        self._rejected_requests = 0
        self._first_admitted_at: float | None = None
        self._last_admitted_at: float | None = None

    # -- buckets (call with the lock held) --------------------------------

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(
            float(self.tokens_limit), self._tokens + elapsed * self.tokens_limit / 60.0
        )
        self._requests = min(
            float(self.requests_limit), self._requests + elapsed * self.requests_limit / 60.0
        )

    def _headers_now(self) -> dict[str, str]:
        tokens_reset = (self.tokens_limit - self._tokens) * 60.0 / self.tokens_limit
        requests_reset = (self.requests_limit - self._requests) * 60.0 / self.requests_limit
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(max(0, math.floor(self._requests + 1e-9))),
            "x-ratelimit-reset-requests": self.format_duration(requests_reset),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(max(0, math.floor(self._tokens + 1e-9))),
            "x-ratelimit-reset-tokens": self.format_duration(tokens_reset),
        }

    # -- the limiter protocol -----------------------------------------------

    def headers(self) -> dict[str, str]:
        with self._lock:
            self._refill()
            return self._headers_now()

    def admit(self, tokens: int) -> RateLimitDecision:
        with self._lock:
            self._refill()
            if tokens > self.tokens_limit:
                self._rejected_requests += 1
                return RateLimitDecision(
                    allowed=False,
                    headers=self._headers_now(),
                    message=(
                        "Request too large on tokens per min (TPM): "
                        f"Limit {self.tokens_limit}, Requested {tokens}."
                    ),
                )
            requests_wait = max(0.0, (1 - self._requests) * 60.0 / self.requests_limit)
            tokens_wait = max(0.0, (tokens - self._tokens) * 60.0 / self.tokens_limit)
            wait = max(requests_wait, tokens_wait)
            if wait > 1e-6:  # below a microsecond is float rounding, not a shortfall
                self._rejected_requests += 1
                if self.count_rejected_requests:
                    self._requests = max(0.0, self._requests - 1)
                wait_ms = max(1, math.ceil(round(wait * 1000, 6)))
                headers = self._headers_now()
                headers["retry-after-ms"] = str(wait_ms)
                headers["retry-after"] = str(max(1, math.ceil(wait_ms / 1000)))
                if tokens_wait >= requests_wait:
                    used = self.tokens_limit - math.floor(self._tokens + 1e-9)
                    message = (
                        "Rate limit reached on tokens per min (TPM): "
                        f"Limit {self.tokens_limit}, Used {used}, Requested {tokens}. "
                        f"Please try again in {self.format_duration(wait)}."
                    )
                else:
                    message = (
                        "Rate limit reached on requests per min (RPM): "
                        f"Limit {self.requests_limit}, Used {self.requests_limit}, Requested 1. "
                        f"Please try again in {self.format_duration(wait)}."
                    )
                # The retry headers are in `headers` (an integer `retry-after`, as HTTP
                # wants), so `retry_after_seconds` stays None and the server keeps them.
                return RateLimitDecision(allowed=False, headers=headers, message=message)
            self._requests -= 1
            self._tokens -= tokens
            now = self._updated
            self._admitted_requests += 1
            self._admitted_tokens += tokens
            if self._first_admitted_at is None:
                self._first_admitted_at = now
            self._last_admitted_at = now
            return RateLimitDecision(allowed=True, headers=self._headers_now())

    # -- observations -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Admitted requests and tokens, rejected requests, and the clock times of the first
        and last admitted request (``None`` before any)."""
        with self._lock:
            return {
                "admitted_requests": self._admitted_requests,
                "admitted_tokens": self._admitted_tokens,
                "rejected_requests": self._rejected_requests,
                "first_admitted_at": self._first_admitted_at,
                "last_admitted_at": self._last_admitted_at,
            }

    @staticmethod
    def format_duration(seconds: float) -> str:
        """A duration as OpenAI's ``x-ratelimit-reset-*`` headers write it (Go's format, to
        the millisecond, rounded up): ``"0s"``, ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``,
        ``"1h0m0s"``."""
        ms = max(0, math.ceil(round(seconds * 1000, 6)))
        if ms == 0:
            return "0s"
        if ms < 1000:
            return f"{ms}ms"
        hours, rest = divmod(ms, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
        out = f"{hours}h" if hours else ""
        if hours or minutes:
            out += f"{minutes}m"
        return f"{out}{secs}s"

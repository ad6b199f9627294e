"""Pacing embedding requests just under a provider's budget.

Requests and tokens per minute are counted in sliding windows (the `limits` library) against a
budget that comes from configuration or, when the provider sends them, from its
`x-ratelimit-limit-*` headers, kept a little under it. Besides the minute, a ten-second window
holds a sixth of the budget, so the minute's budget is spread evenly instead of being spent in
a burst at its start (providers refill continuously). A 429 pauses every sender for the
`retry-after` the provider asks for and lowers the budget a step; successes raise it back
slowly (additive increase, multiplicative decrease), so the rate settles just under the limit
instead of oscillating.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond, storage, strategies

HEADROOM = 0.97
SPREAD_SECONDS = 10
# A request carries at most this many seconds of the token budget: small requests keep the
# send rate smooth (measured: ~100k-token requests against a 1M TPM budget gave 429s and 87%
# of the budget).
REQUEST_SECONDS = 2
DECREASE = 0.9
INCREASE_PER_SUCCESS = 0.01
MIN_FACTOR = 0.2


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class RequestPacer:
    """Blocks each sender until its request fits the per-minute request and token budgets."""

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock=time.time,
        sleep=time.sleep,
    ) -> None:
        self._configured = (requests_per_minute, tokens_per_minute)
        self._learned: tuple[int | None, int | None] = (None, None)
        self._factor = 1.0
        self._cooldown_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())

    def budgets(self) -> tuple[int | None, int | None]:
        """The (requests, tokens) per minute of the windows, under the provider's limits by the
        headroom; None means unlimited. The AIMD factor scales what each request costs, so the
        windows themselves stay put."""

        def effective(configured: int | None, learned: int | None) -> int | None:
            known = [value for value in (configured, learned) if value]
            return max(1, int(min(known) * HEADROOM)) if known else None

        return (
            effective(self._configured[0], self._learned[0]),
            effective(self._configured[1], self._learned[1]),
        )

    def acquire(self, tokens: int) -> None:
        """Wait until a request of `tokens` tokens may be sent, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._cooldown_until - now
                if wait <= 0:
                    wait = self._try_take(tokens, now)
                    if wait <= 0:
                        return
            self._sleep(wait)

    def _try_take(self, tokens: int, now: float) -> float:
        requests_budget, tokens_budget = self.budgets()
        items = []
        if requests_budget:
            items += self._windows("requests", requests_budget, 1)
        if tokens_budget:
            items += self._windows("tokens", tokens_budget, math.ceil(tokens / self._factor))
        waits = [
            max(0.05, self._window.get_window_stats(item, name).reset_time - now)
            for item, name, cost in items
            if not self._window.test(item, name, cost=cost)
        ]
        if waits:
            return min(min(waits), 1.0)
        for item, name, cost in items:
            self._window.hit(item, name, cost=cost)
        return 0.0

    @staticmethod
    def _windows(name: str, per_minute: int, cost: int) -> list:
        spread = max(1, per_minute * SPREAD_SECONDS // 60)
        return [
            (RateLimitItemPerMinute(per_minute), name, min(cost, per_minute)),
            (RateLimitItemPerSecond(spread, SPREAD_SECONDS), f"{name}-spread", min(cost, spread)),
        ]

    def max_request_tokens(self) -> int | None:
        """The largest request to send: a couple of seconds of the token budget, so requests
        flow evenly instead of in large lumps the provider's bucket cannot take at once."""
        tokens_budget = self.budgets()[1]
        return max(1, tokens_budget * REQUEST_SECONDS // 60) if tokens_budget else None

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the budget from a response's headers and count a success."""
        learned = (
            _header_int(headers, "x-ratelimit-limit-requests"),
            _header_int(headers, "x-ratelimit-limit-tokens"),
        )
        with self._lock:
            self._learned = (learned[0] or self._learned[0], learned[1] or self._learned[1])
            self._factor = min(1.0, self._factor + INCREASE_PER_SUCCESS)

    def rate_limited(self, retry_after_seconds: float | None) -> None:
        """A 429: everyone pauses for what the provider asked, and the budget steps down."""
        with self._lock:
            pause = retry_after_seconds if retry_after_seconds is not None else 1.0
            self._cooldown_until = max(self._cooldown_until, self._clock() + pause)
            self._factor = max(MIN_FACTOR, self._factor * DECREASE)

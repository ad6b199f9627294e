"""Pacing embedding requests just under a provider's budget, with enough of them in flight.

The budget (requests and tokens per minute) comes from configuration or, when the provider
sends them, from its `x-ratelimit-limit-*` headers, kept a little under it. It is spent from
token buckets shaped like the provider's own: they refill continuously at the budget, and hold
what the provider's bucket holds (`x-ratelimit-remaining-*` plus what refills until
`x-ratelimit-reset-*`: a minute of budget at OpenAI), so a full bucket is spent at once instead
of being rationed; without those headers they hold ten seconds of budget, so the minute is
spread evenly. A 429 pauses every sender for the `retry-after` the provider asks for and
lowers the budget a step; successes raise it back slowly (additive increase, multiplicative
decrease), so the rate settles just under the limit instead of oscillating.

How many requests are in flight follows from Little's law: the rate to send at (the refill, plus
what spends a full bucket in BUCKET_SPEND_SECONDS) times the measured latency of a request,
divided by its size; a 429 halves it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

HEADROOM = 0.97
SPREAD_SECONDS = 10
# A request carries at most this many seconds of the token budget: small requests keep the
# send rate smooth (measured: ~100k-token requests against a 1M TPM budget gave 429s and 87%
# of the budget).
REQUEST_SECONDS = 2
DECREASE = 0.9
INCREASE_PER_SUCCESS = 0.01
MIN_FACTOR = 0.2
# In-flight requests: at most this many (each holds one response, a few MB at 1536 dimensions),
# and at least this many until latency is measured.
MAX_IN_FLIGHT = 16
INITIAL_IN_FLIGHT = 4
# A full bucket is spent over about this many seconds on top of the refill: fast enough that it
# is empty well before a large run ends (what is left in it at the end is budget not used), slow
# enough that answers do not pile up faster than they are written.
BUCKET_SPEND_SECONDS = 15
# Weight of the newest request in the running latency and size averages.
SMOOTHING = 0.2
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """A whole-number header (`x-ratelimit-limit-tokens`), or None when absent or not a number."""
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def reset_seconds(value: str | None) -> float | None:
    """OpenAI's `x-ratelimit-reset-*` ("1m30s", "1.5s", "20ms", "0s") in seconds."""
    if not value:
        return None
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


class _Bucket:
    """A token bucket: `capacity` at most, refilled at `per_second`; times from the caller."""

    def __init__(self, capacity: float, per_second: float, now: float) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.level = capacity
        self._updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._updated) * self.per_second)
        self._updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` is in the bucket (0 when it is now)."""
        missing = min(cost, self.capacity) - self.level
        return max(0.0, missing / self.per_second) if missing > 0 else 0.0


class RequestPacer:
    """Blocks each sender until its request fits the request and token budgets."""

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        clock=time.monotonic,
        sleep=time.sleep,
    ) -> None:
        self._configured = (requests_per_minute, tokens_per_minute)
        self._learned: tuple[int | None, int | None] = (None, None)
        self._capacity: dict[str, float] = {}
        self._remaining: dict[str, int] = {}
        self._factor = 1.0
        self._cooldown_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def budgets(self) -> tuple[int | None, int | None]:
        """The (requests, tokens) per minute spent, under the provider's limits by the
        headroom; None means unlimited."""

        def effective(configured: int | None, learned: int | None) -> int | None:
            known = [value for value in (configured, learned) if value]
            return max(1, int(min(known) * HEADROOM)) if known else None

        return (
            effective(self._configured[0], self._learned[0]),
            effective(self._configured[1], self._learned[1]),
        )

    def _bucket(self, name: str, per_minute: int, now: float) -> _Bucket:
        """The bucket of one budget, following the budget, the bucket size the provider showed
        and the AIMD factor."""
        capacity = self._capacity.get(name) or per_minute * SPREAD_SECONDS / 60
        capacity = max(1.0, min(capacity * HEADROOM, per_minute))
        per_second = per_minute * self._factor / 60
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(capacity, per_second, now)
            if name in self._remaining:
                bucket.level = min(capacity, self._remaining[name] * HEADROOM)
        bucket.refill(now)
        bucket.capacity, bucket.per_second = capacity, per_second
        bucket.level = min(bucket.level, capacity)
        return bucket

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
            self._sleep(min(max(wait, 0.01), 1.0))

    def _try_take(self, tokens: int, now: float) -> float:
        requests_budget, tokens_budget = self.budgets()
        wanted = []
        if requests_budget:
            wanted.append((self._bucket("requests", requests_budget, now), 1))
        if tokens_budget:
            wanted.append((self._bucket("tokens", tokens_budget, now), tokens))
        wait = max((bucket.wait_for(cost) for bucket, cost in wanted), default=0.0)
        if wait > 0:
            return wait
        for bucket, cost in wanted:
            bucket.level -= min(cost, bucket.capacity)
        return 0.0

    def max_request_tokens(self) -> int | None:
        """The largest request to send: a couple of seconds of the token budget, so requests
        flow evenly instead of in large lumps the provider's bucket cannot take at once."""
        tokens_budget = self.budgets()[1]
        return max(1, tokens_budget * REQUEST_SECONDS // 60) if tokens_budget else None

    def tokens_ready(self) -> tuple[float, float] | None:
        """(tokens in the bucket now, tokens refilled per second), or None without a budget."""
        tokens_budget = self.budgets()[1]
        if not tokens_budget:
            return None
        with self._lock:
            bucket = self._bucket("tokens", tokens_budget, self._clock())
            return bucket.level, bucket.per_second

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the budget and the size of the provider's bucket from a response's headers,
        and count a success."""
        learned = (
            header_int(headers, "x-ratelimit-limit-requests"),
            header_int(headers, "x-ratelimit-limit-tokens"),
        )
        with self._lock:
            self._learned = (learned[0] or self._learned[0], learned[1] or self._learned[1])
            for name, limit in zip(("requests", "tokens"), self._learned, strict=True):
                remaining = header_int(headers, f"x-ratelimit-remaining-{name}")
                reset = reset_seconds(headers.get(f"x-ratelimit-reset-{name}"))
                if remaining is not None:
                    self._remaining[name] = remaining
                if limit and remaining is not None and reset is not None:
                    # What is there plus what refills until the bucket is full: its size.
                    size = min(float(limit), remaining + reset * limit / 60)
                    self._capacity[name] = max(self._capacity.get(name, 0.0), size)
            self._factor = min(1.0, self._factor + INCREASE_PER_SUCCESS)

    def settle(self, charged: int, counted: int) -> None:
        """The provider counted `counted` tokens for a request charged at the estimate
        `charged`: the difference goes back to the bucket (or is taken from it), so an
        estimate that is still learning neither wastes the budget nor overdraws it."""
        if counted <= 0:
            return
        with self._lock:
            bucket = self._buckets.get("tokens")
            if bucket is not None:
                bucket.level = min(bucket.capacity, bucket.level + charged - counted)

    def rate_limited(self, retry_after_seconds: float | None) -> None:
        """A 429: everyone pauses for what the provider asked, and the budget steps down."""
        with self._lock:
            pause = retry_after_seconds if retry_after_seconds is not None else 1.0
            self._cooldown_until = max(self._cooldown_until, self._clock() + pause)
            self._factor = max(MIN_FACTOR, self._factor * DECREASE)
            for bucket in self._buckets.values():
                bucket.level = min(bucket.level, 0.0)


class InFlightLimit:
    """How many requests may be in flight: enough to cover the measured latency at the rate
    the budget allows (Little's law), more while the provider's bucket holds more than its
    refill, halved by a 429 and grown back by one a success; between 1 and `ceiling`.
    Without a known budget it stays at `initial`."""

    def __init__(self, ceiling: int = MAX_IN_FLIGHT, initial: int = INITIAL_IN_FLIGHT) -> None:
        self.ceiling = max(1, ceiling)
        self._initial = min(self.ceiling, initial)
        self._wanted = self._initial
        self._cap = self.ceiling
        self._latency: float | None = None
        self._tokens: float | None = None
        self._active = 0
        self._success_since_halving = True
        self._condition = threading.Condition()

    @property
    def limit(self) -> int:
        return max(1, min(self._wanted, self._cap))

    @property
    def active(self) -> int:
        return self._active

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots while a request is in flight."""
        with self._condition:
            self._condition.wait_for(lambda: self._active < self.limit)
            self._active += 1
        try:
            yield
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify_all()

    def observe(
        self, seconds: float, tokens: int, ready: tuple[float, float] | None = None
    ) -> None:
        """A request of `tokens` tokens took `seconds`; `ready` is the pacer's (tokens in the
        bucket, tokens refilled per second)."""
        with self._condition:
            if self._latency is None or self._tokens is None:
                self._latency, self._tokens = seconds, float(max(1, tokens))
            else:
                self._latency += SMOOTHING * (seconds - self._latency)
                self._tokens += SMOOTHING * (max(1, tokens) - self._tokens)
            if ready is None:
                # No budget known: no rate to cover, so as many as before anything was measured.
                needed = self._initial
            else:
                level, per_second = ready
                rate = per_second + level / BUCKET_SPEND_SECONDS
                needed = math.ceil(rate * self._latency / self._tokens) + 1
            self._wanted = max(1, min(self.ceiling, needed))
            self._cap = min(self.ceiling, self._cap + 1)
            self._success_since_halving = True
            self._condition.notify_all()

    def rate_limited(self) -> None:
        """A 429: half as many in flight; successes add them back one by one. The 429s of
        requests that were already in flight together count once."""
        with self._condition:
            if self._success_since_halving:
                self._cap = max(1, self.limit // 2)
                self._success_since_halving = False

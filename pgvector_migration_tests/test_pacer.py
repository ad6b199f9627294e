"""The request pacer and the in-flight limit, driven by a manual clock: every wait is computed,
never slept, so each figure below is exact and the tests take no wall time."""

from __future__ import annotations

import pytest

from pgvector_migration.embedding.pacing import (
    DECREASE,
    HEADROOM,
    INCREASE_PER_SUCCESS,
    MIN_FACTOR,
    SPREAD_SECONDS,
    InFlightLimit,
    RequestPacer,
    reset_seconds,
)


class ManualClock:
    """A monotonic clock that moves only when the pacer sleeps, recording each sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def paced(requests_per_minute=None, tokens_per_minute=None) -> tuple[RequestPacer, ManualClock]:
    clock = ManualClock()
    pacer = RequestPacer(requests_per_minute, tokens_per_minute, clock=clock, sleep=clock.sleep)
    return pacer, clock


# 60,000 tokens per minute, kept under by the headroom: 58,200 a minute, 970 a second.
TPM = 60_000
BUDGET = int(TPM * HEADROOM)
REFILL = BUDGET / 60
# The pacer sleeps at least 0.01 s a step, so a computed wait may end up to a step later
# (when the refill lands a rounding error short).
STEP = 0.0101


# --- the step down after a 429 and the recovery -------------------------------------------


def test_a_429_pauses_for_the_retry_after_the_provider_asked():
    pacer, clock = paced(tokens_per_minute=TPM)
    pacer.rate_limited(2.0)
    pacer.acquire(1)
    assert clock.now == pytest.approx(102.0)
    assert max(clock.slept) <= 1.0  # sleeps in short steps, so a later pause is seen


def test_a_429_without_retry_after_pauses_one_second():
    pacer, clock = paced(tokens_per_minute=TPM)
    pacer.rate_limited(None)
    pacer.acquire(1)
    assert clock.now == pytest.approx(101.0)


def test_a_429_empties_the_bucket_so_the_next_request_waits_for_the_refill():
    pacer, clock = paced(tokens_per_minute=TPM)
    assert pacer.tokens_ready()[0] > 9000  # ten seconds of budget, under the headroom
    pacer.rate_limited(0.0)
    assert pacer.tokens_ready()[0] == 0.0
    pacer.acquire(800)
    # The refill is stepped down too: 800 tokens at 0.9 of 970 a second.
    assert clock.now - 100.0 == pytest.approx(800 / (REFILL * DECREASE), abs=STEP)


def test_each_429_steps_the_refill_down_to_a_floor():
    pacer, _ = paced(tokens_per_minute=TPM)
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL)
    pacer.rate_limited(0.0)
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL * DECREASE)
    pacer.rate_limited(0.0)
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL * DECREASE**2)
    for _ in range(100):
        pacer.rate_limited(0.0)
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL * MIN_FACTOR)


def test_successes_raise_the_refill_back_slowly_and_never_past_the_budget():
    pacer, _ = paced(tokens_per_minute=TPM)
    pacer.rate_limited(0.0)
    for _ in range(5):
        pacer.observe({})
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL * (DECREASE + 5 * INCREASE_PER_SUCCESS))
    for _ in range(100):
        pacer.observe({})
    assert pacer.tokens_ready()[1] == pytest.approx(REFILL)


def test_the_pause_is_never_shortened_by_a_later_429_asking_less():
    pacer, clock = paced(tokens_per_minute=TPM)
    pacer.rate_limited(3.0)
    pacer.rate_limited(0.5)
    pacer.acquire(1)
    assert clock.now == pytest.approx(103.0)


def test_a_429_halves_the_in_flight_limit_once_per_group_of_429s():
    limit = InFlightLimit(ceiling=16, initial=16)
    assert limit.limit == 16
    limit.rate_limited()
    assert limit.limit == 8
    # The 429s of the requests that were in flight together are one congestion: halved once.
    limit.rate_limited()
    limit.rate_limited()
    assert limit.limit == 8
    # A success between them starts a new group: the next 429 halves again.
    limit.observe(1.0, 1000, None)
    assert limit.limit == 9
    limit.rate_limited()
    assert limit.limit == 4


def test_the_in_flight_limit_recovers_one_slot_a_success_up_to_what_latency_needs():
    limit = InFlightLimit(ceiling=16, initial=16)
    limit.rate_limited()
    limit.rate_limited()
    assert limit.limit == 8
    # No budget known: it wants what it started with, and gets back there one by one.
    for expected in range(9, 17):
        limit.observe(1.0, 1000, None)
        assert limit.limit == expected
    limit.observe(1.0, 1000, None)
    assert limit.limit == 16


def test_the_in_flight_limit_never_drops_below_one():
    limit = InFlightLimit(ceiling=2, initial=2)
    for _ in range(5):
        limit.rate_limited()
        limit.observe(1.0, 1000, None)
        limit.rate_limited()
    assert limit.limit == 1


def test_in_flight_limit_covers_latency_at_the_budget_rate_and_halves_after_429s():
    limit = InFlightLimit(ceiling=32, initial=4)
    assert limit.limit == 4
    # 100k tokens a second to spend, 50k-token requests: 0.5 s covers one request at a time,
    # 5 s needs ten in flight (plus one to cover the gap between answer and next request).
    empty_bucket = (0.0, 100_000.0)
    limit.observe(0.5, 50_000, empty_bucket)
    assert limit.limit == 2
    for _ in range(40):
        limit.observe(5.0, 50_000, empty_bucket)
    assert limit.limit == 11
    # While the provider's bucket holds a lot, as many as it can pay for, up to the ceiling.
    limit.observe(5.0, 50_000, (5_000_000.0, 100_000.0))
    assert limit.limit == 32
    limit.rate_limited()
    assert limit.limit == 16
    # More 429s of requests that were in flight together: one congestion, halved once.
    limit.rate_limited()
    assert limit.limit == 16
    # Successes give the slots back one by one; a 429 after one halves again.
    limit.observe(5.0, 50_000, (5_000_000.0, 100_000.0))
    assert limit.limit == 17
    limit.rate_limited()
    assert limit.limit == 8
    limit.observe(5.0, 50_000, (5_000_000.0, 100_000.0))
    assert limit.limit == 9
    # Without a known budget there is no rate to cover: it stays where it started.
    assert InFlightLimit(ceiling=32, initial=4).limit == 4
    unbudgeted = InFlightLimit(ceiling=32, initial=4)
    unbudgeted.observe(10.0, 1000, None)
    assert unbudgeted.limit == 4


# --- the bucket ---------------------------------------------------------------------------


def test_pacer_spends_the_providers_whole_bucket_at_once_then_its_refill():
    pacer, clock = paced()
    # A bucket of one minute (60k tokens), full: remaining 60000, full again in 0 s.
    pacer.observe(
        {
            "x-ratelimit-limit-tokens": "60000",
            "x-ratelimit-remaining-tokens": "60000",
            "x-ratelimit-reset-tokens": "0s",
        }
    )
    for _ in range(5):
        pacer.acquire(10_000)  # 50k of the 58.2k under the headroom: no wait
    assert clock.slept == []
    pacer.acquire(10_000)  # refills at 970 tokens a second: waits ~1.9 s
    assert 1.5 < sum(clock.slept) < 2.5
    # Estimates are settled against what the provider counted: overcharged tokens come back.
    pacer.settle(charged=10_000, counted=4_000)
    waited = sum(clock.slept)
    pacer.acquire(6_000)
    assert sum(clock.slept) == waited


def test_a_partly_spent_provider_bucket_is_not_taken_for_a_full_one():
    pacer, clock = paced()
    # 20k of a one-minute bucket left, full again in 40 s.
    pacer.observe(
        {
            "x-ratelimit-limit-tokens": str(TPM),
            "x-ratelimit-remaining-tokens": "20000",
            "x-ratelimit-reset-tokens": "40s",
        }
    )
    pacer.acquire(19_000)  # of the 19.4k left under the headroom
    assert clock.slept == []
    pacer.acquire(1_000)
    left = 20_000 * HEADROOM - 19_000
    assert sum(clock.slept) == pytest.approx((1_000 - left) / REFILL, abs=STEP)


def test_without_bucket_headers_the_pacer_spreads_the_minute():
    pacer, clock = paced(tokens_per_minute=TPM)
    sent = 0
    while clock.now < 100.0 + 30:
        pacer.acquire(1000)
        sent += 1000
    # Ten seconds of budget at once, then the rate: never a whole minute's burst.
    assert sent <= TPM * HEADROOM * (SPREAD_SECONDS + 30) / 60 + 1000
    assert sent >= REFILL * 30


def test_pacer_spreads_tokens_evenly_under_the_learned_budget():
    pacer, clock = paced()
    pacer.observe({"x-ratelimit-limit-tokens": "1200000", "x-ratelimit-limit-requests": "100000"})
    start = clock.now
    sent = 0
    while clock.now - start < 3:
        pacer.acquire(1000)
        sent += 1000
    per_second_budget = 1_200_000 * HEADROOM / 60
    # The spread window allows one window's worth at once, then paces: never more than that plus
    # the steady rate, never far below the steady rate.
    assert sent <= per_second_budget * (SPREAD_SECONDS + 3)
    assert sent >= per_second_budget * 3 * 0.8


def test_pacer_pauses_everyone_after_a_429_and_steps_the_budget_down():
    pacer, clock = paced(tokens_per_minute=60000)
    pacer.rate_limited(0.5)
    before = clock.now
    pacer.acquire(10)
    assert clock.now - before >= 0.45


def test_the_request_budget_is_a_bucket_of_its_own():
    pacer, clock = paced(requests_per_minute=60)
    budget = int(60 * HEADROOM)
    capacity = budget * SPREAD_SECONDS / 60 * HEADROOM
    for _ in range(int(capacity)):
        pacer.acquire(100_000)  # no token budget: only requests count
    assert clock.slept == []
    pacer.acquire(1)
    left = capacity - int(capacity)
    assert sum(clock.slept) == pytest.approx((1 - left) / (budget / 60), abs=STEP)


def test_a_request_larger_than_the_bucket_takes_the_whole_bucket_instead_of_waiting_forever():
    pacer, clock = paced(tokens_per_minute=TPM)
    pacer.acquire(10 * TPM)
    assert clock.slept == []
    assert pacer.tokens_ready()[0] == 0.0
    pacer.acquire(970)
    assert sum(clock.slept) == pytest.approx(970 / REFILL, abs=STEP)


def test_an_undercharged_estimate_is_taken_from_the_bucket():
    pacer, clock = paced(tokens_per_minute=TPM)
    level = pacer.tokens_ready()[0]
    pacer.acquire(1_000)
    pacer.settle(charged=1_000, counted=3_000)
    assert pacer.tokens_ready()[0] == pytest.approx(level - 3_000)
    pacer.settle(charged=1_000, counted=0)  # nothing counted: the estimate stands
    assert pacer.tokens_ready()[0] == pytest.approx(level - 3_000)


def test_the_lower_of_configured_and_learned_budget_is_spent():
    pacer, _ = paced(tokens_per_minute=1_000_000)
    assert pacer.budgets() == (None, int(1_000_000 * HEADROOM))
    pacer.observe({"x-ratelimit-limit-tokens": str(TPM)})
    assert pacer.budgets() == (None, BUDGET)
    assert pacer.max_request_tokens() == BUDGET * 2 // 60
    assert paced()[0].max_request_tokens() is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1m30s", 90.0), ("1.5s", 1.5), ("20ms", 0.02), ("0s", 0.0), ("2h", 7200.0)],
)
def test_reset_durations_are_read_as_openai_writes_them(header, seconds):
    assert reset_seconds(header) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "1m30", "5 s"])
def test_unreadable_reset_durations_are_ignored(header):
    assert reset_seconds(header) is None

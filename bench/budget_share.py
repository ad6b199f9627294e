"""How much of a provider's tokens-per-minute budget a migration used, from the request log.

The provider's budget is a bucket holding one minute of tokens that refills at the limit, so
over a window of T seconds that starts with a full bucket it can admit at most
TPM x (1 + T / 60) tokens. The window runs from the first request's arrival until the last
token is paid for: the moment the last admitted request was charged. The share is the tokens
admitted over that allowance: 1.0 means the client kept the provider busy to the limit from
its first request to its last; the client's own cost (preparing texts, decoding vectors,
writing rows) and a too-small number of requests in flight show as a lower share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """One request as the provider saw it: monotonic times, status, tokens charged."""

    arrived_at: float
    answered_at: float
    status: int
    tokens: int
    inputs: int


def budget_share(requests: Iterable[Request], tokens_per_minute: int) -> dict:
    """The share of the budget, with the figures it comes from; shares are None without an
    admitted request."""
    requests = sorted(requests, key=lambda r: r.arrived_at)
    admitted = [r for r in requests if r.status == 200]
    statuses = Counter(r.status for r in requests)
    result = {
        "requests": len(requests),
        "admitted_requests": len(admitted),
        "rate_limited_requests": statuses.get(429, 0),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "tokens": sum(r.tokens for r in admitted),
        "inputs": sum(r.inputs for r in admitted),
        "window_seconds": None,
        "allowance_tokens": None,
        "share_of_budget": None,
        "tokens_per_minute": None,
        "most_in_flight": most_in_flight(requests),
        "timeline": timeline(requests),
    }
    if not admitted:
        return result
    window = max(r.answered_at for r in admitted) - requests[0].arrived_at
    allowance = tokens_per_minute * (1 + window / 60)
    result.update(
        window_seconds=window,
        allowance_tokens=allowance,
        share_of_budget=result["tokens"] / allowance,
        tokens_per_minute=result["tokens"] / window * 60 if window > 0 else None,
    )
    return result


def timeline(requests: list[Request]) -> list[list[float | int]]:
    """Each request as [arrived, answered] seconds after the first one's arrival, status,
    tokens, inputs: where a share below 1.0 was lost (a late start, a gap, a slow tail)."""
    if not requests:
        return []
    start = requests[0].arrived_at
    return [
        [
            round(r.arrived_at - start, 3),
            round(r.answered_at - start, 3),
            r.status,
            r.tokens,
            r.inputs,
        ]
        for r in requests
    ]


def most_in_flight(requests: Iterable[Request]) -> int:
    """The most requests the provider was answering at once."""
    events = sorted(
        [(r.arrived_at, 1) for r in requests] + [(r.answered_at, -1) for r in requests],
        key=lambda event: (event[0], event[1]),
    )
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most

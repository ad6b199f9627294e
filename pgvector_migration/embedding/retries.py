"""When a failed embedding request is tried again, and after how long: transient failures
(`errors.TransientEmbeddingError`) with exponential backoff and full jitter, the provider's
`retry-after` winning when it sent one; an unusable answer only a couple of times, since a
glitch rarely repeats and a text that causes it is found by splitting instead.
"""

from __future__ import annotations

import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)

from pgvector_migration.embedding.errors import InvalidResponseError, TransientEmbeddingError

_backoff = wait_random_exponential(multiplier=0.5, max=30)
# An unusable answer to a sound request rarely repeats: retried this often, then taken as
# caused by the batch's texts.
INVALID_RESPONSE_RETRIES = 2


def _wait(state: RetryCallState) -> float:
    """The provider's `retry-after` when it sent one (plus a little jitter), else exponential
    backoff with full jitter."""
    error = state.outcome.exception() if state.outcome else None
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return retry_after + float(np.random.uniform(0, 0.1))
    return _backoff(state)


def _stop_after(max_retries: int):
    """Stop after `max_retries` retries, or fewer for an unusable answer."""

    def stop(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        limit = max_retries
        if isinstance(error, InvalidResponseError):
            limit = min(max_retries, INVALID_RESPONSE_RETRIES)
        return state.attempt_number > limit

    return stop


def retrying(max_retries: int) -> Retrying:
    """The attempts of one request: iterate, and run each attempt inside `with attempt:`."""
    return Retrying(
        stop=_stop_after(max_retries),
        wait=_wait,
        retry=retry_if_exception_type(TransientEmbeddingError),
        reraise=True,
    )

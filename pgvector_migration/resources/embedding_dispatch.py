"""Sending embedding requests as fast as the provider allows, and no faster.

Texts are cut into requests within the provider's limits, several requests are in flight at
once, each waits for the pacer (requests and tokens per minute), transient failures are retried
with backoff (`tenacity`; a `retry-after` from the provider wins), and a batch the provider
refuses as too large is split in half until it passes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from pgvector_migration.pipeline.batching import RequestLimits, TokenEstimator, shape_batches
from pgvector_migration.resources.embeddings import (
    APIEmbedder,
    LocalEmbedder,
    RequestTooLargeError,
    TransientEmbeddingError,
)
from pgvector_migration.resources.rate_limits import RequestPacer

_backoff = wait_random_exponential(multiplier=0.5, max=30)
PROBE_RETRIES = 4


def _wait(state: RetryCallState) -> float:
    """The provider's `retry-after` when it sent one (plus a little jitter), else exponential
    backoff with full jitter."""
    error = state.outcome.exception() if state.outcome else None
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return retry_after + float(np.random.uniform(0, 0.1))
    return _backoff(state)


@dataclass
class DispatchStats:
    """What the provider saw: requests sent, 429s, retries, tokens it counted."""

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    tokens: int = 0
    splits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class EmbeddingDispatcher:
    """Embeds lists of texts with one engine, concurrently and paced for API engines.

    Any engine with `request()` (`APIEmbedder`: OpenAI, Ollama, Azure OpenAI) is an API engine
    and gets pacing, retries and splitting; anything else (the local model) is called with the
    whole list at once."""

    def __init__(
        self,
        embedder: APIEmbedder | LocalEmbedder,
        max_batch_inputs: int,
        max_in_flight: int,
        max_retries: int,
        pacer: RequestPacer | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self.embedder = embedder
        self._max_batch_inputs = max_batch_inputs
        self._max_in_flight = max(1, max_in_flight)
        self._max_retries = max_retries
        self._pacer = pacer or RequestPacer()
        self._limits = limits or RequestLimits()
        self._estimator = TokenEstimator()
        self._pool = ThreadPoolExecutor(self._max_in_flight, thread_name_prefix="embed")
        self.stats = DispatchStats()

    @property
    def model_key(self) -> str:
        return self.embedder.model_key

    @property
    def is_api(self) -> bool:
        return isinstance(self.embedder, APIEmbedder)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        close_engine = getattr(self.embedder, "close", None)
        if self.is_api and callable(close_engine):
            close_engine()

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Vectors for `texts`, in order."""
        if not texts:
            return []
        if not self.is_api:
            # The model batches internally and uses every core; threads would only contend.
            vectors = self.embedder.embed(texts)
            self.stats.add(requests=1)
            return vectors
        limits = self._limits
        paced_tokens = self._pacer.max_request_tokens()
        if paced_tokens and paced_tokens < limits.max_tokens_per_request:
            limits = replace(limits, max_tokens_per_request=paced_tokens)
        batches = shape_batches(
            list(enumerate(texts)), limits, self._estimator, self._max_batch_inputs
        )
        results: list[np.ndarray | None] = [None] * len(texts)
        futures = [self._pool.submit(self._send, batch) for batch in batches]
        for batch, future in zip(batches, futures, strict=True):
            for (index, _), vector in zip(batch, future.result(), strict=True):
                results[index] = vector
        return results  # type: ignore[return-value]

    def _send(self, batch: list[tuple[int, str]]) -> list[np.ndarray]:
        texts = [text for _, text in batch]
        try:
            return self._send_with_retries(texts)
        except RequestTooLargeError:
            if len(batch) == 1:
                raise
            self.stats.add(splits=1)
            middle = len(batch) // 2
            return self._send(batch[:middle]) + self._send(batch[middle:])

    def _send_with_retries(
        self, texts: list[str], max_retries: int | None = None
    ) -> list[np.ndarray]:
        assert isinstance(self.embedder, APIEmbedder)
        estimated = sum(self._estimator.estimate(text) for text in texts)
        retries = self._max_retries if max_retries is None else max_retries
        attempts = Retrying(
            stop=stop_after_attempt(retries + 1),
            wait=_wait,
            retry=retry_if_exception_type(TransientEmbeddingError),
            reraise=True,
        )
        for attempt in attempts:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.add(retries=1)
                self._pacer.acquire(estimated)
                self.stats.add(requests=1)
                try:
                    response = self.embedder.request(texts)
                except TransientEmbeddingError as error:
                    if error.status == 429:
                        self.stats.add(rate_limited=1)
                        self._pacer.rate_limited(error.retry_after)
                    raise
        self._pacer.observe(response.headers)
        self._estimator.observe(texts, response.prompt_tokens)
        self.stats.add(tokens=response.prompt_tokens)
        return response.vectors

    def dimension(self) -> int:
        """The engine's vector length; API engines are asked with one short text, retried a
        few times only, so an unreachable provider is reported within seconds."""
        if not self.is_api:
            return self.embedder.dimension()
        return len(self._send_with_retries(["dimension probe"], max_retries=PROBE_RETRIES)[0])

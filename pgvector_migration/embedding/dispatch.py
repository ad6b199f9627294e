"""Sending embedding requests as fast as the provider allows, and no faster, and making sure
one bad text costs only its own unit.

Texts are cut into requests within the provider's limits, several requests are in flight at
once, each waits for the pacer (requests and tokens per minute), transient failures are retried
with backoff (`tenacity`; a `retry-after` from the provider wins). A batch the provider refuses
in a way one text can cause (a 400 content filter, an empty or oversize input, an answer that
stays unusable) is split in halves until the texts it refuses are found: they get the error,
every other text its vector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from pgvector_migration.embedding.api import APIEmbedder
from pgvector_migration.embedding.errors import (
    EmbeddingError,
    InvalidResponseError,
    RequestTooLargeError,
    TransientEmbeddingError,
    may_be_one_text,
)
from pgvector_migration.embedding.local import LocalEmbedder
from pgvector_migration.embedding.pacing import MAX_IN_FLIGHT, InFlightLimit, RequestPacer
from pgvector_migration.embedding.responses import check_dimension
from pgvector_migration.embedding.retries import retrying
from pgvector_migration.pipeline.batching import (
    RequestLimits,
    TokenEstimator,
    halves,
    shape_batches,
)

PROBE_RETRIES = 4
PROBE_ANSWERS = 3
# When every part of a split level this wide fails, the fault is the provider's, not a text's.
SPLIT_GIVE_UP_PARTS = 4

Result = np.ndarray | EmbeddingError


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


class PendingEmbeddings:
    """The results of texts handed to the dispatcher, arriving batch by batch."""

    def __init__(self, count: int) -> None:
        self._parts: list[tuple[list[int], Future | list[Result]]] = []
        self._count = count

    def add(self, positions: list[int], part: Future | list[Result]) -> None:
        self._parts.append((positions, part))

    def done(self) -> bool:
        return all(not isinstance(part, Future) or part.done() for _, part in self._parts)

    def result(self) -> list[Result]:
        """For each text, in order, its vector or its error; waits for the last batch."""
        results: list[Result | None] = [None] * self._count
        for positions, part in self._parts:
            outcome = part.result() if isinstance(part, Future) else part
            for position, result in zip(positions, outcome, strict=True):
                results[position] = result
        return results  # type: ignore[return-value]


class EmbeddingDispatcher:
    """Embeds lists of texts with one engine, concurrently and paced for API engines.

    Any engine with `request()` (`APIEmbedder`: OpenAI, Ollama, Azure OpenAI) is an API engine
    and gets pacing, retries and splitting; anything else (the local model) is called with the
    whole list at once. Every vector is checked against `expected_dimension` once it is known
    (the target column's), so no vector of another length is ever cached or written."""

    def __init__(
        self,
        embedder: APIEmbedder | LocalEmbedder,
        max_batch_inputs: int,
        max_in_flight: int | None,
        max_retries: int,
        pacer: RequestPacer | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self.embedder = embedder
        self.expected_dimension: int | None = None
        self._max_batch_inputs = max_batch_inputs
        self.in_flight = InFlightLimit(max_in_flight or MAX_IN_FLIGHT)
        self._max_retries = max_retries
        self._pacer = pacer or RequestPacer()
        self._limits = limits or RequestLimits()
        self._estimator = TokenEstimator()
        # Batches queue here; the in-flight limit decides how many of them are sent at once.
        self._pool = ThreadPoolExecutor(self.in_flight.ceiling, thread_name_prefix="embed")
        self.stats = DispatchStats()
        # Target lengths this engine was seen to answer with: the CLI's preflight asks once,
        # and its run's steps (the same dispatcher in the same process) need not ask again.
        self._confirmed_dimensions: set[int] = set()

    @property
    def model_key(self) -> str:
        return self.embedder.model_key

    @property
    def is_api(self) -> bool:
        return isinstance(self.embedder, APIEmbedder)

    @property
    def where(self) -> str:
        """The engine in messages: its URL without credentials, or the local model."""
        if not self.is_api:
            return f"the local model {self.embedder.model}"
        shown = getattr(self.embedder, "display_url", None) or self.embedder.engine
        return f"embedding request to {shown}"

    def requests_worth_of_texts(self) -> int:
        """How many texts fill every request slot the in-flight limit allows now."""
        return self.in_flight.limit * self._max_batch_inputs

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        close_engine = getattr(self.embedder, "close", None)
        if self.is_api and callable(close_engine):
            close_engine()

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Vectors for `texts`, in order; the first text that could not be embedded raises."""
        results = self.embed_each(texts)
        for result in results:
            if isinstance(result, EmbeddingError):
                raise result
        return results  # type: ignore[return-value]

    def embed_each(self, texts: Sequence[str]) -> list[Result]:
        """For each text, in order, its vector or the error that text got: a text the provider
        refuses fails alone, its batch neighbours still get their vectors."""
        return self.submit(texts).result()

    def submit(self, texts: Sequence[str]) -> PendingEmbeddings:
        """Start embedding `texts` and return at once (a local model embeds them first): the
        caller can hand over more texts while these are in flight."""
        pending = PendingEmbeddings(len(texts))
        if not texts:
            return pending
        if not self.is_api:
            pending.add(list(range(len(texts))), self._embed_locally(texts))
            return pending
        limits = self._limits
        paced_tokens = self._pacer.max_request_tokens()
        if paced_tokens and paced_tokens < limits.max_tokens_per_request:
            limits = replace(limits, max_tokens_per_request=paced_tokens)
        batches = shape_batches(
            list(enumerate(texts)), limits, self._estimator, self._max_batch_inputs
        )
        for batch in batches:
            pending.add(
                [index for index, _ in batch],
                self._pool.submit(self._send, [text for _, text in batch]),
            )
        return pending

    def _embed_locally(self, texts: Sequence[str]) -> list[Result]:
        # The model batches internally and uses every core; threads would only contend.
        vectors = self.embedder.embed(texts)
        self.stats.add(requests=1)
        results: list[Result] = []
        for vector in vectors:
            if not np.all(np.isfinite(vector)):
                results.append(InvalidResponseError(f"{self.where} produced NaN or infinity"))
            elif self.expected_dimension and len(vector) != self.expected_dimension:
                results.append(
                    InvalidResponseError(
                        f"{self.where} produced a {len(vector)}-dimensional vector; "
                        f"document_chunk.vector has {self.expected_dimension} dimensions"
                    )
                )
            else:
                results.append(vector)
        return results

    def _send(self, texts: list[str]) -> list[Result]:
        try:
            return self._attempt(texts)
        except EmbeddingError as error:
            if len(texts) == 1 or not may_be_one_text(error):
                return [error] * len(texts)
            return self._isolate(texts, error)

    def _attempt(self, texts: list[str]) -> list[Result]:
        """One batch with retries; when its answer stayed unusable only for some texts, those
        get the reason and the others keep their (checked) vectors."""
        try:
            return list(self._send_with_retries(texts))
        except InvalidResponseError as error:
            # Every vector bad is no evidence against any one text: splitting will tell.
            if not error.bad_positions or len(error.bad_positions) == len(texts) > 1:
                raise
            return [
                InvalidResponseError(error.bad_positions[position])
                if position in error.bad_positions
                else error.vectors[position]
                for position in range(len(texts))
            ]

    def _isolate(self, texts: list[str], error: EmbeddingError) -> list[Result]:
        """Find the texts the provider refuses by splitting the batch in halves, level by level,
        until each failing part is a single text. When every part of a level of
        SPLIT_GIVE_UP_PARTS or more fails alike, the fault is the provider's, not a text's: the
        remaining texts fail with it instead of being sent one by one."""
        results: dict[int, Result] = {}
        failing: list[tuple[list[int], EmbeddingError]] = [(list(range(len(texts))), error)]
        while failing:
            parts = [half for positions, _ in failing for half in halves(positions)]
            self.stats.add(splits=len(failing))
            failing, failed_parts, too_large = [], 0, False
            for positions in parts:
                try:
                    outcome = self._attempt([texts[p] for p in positions])
                except EmbeddingError as part_error:
                    failed_parts += 1
                    too_large |= isinstance(part_error, RequestTooLargeError)
                    if len(positions) == 1 or not may_be_one_text(part_error):
                        results.update(dict.fromkeys(positions, part_error))
                    else:
                        failing.append((positions, part_error))
                    continue
                results.update(zip(positions, outcome, strict=True))
            if len(parts) >= SPLIT_GIVE_UP_PARTS and failed_parts == len(parts) and not too_large:
                for positions, part_error in failing:
                    results.update(dict.fromkeys(positions, part_error))
                break
        return [results[position] for position in range(len(texts))]

    def _send_with_retries(
        self, texts: list[str], max_retries: int | None = None, check_length: bool = True
    ) -> list[np.ndarray]:
        assert isinstance(self.embedder, APIEmbedder)
        estimated = sum(self._estimator.estimate(text) for text in texts)
        retries = self._max_retries if max_retries is None else max_retries
        for attempt in retrying(retries):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.add(retries=1)
                with self.in_flight.slot():
                    self._pacer.acquire(estimated)
                    self.stats.add(requests=1)
                    started = time.monotonic()
                    try:
                        response = self.embedder.request(texts)
                    except TransientEmbeddingError as error:
                        if error.rate_limited:
                            self.stats.add(rate_limited=1)
                            self._pacer.rate_limited(error.retry_after)
                            self.in_flight.rate_limited()
                        raise
                    seconds = time.monotonic() - started
                if len(response.vectors) != len(texts):
                    raise InvalidResponseError(
                        f"{self.where} returned {len(response.vectors)} embeddings for "
                        f"{len(texts)} inputs"
                    )
                if check_length:
                    check_dimension(response.vectors, self.expected_dimension, self.where)
        self._pacer.observe(response.headers)
        self._pacer.settle(estimated, response.prompt_tokens)
        if check_length:  # a one-text probe says nothing of a batch's latency
            self.in_flight.observe(
                seconds, response.prompt_tokens or estimated, self._pacer.tokens_ready()
            )
        self._estimator.observe(texts, response.prompt_tokens)
        self.stats.add(tokens=response.prompt_tokens)
        return response.vectors

    def dimension(self, expected: int | None = None) -> int:
        """The engine's vector length. API engines are asked with one short text, retried a
        few times only, so an unreachable provider is reported within seconds; an answer other
        than `expected` (the target column's) is asked again, so that one glitch is not taken
        for the model's dimension."""
        if not self.is_api:
            return self.embedder.dimension()
        if expected in self._confirmed_dimensions:
            return expected
        answers: list[int] = []
        retries = min(self._max_retries, PROBE_RETRIES)
        while len(answers) < PROBE_ANSWERS:
            vectors = self._send_with_retries(
                ["dimension probe"], max_retries=retries, check_length=False
            )
            answers.append(len(vectors[0]))
            if expected is None or answers[-1] == expected:
                self._confirmed_dimensions.add(answers[-1])
                return answers[-1]
        return max(set(answers), key=answers.count)

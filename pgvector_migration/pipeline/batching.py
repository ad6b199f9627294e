"""Shaping embedding requests to a provider's limits: inputs and tokens per request (a text
over the per-input limit is left to the provider to refuse, as it refuses Open WebUI), and
splitting a refused batch to find the text it was refused for."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

Item = TypeVar("Item")

# What OpenAI documents for its embeddings endpoint.
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000


@dataclass(frozen=True)
class RequestLimits:
    """How large one embeddings request may be."""

    max_inputs: int = OPENAI_MAX_INPUTS
    max_tokens_per_request: int = OPENAI_MAX_TOKENS_PER_REQUEST


class TokenEstimator:
    """Tokens of a text, estimated from its UTF-8 length and calibrated on the counts the
    provider reports (`usage.prompt_tokens`), so pacing tracks the provider's own accounting.

    Starts at one token per 3 bytes, which over-counts English text (about 4 bytes a token), so
    the first requests stay inside any limit."""

    def __init__(self, bytes_per_token: float = 3.0) -> None:
        self._bytes_per_token = bytes_per_token
        self._lock = threading.Lock()

    def estimate(self, text: str) -> int:
        return max(1, math.ceil(len(text.encode("utf-8", "surrogatepass")) / self._bytes_per_token))

    def observe(self, texts: Sequence[str], reported_tokens: int) -> None:
        """Move the ratio towards what the provider counted for these texts."""
        if reported_tokens <= 0:
            return
        total_bytes = sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
        observed = total_bytes / reported_tokens
        with self._lock:
            self._bytes_per_token = 0.7 * self._bytes_per_token + 0.3 * observed

    @property
    def bytes_per_token(self) -> float:
        return self._bytes_per_token


def shape_batches(
    items: Sequence[tuple[Item, str]],
    limits: RequestLimits,
    estimate: TokenEstimator,
    max_inputs: int,
) -> list[list[tuple[Item, str]]]:
    """Cut (key, text) items into requests within the input and token limits, in order.

    A text over the per-input limit still goes alone in its own request: the provider refuses
    it as it refuses Open WebUI, and the file is reported with the provider's reason rather than
    silently truncated."""
    batches: list[list[tuple[Item, str]]] = []
    batch: list[tuple[Item, str]] = []
    batch_tokens = 0
    inputs_cap = max(1, min(max_inputs, limits.max_inputs))
    for key, text in items:
        tokens = estimate.estimate(text)
        if batch and (
            len(batch) >= inputs_cap or batch_tokens + tokens > limits.max_tokens_per_request
        ):
            batches.append(batch)
            batch, batch_tokens = [], 0
        batch.append((key, text))
        batch_tokens += tokens
    if batch:
        batches.append(batch)
    return batches


def halves(items: Sequence[Item]) -> list[list[Item]]:
    """A batch cut in two for bisection (one part when it cannot be cut)."""
    middle = len(items) // 2
    return [list(items[:middle]), list(items[middle:])] if middle else [list(items)]

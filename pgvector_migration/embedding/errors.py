"""What can go wrong with an embedding request, and the one place that decides which kind of
failure an HTTP status is: worth retrying (429, 5xx, timeouts), refused for its size (a smaller
batch may pass), refused for the key (a setting to fix), or refused for good.

The dispatcher retries, splits or gives up by these types alone, and the dry run's probe names
the key setting by them, so a status is never classified in two places.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Words a provider uses when it refuses a request for its size (OpenAI, Azure, vLLM, LiteLLM).
TOO_LARGE_HINTS = ("maximum", "too many", "too long", "too large", "context length", "limit")


class EmbeddingError(RuntimeError):
    """The embedding engine failed; the message names the engine, URL or model."""


class TransientEmbeddingError(EmbeddingError):
    """Worth retrying: 429, 408, 409, 5xx, timeouts, connection errors."""

    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        """A 429: the provider's budget is spent, so the pacer steps down."""
        return self.status == 429


class PermanentEmbeddingError(EmbeddingError):
    """The provider refused the request with a status that retrying will not change; a 400,
    413 or 422 may be caused by one of its texts (a content filter, an empty or oversize
    input), so the batch is split to find it."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def may_be_one_text(self) -> bool:
        return self.status in (400, 413, 422)


class RequestTooLargeError(PermanentEmbeddingError):
    """The provider refused the request for its size; a smaller batch may pass."""

    @property
    def may_be_one_text(self) -> bool:
        return True


class KeyRefusedError(PermanentEmbeddingError):
    """A 401 or 403: the API key is missing, wrong or lacks the model; every request would
    fail alike, so the batch is not split and the dry run names the key setting."""


class InvalidResponseError(TransientEmbeddingError):
    """A success status with an answer we cannot trust (not JSON, truncated, no `data`, a wrong
    count or `index` set, bad values, a wrong dimension). Retried a few times, since a glitch
    rarely repeats; `bad_positions` maps the inputs whose vectors were bad, when the rest of
    the response was sound, to why, with `vectors` holding the sound ones (None elsewhere)."""

    def __init__(
        self,
        message: str,
        bad_positions: Mapping[int, str] | None = None,
        vectors: Sequence[np.ndarray | None] = (),
    ) -> None:
        super().__init__(message, None, None)
        self.bad_positions = dict(bad_positions or {})
        self.vectors = list(vectors)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds), as OpenAI sends them."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def error_for_status(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> EmbeddingError:
    """The failure a refused request is, by its HTTP status (and, for a 400 or 413, by whether
    its message speaks of size)."""
    if status in (408, 409, 429) or status >= 500:
        return TransientEmbeddingError(message, status, retry_after_seconds(headers))
    if status in (401, 403):
        return KeyRefusedError(message, status)
    if status in (400, 413) and any(hint in message.lower() for hint in TOO_LARGE_HINTS):
        return RequestTooLargeError(message, status)
    return PermanentEmbeddingError(message, status)


def may_be_one_text(error: EmbeddingError) -> bool:
    """Whether one text of the batch may have caused this failure, so splitting can find it:
    a refusal for content or size (400, 413, 422), or an answer that stayed unusable. A provider
    that is down, slow or refuses the key fails every batch alike and is not split."""
    if isinstance(error, PermanentEmbeddingError):
        return error.may_be_one_text
    return isinstance(error, InvalidResponseError)

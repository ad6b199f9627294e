"""What a provider's answer must be before any vector of it is cached or written.

Every response is checked whole: one vector per input, `index` fields exactly 0..n-1 (or none,
then the order is the order, as Open WebUI takes it), every value a finite float32, every
vector the expected length. A response that fails is an `InvalidResponseError` naming the URL;
when only some vectors are bad, it says which, so the others need not be asked for again.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)


class EmbeddingError(RuntimeError):
    """The embedding engine failed; the message names the engine, URL or model."""


class TransientEmbeddingError(EmbeddingError):
    """Worth retrying: 429, 408, 409, 5xx, timeouts, connection errors."""

    def __init__(self, message: str, status: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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


def decode_vector(raw: Any) -> tuple[np.ndarray | None, str]:
    """One embedding as float32, or None and why not. A string is OpenAI's base64 encoding of
    little-endian float32 values (what the API sends for `encoding_format: base64`); it is
    decoded, never parsed as text."""
    if isinstance(raw, str):
        try:
            packed = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return None, "a string that is not base64-encoded float32"
        if not packed or len(packed) % 4:
            return None, f"a base64 string of {len(packed)} bytes, not float32 values"
        vector = np.frombuffer(packed, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(vector)):
            return None, "NaN or infinite values"
        return vector, ""
    if not isinstance(raw, list) or not raw:
        return None, f"{type(raw).__name__ if raw is not None else 'null'} instead of numbers"
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = "null" if value is None else type(value).__name__
            return None, f"{shown} among its values"
        if not math.isfinite(value):
            return None, "NaN or infinite values"
        if abs(value) > FLOAT32_MAX:
            return None, f"the value {value!r}, outside the float32 range"
    return np.asarray(raw, dtype=np.float32), ""


def ordered_items(items: Any, count: int, where: str) -> list[Any]:
    """The response's `data` items in input order: sorted by `index` when every item has one
    and they are exactly 0..n-1, in the given order when none has one; anything else (all zero,
    repeats, gaps, some missing) would put vectors on the wrong texts and is refused."""
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidResponseError(f"{where} returned a `data` field that is not a list of objects")
    if len(items) != count:
        raise InvalidResponseError(f"{where} returned {len(items)} embeddings for {count} inputs")
    indexes = [item.get("index") for item in items]
    if all(index is None for index in indexes):
        return items
    if all(isinstance(i, int) and not isinstance(i, bool) for i in indexes) and sorted(
        indexes
    ) == list(range(count)):
        return [item for _, item in sorted(zip(indexes, items, strict=True), key=lambda p: p[0])]
    shown = ", ".join(map(str, indexes[:8])) + (", ..." if count > 8 else "")
    raise InvalidResponseError(
        f"{where} returned `index` fields [{shown}] that are not each of 0..{count - 1} once; "
        "its vectors cannot be matched to the texts"
    )


def checked_vectors(raw_vectors: Sequence[Any], where: str) -> list[np.ndarray]:
    """Decode every vector; all must be sound and of one length, else an
    `InvalidResponseError` that names the bad positions and keeps the sound vectors."""
    decoded = [decode_vector(raw) for raw in raw_vectors]
    lengths = [len(vector) for vector, _ in decoded if vector is not None]
    usual = max(set(lengths), key=lengths.count) if lengths else None
    bad: dict[int, str] = {}
    for position, (vector, reason) in enumerate(decoded):
        if vector is None:
            bad[position] = reason
        elif len(vector) != usual:
            bad[position] = f"{len(vector)} values where the others have {usual}"
    if bad:
        first = next(iter(bad))
        raise InvalidResponseError(
            f"{where} returned {len(bad)} unusable embedding(s) of {len(decoded)}, e.g. input "
            f"{first}: {bad[first]}",
            {p: f"{where} returned an unusable embedding: {reason}" for p, reason in bad.items()},
            [None if position in bad else vector for position, (vector, _) in enumerate(decoded)],
        )
    return [vector for vector, _ in decoded]  # type: ignore[misc]


def check_dimension(vectors: Sequence[np.ndarray], expected: int | None, where: str) -> None:
    """Every vector must have the expected length (the target column's, or the one the engine
    was found to produce); a vector is never padded or cut."""
    if expected is None:
        return
    wrong = {
        position: f"{where} returned a {len(vector)}-dimensional vector; the model's vectors "
        f"and document_chunk.vector have {expected} dimensions"
        for position, vector in enumerate(vectors)
        if len(vector) != expected
    }
    if wrong:
        first = next(iter(wrong))
        raise InvalidResponseError(
            f"{wrong[first]} (for {len(wrong)} of {len(vectors)} inputs)",
            wrong,
            [None if position in wrong else v for position, v in enumerate(vectors)],
        )

"""What a provider's answer must be before any vector of it is cached or written.

Every response is checked whole: one vector per input, `index` fields exactly 0..n-1 (or none,
then the order is the order, as Open WebUI takes it), every value a finite float32, every
vector the expected length. A response that fails is an `InvalidResponseError` naming the URL;
when only some vectors are bad, it says which, so the others need not be asked for again.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgvector_migration.embedding.errors import InvalidResponseError

FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = {float, int}


@dataclass(frozen=True)
class EmbeddingResponse:
    """One successful request: vectors in input order, the tokens the provider counted, and
    the response headers (rate-limit budget)."""

    vectors: list[np.ndarray]
    prompt_tokens: int
    headers: dict[str, str]


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
    if set(map(type, raw)) <= _NUMBER_TYPES:
        # numpy checks a list of plain numbers whole; only a bad one needs the slow look below.
        values = np.array(raw, dtype=np.float64)
        if np.all(np.isfinite(values)) and np.abs(values).max() <= FLOAT32_MAX:
            return values.astype(np.float32), ""
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


def error_detail(payload: bytes) -> str:
    """The provider's own words for a refusal: its JSON `error.message`, else the body's start."""
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace").strip()[:300] or "no details"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message") or error
    return str(error)[:500]


def json_body(payload: bytes, headers: dict[str, str], status: int, where: str) -> Any:
    """The parsed body of a success, or an `InvalidResponseError` saying what came instead."""
    if not payload.strip():
        raise InvalidResponseError(f"{where} returned HTTP {status} with an empty body")
    try:
        return json.loads(payload)
    except ValueError:
        kind = headers.get("content-type", "no content type").split(";")[0]
        start = payload.decode("utf-8", "replace").strip()
        what = (
            "JSON that is cut off or malformed"
            if start[:1] in "{["
            else f"a {kind} body that is not JSON"
        )
        shown = " ".join(start[:80].split())
        raise InvalidResponseError(
            f"{where} returned HTTP {status} with {what} ({len(payload)} bytes: {shown!r})"
        ) from None


def openai_style_vectors(data: Any, count: int, where: str) -> tuple[list[Any], int]:
    """The raw vectors and prompt tokens of an OpenAI-shaped body (`data[].embedding`,
    `usage.prompt_tokens`), as OpenAI and Azure OpenAI send it."""
    if not isinstance(data, dict) or "data" not in data:
        shown = ", ".join(sorted(map(str, data))[:6]) if isinstance(data, dict) else type(data)
        raise InvalidResponseError(f"{where} returned a body without `data` (fields: {shown})")
    items = ordered_items(data["data"], count, where)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens")
    return [item.get("embedding") for item in items], tokens if isinstance(tokens, int) else 0

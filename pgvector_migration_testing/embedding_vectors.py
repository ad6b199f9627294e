"""The vectors and token counts every fake embeddings provider answers with.

Embeddings are deterministic functions of ``(model, text, dimensions)``, so that a test (or a
benchmark comparing two stores) computes the vector it expects with :func:`expected_embedding`
instead of recording what a server sent. Standard library plus numpy only.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

__all__ = ["count_tokens", "expected_embedding", "expected_embedding_f32"]


@lru_cache(maxsize=65536)
def expected_embedding_f32(model: str, text: str, dimensions: int) -> np.ndarray:
    """:func:`expected_embedding` as a read-only little-endian float32 array (what a server
    encodes in base64, or spoils on purpose after a copy)."""
    digest = hashlib.sha256((model + "\0" + text).encode("utf-8", errors="surrogatepass")).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "big"))
    vector = rng.standard_normal(dimensions)
    vector /= np.linalg.norm(vector)
    result = vector.astype("<f4")
    result.setflags(write=False)
    return result


def expected_embedding(model: str, text: str, dimensions: int) -> list[float]:
    """The vector a fake server returns for ``text`` under ``model``.

    A standard-normal draw seeded from ``sha256(model + "\\0" + text)``,
    L2-normalised in float64 and then rounded to float32 (the precision the
    base64 wire format carries). Returned as Python floats, equal (not merely close) to what a
    client decodes from either ``"float"`` or ``"base64"`` encoding.
    """
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise ValueError(f"dimensions must be a positive int, got {dimensions!r}")
    return expected_embedding_f32(model, text, dimensions).tolist()


def count_tokens(text: str) -> int:
    """Rough, deterministic token count: one token per 4 UTF-8 bytes, minimum 1."""
    return max(1, math.ceil(len(text.encode("utf-8", errors="surrogatepass")) / 4))

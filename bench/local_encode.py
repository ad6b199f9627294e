"""Raw sentence-transformers throughput, the reference for the migration's local engine.

Run in its own process by run_bench.py (so it starts as cold as the CLI does):

    python bench/local_encode.py TEXTS.json BATCH_SIZE

TEXTS.json is a JSON list of strings. Prints one JSON object: the model path, the seconds to
load the model, and the seconds of `encode(texts, batch_size=...)` after a short warm-up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    texts = json.loads(Path(argv[0]).read_text())
    batch_size = int(argv[1])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from pgvector_migration.embedding.local import find_local_model
    from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL

    path = find_local_model(DEFAULT_EMBEDDING_MODEL)
    started = time.perf_counter()
    model = SentenceTransformer(str(path), device="cpu")
    load_seconds = time.perf_counter() - started
    model.encode(texts[:16], batch_size=batch_size, show_progress_bar=False)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
    )
    encode_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "model_path": str(path),
                "texts": len(texts),
                "dimension": int(vectors.shape[1]),
                "batch_size": batch_size,
                "load_seconds": load_seconds,
                "encode_seconds": encode_seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

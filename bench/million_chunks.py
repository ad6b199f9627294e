"""Memory at a million chunks: `pgvector-migrate` on the realistic deployment made `--copies`
times over (every file and knowledge base again under ids of its own, as if every user had
uploaded the documents once more: bench.deployment.replicated_database), with an API engine and
`--reembed`. Each copy's text documents have their text altered (one vowel accented, another
for each copy: the lengths and so the chunks' boundaries stay), so the 92% of chunks that come
from them are texts of each copy's own, whose vectors come from the provider (690k distinct
texts in the million rows: a knowledge base's chunks repeat its files' chunks); the PDF, Word
and reStructuredText documents are the same in every copy, and their texts are embedded once.

The issue's bar is the peak RSS at 1M chunks with an API engine. Measured here: the peak of the
process tree (the CLI and its loader workers; pages they share are counted once per process),
of the CLI process alone and of its largest child, and the tree's RSS every 5 s, whose slope
tells memory that grows with the work from what the imports take at the start.

The provider is the loopback OpenAI server at 1536 dimensions with a budget far above what this
machine can send (the client is the limit: the figure is memory, not budget share), 300 ms +
4 ms per input as in bench.realistic.

    python -m bench.million_chunks                # 7 copies: ~1M rows
    python -m bench.million_chunks --copies 1     # the deployment as it is (143k rows)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from bench import deployment as bench_deployment
from bench import run_phases
from bench.realistic import Provider, add_provider_arguments, migrate_recorded
from bench.run_bench import (
    create_database,
    log,
    measurement_workspace,
    run_parameters,
    verify_target,
)

RESULTS = Path(__file__).resolve().parent / "results" / "million_chunks.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=7, help="of the deployment (7: ~1M rows)")
    add_provider_arguments(parser, tpm=1_000_000_000, rpm=1_000_000)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--openwebui-venv", type=Path, default=bench_deployment.DEFAULT_VENV)
    return parser.parse_args(argv)


def table_rows(target: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(target) as connection:
        rows, collections = connection.execute(
            "SELECT count(*), count(DISTINCT collection_name) FROM document_chunk"
        ).fetchone()
        size = connection.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('document_chunk'))"
        ).fetchone()[0]
    return {"rows": rows, "collections": collections, "table_size": size}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder, _ = bench_deployment.ensure(args.openwebui_venv)
    results: dict[str, Any] = {
        "parameters": run_parameters(args),
        "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    with (
        measurement_workspace(args.workdir, "pgvector-million-") as (workdir, server_uri),
        Provider(args) as provider,
    ):
        replicated = workdir / "replicated"
        database = bench_deployment.replicated_database(
            folder, args.copies, replicated / "data" / "webui.db"
        )
        target = create_database(server_uri, "bench_million")
        log(f"== {args.copies} copies of the deployment, --reembed")
        run = migrate_recorded(
            "million",
            provider,
            replicated,
            database,
            target,
            workdir,
            args,
            server_uri,
            cli_args=["--reembed"],
        )
        run["phases"] = run_phases.run_phases(
            run["env"]["DAGSTER_PG_URL"], provider.server.requests.requests()
        )
        share = run["provider"]
        run["provider"] = {k: v for k, v in share.items() if k != "timeline"}
        results["run"] = {**run, "env": None, "table": table_rows(target)}
        checks = verify_target(target, [])
        results["run"]["checks"] = {k: checks[k] for k in ("rows", "duplicate_rows")}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    run = results["run"]
    memory = run["memory"]
    headline = {
        "rows": run["table"]["rows"],
        "seconds": round(run["seconds"], 1),
        "returncode": run["returncode"],
        "peak_rss_tree_mib": round(memory["peak_rss_mib"]),
        "peak_rss_cli_mib": round(memory["process_peak_rss_mib"]),
        "peak_rss_largest_child_mib": round(memory["largest_child_peak_rss_mib"]),
        "peak_pss_tree_mib": round(memory["peak_pss_mib"]),
        "tokens": run["provider"]["tokens"],
    }
    print(json.dumps(headline, indent=1))
    return 0 if run["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The model switch's shadow build against an ordinary migration, on the realistic deployment.

The issue's bar: a shadow build (`pgvector-migrate switch --model B`) should be as fast as an
ordinary migration of the same deployment. Both do the same work here, so the times compare:

1. an ordinary migration with model A into an empty target (the live `document_chunk`), a
   fresh budget: every file loaded, every distinct text embedded (the cache is empty);
2. `switch --model B --dimension D` on that target with a fresh budget: every file loaded
   again, every distinct text embedded with model B (the cache is keyed by the model), written
   to `document_chunk_shadow` while the live table stays as it was;
3. `switch --model B --cutover`: the delta pass (nothing to write), the shadow's vector index
   (both builds above run without it, as `bench.realistic`'s migrations do), then the swap.

Same loopback provider and budget as `bench.realistic` (1536 dimensions, 5.1M tokens/min,
300 ms + 4 ms per input). Each figure from one run of this script:

    python -m bench.switch_build --quick      # 80 documents, a few minutes
    python -m bench.switch_build              # the whole deployment
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import psycopg

from bench import deployment as bench_deployment
from bench.realistic import (
    Provider,
    add_provider_arguments,
    full_database,
    migrate_recorded,
)
from bench.run_bench import (
    create_database,
    log,
    measurement_workspace,
    run_cli,
    run_parameters,
    verify_target,
)

RESULTS = Path(__file__).resolve().parent / "results" / "switch_build.json"
MODEL_B = "bench-model-b"


def table_digest(target: str, table: str) -> str:
    """A digest of a table's rows (ids, collections, texts and vectors), to show the build
    left the live table as it was."""
    digest = hashlib.sha256()
    with psycopg.connect(target) as connection:
        rows = connection.execute(
            f"SELECT id, collection_name, text, vector::text FROM {table} ORDER BY id"
        )
        for row in rows:
            digest.update(repr(row).encode())
    return digest.hexdigest()[:16]


def table_figures(target: str, table: str) -> dict[str, Any]:
    with psycopg.connect(target) as connection:
        rows, collections, dimension = connection.execute(
            f"SELECT count(*), count(DISTINCT collection_name), max(vector_dims(vector)) "
            f"FROM {table}"
        ).fetchone()
    return {"rows": rows, "collections": collections, "dimension": dimension}


def switch(label: str, provider: Provider, env: dict, workdir: Path, args, flags) -> dict:
    """One `pgvector-migrate switch` run with the live run's environment and a fresh budget."""
    provider.fresh_budget()
    run = run_cli(label, env, workdir, ["switch", *flags], args.timeout)
    return {**run.result(), "provider": provider.share()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="80 documents instead of all")
    parser.add_argument("--quick-files", type=int, default=80)
    add_provider_arguments(parser)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--openwebui-venv", type=Path, default=bench_deployment.DEFAULT_VENV)
    args = parser.parse_args(argv)
    folder, cached = bench_deployment.ensure(args.openwebui_venv)
    results: dict[str, Any] = {
        "parameters": run_parameters(args),
        "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    with measurement_workspace(args.workdir, "pgvector-switch-") as (workdir, server_uri):
        with Provider(args) as provider:
            log("== ordinary migration (model A) into an empty target")
            database, expected = full_database(cached, folder, workdir, args)
            target = create_database(server_uri, "bench_switch")
            live = migrate_recorded(
                "live", provider, folder, database, target, workdir, args, server_uri
            )
            env = live.pop("env")
            results["migration"] = {**live, "checks": verify_target(target, expected)}
            before = table_digest(target, "document_chunk")
            log("== shadow build (model B)")
            flags = ["--model", MODEL_B, "--dimension", str(args.dimensions)]
            # Both builds leave the index out (bench.realistic's migrations run --no-index);
            # the cutover's delta pass then builds the shadow's index before the swap.
            results["shadow_build"] = switch(
                "switch-build", provider, env, workdir, args, [*flags, "--no-index"]
            )
            results["shadow_build"]["table"] = table_figures(target, "document_chunk_shadow")
            results["live_unchanged"] = table_digest(target, "document_chunk") == before
            log("== cutover")
            results["cutover"] = switch(
                "switch-cutover", provider, env, workdir, args, [*flags, "--cutover"]
            )
            results["cutover"]["table"] = table_figures(target, "document_chunk")
        results["build_over_migration"] = (
            results["shadow_build"]["seconds"] / results["migration"]["seconds"]
        )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps(_headline(results), indent=1))
    failed = results["migration"]["returncode"] != 0 or not results["live_unchanged"]
    return 1 if failed else 0


def _headline(results: dict) -> dict:
    migration, build = results["migration"], results["shadow_build"]
    return {
        "migration_seconds": round(migration["seconds"], 1),
        "shadow_build_seconds": round(build["seconds"], 1),
        "build_over_migration": round(results["build_over_migration"], 2),
        "migration_share": round(migration["provider"]["share_of_budget"], 2),
        "shadow_build_share": round(build["provider"]["share_of_budget"], 2),
        "migration_tokens": migration["provider"]["tokens"],
        "shadow_build_tokens": build["provider"]["tokens"],
        "cutover_seconds": round(results["cutover"]["seconds"], 1),
        "live_unchanged": results["live_unchanged"],
        "shadow": build["table"],
        "live_after_cutover": results["cutover"]["table"],
    }


if __name__ == "__main__":
    raise SystemExit(main())

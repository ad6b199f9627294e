"""pgvector-migrate: the old migration script's flags on top of the Dagster assets.

The system collections run first, then the selected partitions as `migrate_knowledge_base`
runs of many knowledge bases each (the runs a backfill makes), in this process, recorded in
the Dagster instance of DAGSTER_HOME so they show in the UI; the index is rebuilt once at the
end when the table changed. Exit codes: 0 nothing failed, 1 some file or run failed, 2 bad
usage or configuration. The flags are in `cli_arguments`, the runs in `run_launcher`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from pgvector_migration.cli_arguments import KINDS, build_parser
from pgvector_migration.redaction import redact_url
from pgvector_migration.run_launcher import (
    cli_instance,
    ensure_partitions,
    migrate_partitions,
    needs_index,
    prune,
    rebuild_index,
    run_system_collections,
)
from pgvector_migration.verify_command import run_verify

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def select_partitions(args: argparse.Namespace, openwebui, state) -> dict[str, list[str]]:
    """The partitions the flags ask for, in a stable order, each with the file ids to limit it
    to (empty: every file); unknown ids are a usage error."""
    from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY

    knowledge_ids = openwebui.knowledge_ids()
    unknown = [k for k in args.knowledge_id if k not in knowledge_ids]
    if unknown:
        from pgvector_migration.status import unknown_knowledge_ids

        raise ValueError(unknown_knowledge_ids(unknown, openwebui.knowledge_bases()))
    keys = args.knowledge_id or list(knowledge_ids)
    if not args.knowledge_id and not args.knowledge_only:
        keys.append(STANDALONE_PARTITION_KEY)
    wanted = set(args.file_id)
    if args.retry_failed:
        failed = state.failed_files()
        wanted |= {file_id for key in keys for file_id in failed.get(key, [])}
        if not wanted:
            return {}
    if not wanted:
        return {key: [] for key in keys}
    selected = {}
    for key in keys:
        files = [f for f in openwebui.partition_file_ids(key)[0] if f in wanted]
        if files:
            selected[key] = files
    missing = wanted - {f for files in selected.values() for f in files}
    if missing and not args.retry_failed:
        raise ValueError(
            f"--file-id: not found in the selected partitions: {', '.join(sorted(missing))}"
        )
    return selected


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.partitions_per_run < 0:
        parser.error(
            "--partitions-per-run must be 0 (all in one run) or more, "
            f"not {args.partitions_per_run}"
        )
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from pgvector_migration.resources.embedding import EmbeddingResource
    from pgvector_migration.resources.old_vector_store import OldVectorStoreResource
    from pgvector_migration.resources.openwebui import OpenWebUIResource
    from pgvector_migration.resources.vector_store import PgVectorResource

    # Looking (status, a dry run) needs no right but SELECT: nothing is created or recorded.
    read_only = args.command == "status" or args.dry_run
    openwebui, vector_store = OpenWebUIResource(), PgVectorResource(read_only=read_only)
    embeddings = EmbeddingResource(reembed=args.reembed)
    old_vector_store = OldVectorStoreResource(
        chroma_path=args.from_chroma,
        declared_model=args.chroma_model,
        samples_per_collection=args.transplant_samples,
        min_similarity=args.transplant_min_similarity,
    )
    try:
        return _command(args, openwebui, vector_store, embeddings, old_vector_store)
    finally:
        vector_store.close()


def _command(args, openwebui, vector_store, embeddings, old_vector_store) -> int:
    """The command the flags name, on the resources `main` made."""
    if args.command == "status":
        from pgvector_migration.status import print_status

        return print_status(openwebui, vector_store)
    if args.command == "verify":
        return run_verify(args, openwebui, vector_store, embeddings)
    if args.command == "switch":
        from pgvector_migration.model_switch import run_switch

        return run_switch(args, openwebui, old_vector_store, run_migration)
    return run_migration(args, openwebui, vector_store, embeddings, old_vector_store)


def run_migration(args, openwebui, vector_store, embeddings, old_vector_store) -> int:
    """A migration (or its dry run) into `vector_store`'s chunk table with `embeddings`: the
    selected partitions, the system collections, pruning and the index; its exit code."""
    from dagster import DagsterInstance

    from pgvector_migration.definitions import build_definitions
    from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY
    from pgvector_migration.resources.run_progress import run_reporter
    from pgvector_migration.summary import RunSummary

    narrowed = bool(args.knowledge_id or args.file_id or args.retry_failed)
    kinds = set(args.only or (["files"] if narrowed else KINDS))
    from pgvector_migration.preflight import check_prune, preflight

    try:
        probe = preflight(openwebui, vector_store, embeddings, old_vector_store, args)
        state = vector_store.state()
        if args.retry_failed and not args.only:
            # Knowledge-base and memory failures are recorded under their kind; their rebuild
            # skips every complete unit, so it retries exactly the failed ones.
            failed = state.failed_files()
            kinds |= {kind for kind in KINDS if failed.get(kind)}
        prune_plan = check_prune(args, kinds, narrowed, openwebui, vector_store)
        keys = select_partitions(args, openwebui, state)
    except Exception as error:
        print(f"pgvector-migrate: configuration error: {redact_url(str(error))}", file=sys.stderr)
        return EXIT_CONFIG
    defs = build_definitions(
        embeddings=embeddings, old_vector_store=old_vector_store, vector_store=vector_store
    )
    # Its pooled storage connections are closed when the runs are over.
    instance: DagsterInstance = cli_instance()
    try:
        summary = RunSummary(dry_run=args.dry_run)
        if prune_plan is not None and args.dry_run:
            summary.prune_plan = prune_plan.lines()
        # The system collections first: one short run whose few requests come before the file
        # stream, rather than after the file run's last write and checks, when the provider
        # would wait through those and the next run's start for them (7 s of a 218 s window,
        # measured).
        run_system_collections(defs, instance, kinds, args, state, summary)
        estimate = None
        if "files" in kinds and args.dry_run:
            from pgvector_migration.dry_run import assess_run

            estimate = assess_run(keys, args, openwebui, vector_store, embeddings, probe, summary)
        elif "files" in kinds:
            ensure_partitions(instance, list(keys))
            job = defs.resolve_job_def("migrate_knowledge_base")
            names = {k.id: k.name or k.id for k in openwebui.knowledge_bases()}
            names[STANDALONE_PARTITION_KEY] = "files in no knowledge base"
            with run_reporter(vector_store, names, list(keys), enabled=not args.no_progress):
                migrate_partitions(job, instance, keys, args, old_vector_store, state, summary)
            if args.prune and not narrowed:
                prune(defs, instance, args, summary)
        if (
            not args.dry_run
            and not args.no_index
            and not summary.run_errors
            and needs_index(summary, vector_store)
        ):
            rebuild_index(defs, instance, summary)
    finally:
        instance.dispose()
    print(summary.text())
    if estimate is not None:
        from pgvector_migration.dry_run import setup_lines

        settings = embeddings.effective_settings(openwebui.rag_settings())
        print("\n".join(setup_lines(openwebui, vector_store, settings, probe)))
        print(estimate.text())
    if args.summary_json:
        summary.write_json(args.summary_json)
    return EXIT_FAILED if summary.has_failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

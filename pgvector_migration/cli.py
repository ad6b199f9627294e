"""pgvector-migrate: the old migration script's flags on top of the Dagster assets.

The selected partitions run as `migrate_knowledge_base` runs of many knowledge bases each (the
runs a backfill makes), in this process, recorded in the Dagster instance of DAGSTER_HOME so
they show in the UI; then the system collections, and the index is rebuilt once at the end
when the table changed. Exit codes: 0 nothing failed, 1 some file or run failed, 2 bad usage or
configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pgvector_migration.pipeline.pruning import DEFAULT_MAX_PRUNE_SHARE
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.pipeline.transplant import (
    DEFAULT_MIN_SIMILARITY,
    DEFAULT_SAMPLES_PER_COLLECTION,
)
from pgvector_migration.redaction import redact_url
from pgvector_migration.verify_command import add_verify_arguments, run_verify

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
KINDS = ("files", "knowledge-bases", "memories")
NO_COMPUTE_LOG_CAPTURE = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgvector-migrate",
        description="Re-process every Open WebUI file into pgvector's document_chunk table, "
        "configured by Open WebUI's own environment variables.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["migrate", "status", "verify"],
        default="migrate",
        help="migrate (the default); status: per knowledge base completeness from the database; "
        "verify: does search find what it should, per knowledge base (--tune, --untune)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the whole setup and report what would be done and cost; write nothing",
    )
    parser.add_argument(
        "--price-per-million",
        type=float,
        metavar="USD",
        help="the provider's price per million tokens, for the dry run's cost estimate "
        "(default: the list price of known OpenAI models)",
    )
    text_source = parser.add_mutually_exclusive_group()
    text_source.add_argument(
        "--reextract",
        dest="text_source",
        action="store_const",
        const=TextSource.UPLOAD_ONLY,
        help="read every upload with Open WebUI's upload-time loaders and fail a file whose "
        "upload cannot be read (by default such a file falls back to the text Open WebUI "
        "stored, and the summary says so)",
    )
    text_source.add_argument(
        "--stored-text",
        dest="text_source",
        action="store_const",
        const=TextSource.STORED,
        help="split the text Open WebUI stored (file.data.content) instead of reading uploads: "
        "fast and works without the uploads folder, but one document per file, without the "
        "page, row or element documents and metadata Open WebUI made at upload",
    )
    parser.set_defaults(text_source=TextSource.UPLOAD)
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-run only the files recorded as failed by earlier runs",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite collections that are already complete"
    )
    parser.add_argument(
        "--knowledge-id", action="append", default=[], help="only this knowledge base (repeatable)"
    )
    parser.add_argument(
        "--file-id", action="append", default=[], help="only this file (repeatable)"
    )
    parser.add_argument(
        "--knowledge-only",
        action="store_true",
        help="only files in a knowledge base; leave files in no knowledge base alone",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=KINDS,
        help="rebuild only this kind of collection (repeatable); default: all three, or only "
        "files when --knowledge-id or --file-id is given",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete rows whose source is gone: deleted files, files removed from a knowledge "
        "base, deleted knowledge bases and memories (--overwrite also prunes the "
        "knowledge-bases and memory collections)",
    )
    parser.add_argument(
        "--prune-max-share",
        type=float,
        default=DEFAULT_MAX_PRUNE_SHARE,
        metavar="SHARE",
        help="refuse (exit 2, nothing deleted) a prune that would delete more than this share "
        "of document_chunk, or anything when Open WebUI has no files, knowledge bases or "
        "memories (default %(default)s); --dry-run --prune shows the plan",
    )
    parser.add_argument(
        "--force-prune",
        action="store_true",
        help="prune even beyond --prune-max-share or from an empty Open WebUI database",
    )
    parser.add_argument(
        "--reembed",
        action="store_true",
        help="ignore the embedding cache: embed every text again and replace its cached vector",
    )
    transplant = parser.add_argument_group(
        "reusing vectors of an old vector store (pip install 'pgvector-migration[chroma]')"
    )
    transplant.add_argument(
        "--from-chroma",
        metavar="PATH",
        help="Open WebUI's Chroma directory ({DATA_DIR}/vector_db): vectors it holds for the "
        "same model are reused instead of embedded again (the store is only read)",
    )
    transplant.add_argument(
        "--chroma-model",
        metavar="MODEL",
        help="the embedding model that made stored vectors without an embedding_config "
        "(old Open WebUI versions); without it those vectors are not used",
    )
    transplant.add_argument(
        "--transplant-samples",
        type=int,
        default=DEFAULT_SAMPLES_PER_COLLECTION,
        metavar="N",
        help="stored chunks per collection embedded afresh and compared before the store is "
        "trusted (default %(default)s; 0 trusts it unchecked)",
    )
    transplant.add_argument(
        "--transplant-min-similarity",
        type=float,
        default=DEFAULT_MIN_SIMILARITY,
        metavar="COSINE",
        help="cosine similarity every sample must reach, else no stored vector is used "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--partitions-per-run",
        type=int,
        default=0,
        metavar="N",
        help="knowledge bases per Dagster run (default 0: all of them in one run, so files are "
        "loaded once and then embedded in one stream that keeps the provider busy; a smaller "
        "N makes runs the UI can re-execute one by one)",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--no-index", action="store_true", help="do not rebuild the vector index")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress: by default a bar on a terminal, else a line every few seconds",
    )
    add_verify_arguments(parser)
    return parser


def _instance():
    from dagster import DagsterInstance

    if os.environ.get("DAGSTER_HOME"):
        from dagster._core.instance.ref import InstanceRef

        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        # Capturing step output forks a process per step; a run killed with SIGKILL would leave
        # those children behind, holding its database sockets. Runs started here log their
        # events to the instance as usual, without that capture.
        ref = InstanceRef.from_dir(str(home), overrides=NO_COMPUTE_LOG_CAPTURE)
        return DagsterInstance.from_ref(ref)
    print("DAGSTER_HOME is not set: runs are not recorded for the Dagster UI", file=sys.stderr)
    return DagsterInstance.ephemeral()


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


# Errors of ours that already say what happened and what to do, whatever caused them.
SELF_EXPLAINING_ERRORS = {"TargetLockTimeout", "TargetConfigurationError"}


def _failure_message(result) -> str:
    """The error of the first failed step a person can act on: one of ours that explains
    itself, else the innermost; of a PostgreSQL error its primary message (the first line,
    not the LINE/caret lines after it), else its readable line."""
    from pgvector_migration.summary import error_reason

    failure = next((event for event in result.all_events if event.is_step_failure), None)
    if failure is None:
        return "the run failed; see it in the Dagster UI"
    error = failure.event_specific_data.error
    while error.cause is not None and error.cls_name not in SELF_EXPLAINING_ERRORS:
        error = error.cause
    first_line = error.message.startswith("psycopg.") or error.cls_name in SELF_EXPLAINING_ERRORS
    reason = error.message.strip().splitlines()[0] if first_line else error_reason(error.message)
    return f"step {failure.step_key}: {redact_url(reason)}"


def partition_runs(ordered_keys: Sequence[str], selected: Sequence[str], per_run: int):
    """The selected partitions grouped into runs of at most `per_run`, each a contiguous range
    of the instance's partition order (a Dagster run covers a range of partitions, so an
    unselected key between two selected ones starts a new run)."""
    wanted = set(selected)
    runs: list[list[str]] = []
    current: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(current) < per_run:
            current.append(key)
            continue
        if current:
            runs.append(current)
        current = [key] if key in wanted else []
    if current:
        runs.append(current)
    return runs


def _run_config(file_ids: list[str], overwrite: bool, text_source: TextSource, started_at):
    return {
        **QUIET_LOGS,
        "ops": {
            "file_inventory": {"config": {"file_ids": file_ids}},
            "completeness_report": {
                "config": {
                    "overwrite": overwrite,
                    "text_source": text_source.name,
                    "overwrite_unless_written_after": started_at.isoformat(),
                }
            },
            "chunked_documents": {"config": {"text_source": text_source.name}},
        },
    }


def _execute_run(job, instance, keys: list[str], run_config: dict):
    """One Dagster run of the migration job over a range of partitions, recorded in the
    instance."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    tags = {"pgvector_migration/source": "cli"}
    if len(keys) == 1:
        return job.execute_in_process(
            run_config=run_config,
            instance=instance,
            partition_key=keys[0],
            tags=tags,
            raise_on_error=False,
        )
    tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    return job.execute_in_process(
        run_config=run_config, instance=instance, tags=tags, raise_on_error=False
    )


def _run_figures(result, node: str) -> dict:
    """A step's figures for its whole run: the run-level metadata Dagster copies onto each
    partition's event, read from one of them."""
    for materialization in result.asset_materializations_for_node(node):
        return {key: value.value for key, value in materialization.metadata.items()}
    return {}


def _by_partition(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows of many partitions grouped by their partition key, in order (one pass, not one
    scan per partition: a run can cover thousands)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["partition_key"], []).append(row)
    return grouped


def _migrate_partitions(job, instance, keys: dict, args, stored_vectors, state, summary) -> None:
    """Run the migration job over the selected partitions, all in one run unless
    --partitions-per-run says otherwise (the runs a backfill makes, only larger): the source and
    our tables are read once per run, and the files of every knowledge base in the run are
    embedded in one stream, with no pause between knowledge bases. Each step holds its partitions'
    leases; a unit another run writes in between is left out of the write (see
    `staged_units`)."""
    import psycopg

    from pgvector_migration.partitions import knowledge_partitions
    from pgvector_migration.resources.vector_store import TargetConfigurationError
    from pgvector_migration.summary import partition_outcomes

    started_at = datetime.now(UTC)
    ordered = instance.get_dynamic_partitions(knowledge_partitions.name)
    per_run = args.partitions_per_run or len(keys)
    for run_keys in partition_runs(ordered, list(keys), per_run):
        file_ids = sorted({f for key in run_keys for f in keys[key]})
        run_config = _run_config(file_ids, args.overwrite, args.text_source, started_at)
        label = run_keys[0] if len(run_keys) == 1 else f"{run_keys[0]}..{run_keys[-1]}"
        try:
            result = _execute_run(job, instance, run_keys, run_config)
            if not result.success:
                summary.run_errors.append(f"partitions {label}: {_failure_message(result)}")
            _add_written(result, stored_vectors, summary)
            rows = _by_partition(state.completeness_rows(run_keys))
            failures = _by_partition(state.failures(run_keys))
            for key in run_keys:
                summary.add(partition_outcomes(rows.get(key, []), failures.get(key, []), False))
            summary.add_notes(state.source_notes(run_keys))
        except (psycopg.Error, TargetConfigurationError) as error:
            summary.run_errors.append(f"partitions {label}: target database lost: {error}")


def _add_written(result, stored_vectors, summary) -> None:
    if stored_vectors.description():
        transplant = _run_figures(result, "transplanted_embeddings")
        if transplant:
            summary.add_transplant(transplant)
    figures = _run_figures(result, "embedded_collections")
    if figures:
        summary.chunks_written += figures["run_chunks_written"]
        summary.texts_embedded += figures["run_texts_embedded"]
        summary.texts_reused += figures["run_texts_reused"]
        summary.texts_transplanted += figures["run_texts_transplanted"]
        summary.tokens_spent += figures["run_tokens_spent"]


def _run_system_collections(defs, instance, kinds: set[str], args, state, summary) -> None:
    from dagster import AssetKey

    from pgvector_migration.summary import KindSummary

    assets = {"knowledge-bases": "knowledge_base_collection", "memories": "memory_collections"}
    selected = [assets[kind] for kind in KINDS if kind in kinds and kind in assets]
    if not selected:
        return
    config = {"overwrite": args.overwrite, "prune": args.prune, "dry_run": args.dry_run}
    result = defs.resolve_job_def("rebuild_system_collections").execute_in_process(
        run_config={**QUIET_LOGS, "ops": {name: {"config": config} for name in selected}},
        instance=instance,
        asset_selection=[AssetKey(name) for name in selected],
        raise_on_error=False,
    )
    if not result.success:
        summary.run_errors.append(f"system collections: {_failure_message(result)}")
    for kind, name in assets.items():
        for materialization in result.asset_materializations_for_node(name):
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            summary.kinds[kind] = KindSummary.from_metadata(metadata, state.failures([kind]))
            summary.chunks_written += metadata["chunks_written"]
            summary.texts_embedded += metadata["texts_embedded"]
            summary.texts_reused += metadata["texts_reused"]
            summary.texts_transplanted += metadata["texts_transplanted"]
            summary.tokens_spent += metadata["tokens_spent"]


def _prune(defs, instance, args, summary) -> None:
    config = {"max_share": args.prune_max_share, "force": args.force_prune}
    result = defs.resolve_job_def("prune_orphaned_rows").execute_in_process(
        run_config={**QUIET_LOGS, "ops": {"pruned_file_rows": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )
    if not result.success:
        summary.run_errors.append(f"pruning: {_failure_message(result)}")
    for materialization in result.asset_materializations_for_node("pruned_file_rows"):
        summary.rows_pruned += materialization.metadata["rows_deleted"].value


def ensure_partitions(instance, keys: list[str]) -> None:
    """Add the partitions the run needs; another process adding the same key at the same
    moment is fine."""
    from pgvector_migration.partitions import knowledge_partitions

    name = knowledge_partitions.name
    existing = set(instance.get_dynamic_partitions(name))
    missing = [key for key in keys if key not in existing]
    if not missing:
        return
    try:
        instance.add_dynamic_partitions(name, missing)
    except Exception:
        existing = set(instance.get_dynamic_partitions(name))
        if any(key not in existing for key in missing):
            raise


def needs_index(summary, vector_store) -> bool:
    """Rebuild the index only when the run changed the table, or when it has none."""
    from pgvector_migration.resources.vector_index import valid_index_exists

    changed = (
        summary.chunks_written
        or summary.rows_pruned
        or any(kind.written or kind.rows_pruned for kind in summary.kinds.values())
    )
    return bool(changed) or not valid_index_exists(vector_store)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.partitions_per_run < 0:
        parser.error(
            "--partitions-per-run must be 0 (all in one run) or more, "
            f"not {args.partitions_per_run}"
        )
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from dagster import DagsterInstance

    from pgvector_migration.definitions import build_definitions
    from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY
    from pgvector_migration.resources.embedding import EmbeddingResource
    from pgvector_migration.resources.openwebui import OpenWebUIResource
    from pgvector_migration.resources.run_progress import run_reporter
    from pgvector_migration.resources.stored_vectors import StoredVectorsResource
    from pgvector_migration.resources.vector_store import PgVectorResource
    from pgvector_migration.summary import RunSummary

    # Looking (status, a dry run) needs no right but SELECT: nothing is created or recorded.
    read_only = args.command == "status" or args.dry_run
    openwebui, vector_store = OpenWebUIResource(), PgVectorResource(read_only=read_only)
    embeddings = EmbeddingResource(reembed=args.reembed)
    stored_vectors = StoredVectorsResource(
        chroma_path=args.from_chroma,
        declared_model=args.chroma_model,
        samples_per_collection=args.transplant_samples,
        min_similarity=args.transplant_min_similarity,
    )
    if args.command == "status":
        from pgvector_migration.status import print_status

        return print_status(openwebui, vector_store)
    if args.command == "verify":
        return run_verify(args, openwebui, vector_store, embeddings)
    narrowed = bool(args.knowledge_id or args.file_id or args.retry_failed)
    kinds = set(args.only or (["files"] if narrowed else KINDS))
    from pgvector_migration.preflight import check_prune, preflight

    try:
        probe = preflight(openwebui, vector_store, embeddings, stored_vectors, args)
        if args.retry_failed and not args.only:
            # Knowledge-base and memory failures are recorded under their kind; their rebuild
            # skips every complete unit, so it retries exactly the failed ones.
            failed = vector_store.state().failed_files()
            kinds |= {kind for kind in KINDS if failed.get(kind)}
        prune_plan = check_prune(args, kinds, narrowed, openwebui, vector_store)
        keys = select_partitions(args, openwebui, vector_store.state())
    except Exception as error:
        print(f"pgvector-migrate: configuration error: {redact_url(str(error))}", file=sys.stderr)
        return EXIT_CONFIG
    defs = build_definitions(
        embeddings=embeddings, stored_vectors=stored_vectors, vector_store=vector_store
    )
    instance: DagsterInstance = _instance()
    state = vector_store.state()
    summary = RunSummary(dry_run=args.dry_run)
    if prune_plan is not None and args.dry_run:
        summary.prune_plan = prune_plan.lines()
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
            _migrate_partitions(job, instance, keys, args, stored_vectors, state, summary)
        if args.prune and not narrowed:
            _prune(defs, instance, args, summary)
    _run_system_collections(defs, instance, kinds, args, state, summary)
    if (
        not args.dry_run
        and not args.no_index
        and not summary.run_errors
        and needs_index(summary, vector_store)
    ):
        index_run = defs.resolve_job_def("rebuild_vector_index").execute_in_process(
            run_config=QUIET_LOGS,
            instance=instance,
            raise_on_error=False,
        )
        if not index_run.success:
            summary.run_errors.append(f"vector index: {_failure_message(index_run)}")
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

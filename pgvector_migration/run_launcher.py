"""Launching the Dagster runs a `pgvector-migrate` invocation is made of, and reading their
results back into the run summary.

The CLI is a thin launcher: it runs the same jobs a backfill or the UI runs, in this process,
recorded in the Dagster instance of DAGSTER_HOME, and only reads their figures and our tables
afterwards to print the summary.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from pgvector_migration.cli_arguments import KINDS
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.redaction import redact_url

NO_COMPUTE_LOG_CAPTURE = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def cli_instance():
    from dagster import DagsterInstance

    if os.environ.get("DAGSTER_HOME"):
        from dagster._core.instance.ref import InstanceRef

        from pgvector_migration.instance_storage import pool_connections

        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        # Capturing step output forks a process per step; a run killed with SIGKILL would leave
        # those children behind, holding its database sockets. Runs started here log their
        # events to the instance as usual, without that capture.
        ref = InstanceRef.from_dir(str(home), overrides=NO_COMPUTE_LOG_CAPTURE)
        instance = DagsterInstance.from_ref(ref)
        # Dagster's PostgreSQL storage opens a connection per statement unless told to keep
        # some (dagster.yaml's storage does); a run over 1,000 knowledge bases records thousands
        # of events, and opening their connections was a third of a no-op run.
        pool_connections(instance)
        return instance
    print("DAGSTER_HOME is not set: runs are not recorded for the Dagster UI", file=sys.stderr)
    return DagsterInstance.ephemeral()


# Errors of ours that already say what happened and what to do, whatever caused them.
SELF_EXPLAINING_ERRORS = {"TargetLockTimeout", "TargetConfigurationError"}


def failure_message(result) -> str:
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
            # The step that materializes chunked_documents (assets/file_migration.py).
            "migrate_files": {"config": {"text_source": text_source.name}},
        },
    }


def _execute_run(job, instance, keys: list[str], run_config: dict, asset_selection=None):
    """One Dagster run of the migration job over a range of partitions, recorded in the
    instance; `asset_selection` (asset keys) runs only those assets and their checks."""
    from pgvector_migration.partitions import partition_range

    partition_key, range_tags = partition_range(keys)
    return job.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition_key,
        tags={"pgvector_migration/source": "cli", **range_tags},
        asset_selection=asset_selection,
        raise_on_error=False,
    )


def migration_selection(job, old_vector_store):
    """The migration job's assets a run needs: without an old vector store the transplant
    step has nothing to do, and leaving it out spares Dagster one planned and one materialized
    event per knowledge base (a fifth of a no-op run's records). None: the whole job."""
    if old_vector_store.description():
        return None
    from dagster import AssetKey

    transplant = AssetKey("transplanted_embeddings")
    keys = job.asset_layer.selected_asset_keys
    return [key for key in keys if key != transplant]


def _run_figures(result, asset: str) -> dict:
    """An asset's figures for its whole run: the run-level metadata Dagster copies onto each
    partition's event, read from one of them (its step, migrate_files, materializes others)."""
    for materialization in result.asset_materializations_for_node("migrate_files"):
        if materialization.asset_key.to_user_string() == asset:
            return {key: value.value for key, value in materialization.metadata.items()}
    return {}


def _by_partition(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows of many partitions grouped by their partition key, in order (one pass, not one
    scan per partition: a run can cover thousands)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["partition_key"], []).append(row)
    return grouped


def migrate_partitions(job, instance, keys: dict, args, old_vector_store, state, summary) -> None:
    """Run the migration job over the selected partitions, all in one run unless
    --partitions-per-run says otherwise (the runs a backfill makes, only larger): the source and
    our tables are read once per run, and the files of every knowledge base in the run are
    embedded in one stream, with no pause between knowledge bases. Each step holds its partitions'
    leases; a unit another run writes in between is left out of the write (see
    `staged_units`)."""
    import psycopg

    from pgvector_migration.partitions import knowledge_partitions, partition_runs
    from pgvector_migration.resources.vector_store import TargetConfigurationError
    from pgvector_migration.summary import partition_outcomes

    started_at = datetime.now(UTC)
    ordered = instance.get_dynamic_partitions(knowledge_partitions.name)
    per_run = args.partitions_per_run or len(keys)
    selection = migration_selection(job, old_vector_store)
    for run_keys in partition_runs(ordered, list(keys), per_run):
        file_ids = sorted({f for key in run_keys for f in keys[key]})
        run_config = _run_config(file_ids, args.overwrite, args.text_source, started_at)
        label = run_keys[0] if len(run_keys) == 1 else f"{run_keys[0]}..{run_keys[-1]}"
        try:
            result = _execute_run(job, instance, run_keys, run_config, selection)
            if not result.success:
                summary.run_errors.append(f"partitions {label}: {failure_message(result)}")
            _add_written(result, old_vector_store, summary)
            rows = _by_partition(state.completeness_rows(run_keys))
            failures = _by_partition(state.failures(run_keys))
            for key in run_keys:
                summary.add(partition_outcomes(rows.get(key, []), failures.get(key, []), False))
            summary.add_notes(state.source_notes(run_keys))
        except (psycopg.Error, TargetConfigurationError) as error:
            summary.run_errors.append(f"partitions {label}: target database lost: {error}")


def _add_written(result, old_vector_store, summary) -> None:
    if old_vector_store.description():
        transplant = _run_figures(result, "transplanted_embeddings")
        if transplant:
            summary.add_transplant(transplant)
    figures = _run_figures(result, "embedded_collections")
    if figures:
        _add_work(summary, figures, prefix="run_")


WORK_FIGURES = (
    "chunks_written",
    "texts_embedded",
    "texts_reused",
    "texts_transplanted",
    "tokens_spent",
)


def _add_work(summary, figures: dict, prefix: str = "") -> None:
    """Add a step's work figures to the summary (the file step names its run totals `run_*`)."""
    for name in WORK_FIGURES:
        setattr(summary, name, getattr(summary, name) + figures[prefix + name])


def run_system_collections(defs, instance, kinds: set[str], args, state, summary) -> None:
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
        summary.run_errors.append(f"system collections: {failure_message(result)}")
    for kind, name in assets.items():
        for materialization in result.asset_materializations_for_node(name):
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            summary.kinds[kind] = KindSummary.from_metadata(metadata, state.failures([kind]))
            _add_work(summary, metadata)


def prune(defs, instance, args, summary) -> None:
    config = {"max_share": args.prune_max_share, "force": args.force_prune}
    result = defs.resolve_job_def("prune_orphaned_rows").execute_in_process(
        run_config={**QUIET_LOGS, "ops": {"pruned_file_rows": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )
    if not result.success:
        summary.run_errors.append(f"pruning: {failure_message(result)}")
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


def rebuild_index(defs, instance, summary) -> None:
    """Run the index job once, after every write of this invocation."""
    result = defs.resolve_job_def("rebuild_vector_index").execute_in_process(
        run_config=QUIET_LOGS, instance=instance, raise_on_error=False
    )
    if not result.success:
        summary.run_errors.append(f"vector index: {failure_message(result)}")

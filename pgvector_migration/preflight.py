"""Everything a migration checks before it writes anything: paths, settings, the target's
rights and pgvector, and what a prune would delete. A failure here is exit code 2."""

from __future__ import annotations

import os
from pathlib import Path


class ConfigurationError(ValueError):
    """A flag or setting the run cannot start with; nothing was written (exit code 2)."""


def check_output_paths(summary_json: Path | None) -> None:
    """DAGSTER_HOME and --summary-json, which are only written at the end of a run: checked
    first, so a run's work is not lost to a path it cannot write."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        existing = next((p for p in [Path(home), *Path(home).parents] if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ConfigurationError(
                f"DAGSTER_HOME={home} is not a folder ({existing} is a file): point it at a "
                "folder for Dagster's run records"
            )
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigurationError(f"DAGSTER_HOME={home} is not writable ({existing})")
    if summary_json is not None:
        folder = summary_json.parent
        if summary_json.is_dir():
            raise ConfigurationError(f"--summary-json {summary_json} is a folder; name a file")
        if not folder.is_dir():
            raise ConfigurationError(
                f"--summary-json {summary_json}: the folder {folder} does not exist"
            )
        target = summary_json if summary_json.exists() else folder
        if not os.access(target, os.W_OK):
            raise ConfigurationError(f"--summary-json {summary_json} is not writable")


def preflight(openwebui, vector_store, embeddings, old_vector_store, args):
    """Every configuration error, found before anything is written (exit code 2). The model's
    dimension is confirmed by the embedding cache when it holds vectors of the target's length
    (never with --reembed), so a re-run loads no model and sends no request just to check. A dry
    run only reads, and checks the whole setup: it returns the engine's probe (see
    `check_read_only`)."""
    from pgvector_migration.embedding.registry import check_engine_settings
    from pgvector_migration.resources.vector_index import check_index_settings
    from pgvector_migration.store.locks import lock_timeout_seconds
    from pgvector_migration.unit_writer import model_dimension

    check_output_paths(args.summary_json)
    if not 0 < args.prune_max_share <= 1:
        raise ConfigurationError(
            f"--prune-max-share {args.prune_max_share:g} is not a share between 0 and 1"
        )
    lock_timeout_seconds()
    check_index_settings(vector_store)
    openwebui.size_limit_mb()  # a limit that is not a number names RAG_FILE_MAX_SIZE
    openwebui.check_schema()
    old_vector_store.check()
    settings = embeddings.effective_settings(openwebui.rag_settings())
    check_engine_settings(settings)
    settings.validate()
    if args.dry_run:
        return check_read_only(openwebui, vector_store, embeddings, settings, args)
    vector_store.check_can_create()
    state = vector_store.state()
    dispatcher = embeddings.dispatcher(settings)
    dimension = model_dimension(dispatcher, vector_store, state, embeddings.reembed)
    vector_store.check_compatible(dimension)
    return None


def check_read_only(openwebui, vector_store, embeddings, settings, args):
    """A dry run's checks, reads only: the uploads folder (when uploads are read), the target
    (reachable, and its table's column against the model), and the engine: a local model
    loaded, a provider reached with its key by one probe request. Returns the `EngineProbe`."""
    from pgvector_migration.embedding.pacing import MAX_IN_FLIGHT
    from pgvector_migration.embedding.probe import probe_engine
    from pgvector_migration.pipeline.text_source import TextSource

    if args.text_source is TextSource.UPLOAD_ONLY:
        uploads = openwebui.resolved_upload_dir()
        if not uploads.is_dir():
            raise ConfigurationError(
                f"UPLOAD_DIR {uploads} is not a folder, and --reextract reads every upload: "
                "set UPLOAD_DIR (or DATA_DIR) to the uploads folder as seen from here"
            )
    vector_store.describe_table()
    probe = probe_engine(
        embeddings.dispatcher(settings),
        settings,
        embeddings.requests_per_minute,
        embeddings.tokens_per_minute,
        embeddings.max_in_flight or MAX_IN_FLIGHT,
    )
    vector_store.check_compatible(probe.dimension)
    return probe


def check_prune(args, kinds: set[str], narrowed: bool, openwebui, vector_store):
    """The prune plan of this run (None when it prunes nothing): shown by a dry run, and a
    prune that would empty the table, or most of it, refused before anything is written."""
    from pgvector_migration.assets.pruning import prune_plan

    files = args.prune and "files" in kinds and not narrowed
    system = (args.prune or args.overwrite) and bool(kinds - {"files"})
    if not (files or system):
        return None
    plan = prune_plan(openwebui, vector_store, files=files, system_collections=system)
    refusal = plan.refusal(args.prune_max_share)
    if refusal and not args.force_prune and not args.dry_run:
        raise ConfigurationError(f"{refusal}; nothing was deleted")
    return plan

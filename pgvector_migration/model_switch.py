"""`pgvector-migrate switch`: change the embedding model with no moment where Open WebUI
searches a mix of vector spaces.

`switch --model M` is an ordinary migration aimed at another table: every collection kind is
built into `document_chunk_shadow` with the new model, its bookkeeping in
`pgvector_migration_shadow` (so an interrupted build resumes, and the embedding cache keyed by
the new model pays for nothing twice), its vector index named after it. Open WebUI keeps
searching `document_chunk`, which the build never touches. `--cutover` brings the shadow up to
date (files uploaded, changed or deleted meanwhile), refuses unless it is complete, then swaps
tables and state schemas in one transaction (`store.table_swap`) and prints the Open WebUI
settings to change. `--rollback` swaps back, `--finish` drops the previous table, `--abandon`
drops the shadow.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Callable

from pgvector_migration.redaction import redact_url

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
# Open WebUI's pgvector column type limit: above it PGVECTOR_USE_HALFVEC is required.
HALFVEC_ABOVE = 2000


class SwitchRefused(RuntimeError):
    """The switch cannot take this step now; the message says why and what to do."""


def run_switch(args: Namespace, openwebui, old_vector_store, migrate: Callable[..., int]) -> int:
    """The `switch` command; `migrate` is the CLI's own migration (a build is one)."""
    from pgvector_migration.resources.vector_store import PgVectorResource
    from pgvector_migration.settings import SettingsError
    from pgvector_migration.store.errors import TargetConfigurationError
    from pgvector_migration.store.table_swap import SwapRefused

    live = PgVectorResource()
    try:
        if args.dry_run and (args.cutover or args.rollback or args.finish or args.abandon):
            raise SwitchRefused(
                "--dry-run shows only what a shadow build would do (switch --model M --dry-run)"
            )
        if args.write_openwebui_settings and not (args.cutover or args.rollback):
            raise SwitchRefused(
                "--write-openwebui-settings writes Open WebUI's settings only at a --cutover "
                "or a --rollback"
            )
        if args.rollback:
            return roll_back(live, openwebui, args.write_openwebui_settings)
        if args.finish:
            return finish(live)
        if args.abandon:
            return abandon(live)
        if not args.model:
            return print_state(live)
        if args.cutover:
            check_switch_state(live)
        shadow, embeddings, settings = shadow_resources(args, openwebui, live)
        try:
            # The build (and the cutover's delta pass) prunes the shadow of what Open WebUI
            # deleted meanwhile; the live table is not this run's.
            args.prune = True
            code = migrate(args, openwebui, shadow, embeddings, old_vector_store)
            if not args.cutover:
                print(
                    f"shadow build of {settings.embedding_model}: "
                    + ("done" if code == EXIT_OK else "done, with failures (see above)")
                    + "; Open WebUI still searches document_chunk. Next: switch --model "
                    f"{settings.embedding_model} --cutover"
                )
                return code
            return cut_over(
                live, shadow, openwebui, settings, args.dimension, args.write_openwebui_settings
            )
        finally:
            shadow.close()
    except (SwitchRefused, SwapRefused) as refusal:
        print(f"pgvector-migrate switch: refused: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    except (TargetConfigurationError, SettingsError) as error:
        print(
            f"pgvector-migrate switch: configuration error: {redact_url(str(error))}",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    finally:
        live.close()


def shadow_resources(args: Namespace, openwebui, live):
    """The vector store aimed at `document_chunk_shadow` (of the new dimension) and the
    embedding resource overridden to the new engine and model, with the effective settings."""
    from pgvector_migration.resources.embedding import EmbeddingResource
    from pgvector_migration.resources.vector_store import PgVectorResource
    from pgvector_migration.store.names import DOCUMENT_CHUNK
    from pgvector_migration.store.table_swap import shadow_table

    embeddings = EmbeddingResource(engine=args.engine, model=args.model, reembed=args.reembed)
    settings = embeddings.effective_settings(openwebui.rag_settings())
    name = shadow_table(DOCUMENT_CHUNK)
    existing = live.table(name).describe()
    dimension = args.dimension or (existing.dimension if existing.exists else None)
    if dimension is None:
        dimension = embeddings.dispatcher(settings).dimension()
    if existing.exists and existing.dimension != dimension:
        raise SwitchRefused(
            f"{name} holds {existing.dimension}-dimensional vectors, not {dimension}: finish "
            "that build with its own --dimension, or drop it with switch --abandon"
        )
    shadow = PgVectorResource(
        table_name=name,
        read_only=args.dry_run,
        vector_length=dimension,
        use_halfvec=True if dimension > HALFVEC_ABOVE else None,
    )
    return shadow, embeddings, settings


def shadow_problems(shadow, live_view, dimension: int | None) -> list[str]:
    """Why the shadow may not replace the live table; none when it may. It must be at least
    as complete as the live one: a unit or an item the live table lacks too (a file no loader
    can read, a failure both builds share) does not hold the switch up, anything else does."""
    table = shadow.describe_table()
    if not table.exists:
        return [f"there is no {shadow.table_name}: build it first with switch --model M"]
    problems = []
    if dimension is not None and table.dimension != dimension:
        problems.append(
            f"{shadow.table_name} has {table.dimension} dimensions, not the declared {dimension}"
        )
    state, live_state = shadow.state(), live_view.state()
    lacking_in_live = {(u["file_id"], u["collection_name"]) for u in live_state.unfinished_units()}
    unfinished = [
        unit
        for unit in state.unfinished_units()
        if (unit["file_id"], unit["collection_name"]) not in lacking_in_live
    ]
    if unfinished:
        shown = ", ".join(f"{u['file_id']} in {u['collection_name']}" for u in unfinished[:5])
        problems.append(f"{len(unfinished)} units not written to the shadow ({shown})")
    live_failed = live_state.failed_files()
    failed = {
        key: missing
        for key, ids in state.failed_files().items()
        if (missing := [item for item in ids if item not in live_failed.get(key, [])])
    }
    if failed:
        shown = "; ".join(f"{key}: {', '.join(ids[:5])}" for key, ids in failed.items())
        problems.append(f"failed in the shadow build only ({shown})")
    return problems


def check_switch_state(live) -> None:
    """Before a cutover's delta pass: a shadow must have been built, and the last switch
    finished (or rolled back and finished)."""
    from pgvector_migration.store.names import DOCUMENT_CHUNK
    from pgvector_migration.store.table_swap import previous_table, shadow_table

    previous, shadow = previous_table(DOCUMENT_CHUNK), shadow_table(DOCUMENT_CHUNK)
    if live.table(previous).describe().exists:
        raise SwitchRefused(
            f"{previous} still holds the table of an unfinished switch: run switch --finish "
            "(drop it) or switch --rollback first"
        )
    if not live.table(shadow).describe().exists:
        raise SwitchRefused(
            f"there is no {shadow} to cut over to: build it first with switch --model M "
            "[--dimension N] (without --cutover)"
        )


def cut_over(
    live, shadow, openwebui, settings, dimension: int | None, write_settings: bool = False
) -> int:
    """Refuse a shadow less complete than the live table (its build's failures that the live
    table shares do not count) or of another dimension, else swap tables and state schemas with
    the switch recorded, in one transaction; then print the settings to change (or, with
    `write_settings`, write them: `switch_openwebui_settings`)."""
    from pgvector_migration.resources.embedding import EmbeddingResource
    from pgvector_migration.resources.vector_store import PgVectorResource
    from pgvector_migration.store.model_switches import ModelSettings, record_switch
    from pgvector_migration.store.names import DOCUMENT_CHUNK
    from pgvector_migration.store.table_swap import cutover, previous_table
    from pgvector_migration.switch_openwebui_settings import apply_change, cutover_change

    check_switch_state(live)
    # The live ledger is only read: this step never writes the live table or its schema
    # outside the swap itself.
    live_view = PgVectorResource(read_only=True)
    try:
        problems = shadow_problems(shadow, live_view, dimension)
    finally:
        live_view.close()
    if problems:
        raise SwitchRefused("the shadow is not ready: " + "; ".join(problems))
    current = EmbeddingResource().effective_settings(openwebui.rag_settings())
    live_table = live.describe_table()
    before = ModelSettings(
        current.embedding_engine,
        current.embedding_model,
        live_table.dimension if live_table.exists else None,
    )
    after = ModelSettings(
        settings.embedding_engine, settings.embedding_model, shadow.describe_table().dimension
    )
    change = cutover_change(openwebui, after.engine, after.model, write_settings)
    with live.connect() as connection, connection.transaction():
        result = cutover(connection, DOCUMENT_CHUNK)
        record_switch(connection, "cutover", before, after, change)
    print(
        f"cutover done in {result.seconds * 1000:.0f} ms: document_chunk now holds "
        f"{after.describe()}; the previous table ({before.describe()}) is kept as "
        f"{previous_table(DOCUMENT_CHUNK)} for switch --rollback until switch --finish"
    )
    return apply_change(openwebui, change, before, after, settings_lines(before, after))


def settings_lines(before, after) -> list[str]:
    """The Open WebUI environment that matches the live table now."""
    lines = [
        "Set in Open WebUI's Admin > Settings > Documents (or with switch "
        "--write-openwebui-settings; its config table wins over the RAG_EMBEDDING_* "
        "environment once it holds them) and its environment:",
        f"  RAG_EMBEDDING_ENGINE={after.engine}",
        f"  RAG_EMBEDDING_MODEL={after.model}",
        f"  PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={after.dimension}",
    ]
    if after.dimension and after.dimension > HALFVEC_ABOVE:
        lines.append("  PGVECTOR_USE_HALFVEC=true")
    elif before.dimension and before.dimension > HALFVEC_ABOVE:
        lines.append("  PGVECTOR_USE_HALFVEC=false")
    if before.dimension != after.dimension:
        lines.append(
            f"and restart Open WebUI: the dimension changed ({before.dimension} -> "
            f"{after.dimension}), and Open WebUI pads or cuts query vectors to the "
            "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH it read at start (and checks the column "
            "against it at start)"
        )
    else:
        lines.append("then restart Open WebUI (or save the settings in its admin panel)")
    return lines


def roll_back(live, openwebui, write_settings: bool = False) -> int:
    """Exchange the live and previous tables and state schemas; print the settings of the
    table that is live again (or, with `write_settings`, put back Open WebUI's settings as
    they were: `switch_openwebui_settings`)."""
    from pgvector_migration.store.model_switches import ModelSettings, record_switch, switch_history
    from pgvector_migration.store.names import DOCUMENT_CHUNK, SCHEMA
    from pgvector_migration.store.table_swap import rollback
    from pgvector_migration.switch_openwebui_settings import apply_change, rollback_change

    with live.connect() as connection:
        history = switch_history(connection, SCHEMA)
        if not history:
            raise SwitchRefused(
                "no switch is recorded in the live state schema (pgvector_migration): nothing "
                "to roll back to"
            )
        last = history[-1]
        back, leaving = last.before, last.after
        change = rollback_change(openwebui, last, write_settings)
        with connection.transaction():
            result = rollback(connection, DOCUMENT_CHUNK)
            record_switch(connection, "rollback", leaving, back, change)
    dimension = live.describe_table().dimension
    restored = ModelSettings(back.engine, back.model, dimension)
    print(
        f"rollback done in {result.seconds * 1000:.0f} ms: document_chunk holds "
        f"{restored.describe()} again"
    )
    return apply_change(
        openwebui, change, leaving, restored, settings_lines(leaving, restored), undone=last
    )


def finish(live) -> int:
    """`--finish`: drop the previous table and its ledger; no rollback after this."""
    from pgvector_migration.store.table_swap import drop_previous, previous_table

    return _drop_kept_table(live, previous_table, drop_previous, "finish")


def abandon(live) -> int:
    """`--abandon`: drop an unfinished shadow table and its ledger."""
    from pgvector_migration.store.table_swap import drop_shadow, shadow_table

    return _drop_kept_table(live, shadow_table, drop_shadow, "abandon")


def _drop_kept_table(live, name_of: Callable, drop: Callable, step: str) -> int:
    from pgvector_migration.store.names import DOCUMENT_CHUNK

    with live.connect() as connection:
        dropped = drop(connection, DOCUMENT_CHUNK)
    name = name_of(DOCUMENT_CHUNK)
    print(f"dropped {name} and its ledger" if dropped else f"no {name}: nothing to {step}")
    return EXIT_OK


def print_state(live) -> int:
    """`switch` alone: the tables of a switch, their dimensions, and the switches recorded."""
    from pgvector_migration.store.model_switches import switch_history
    from pgvector_migration.store.names import DOCUMENT_CHUNK
    from pgvector_migration.store.table_swap import previous_table, shadow_table

    for name in (DOCUMENT_CHUNK, shadow_table(DOCUMENT_CHUNK), previous_table(DOCUMENT_CHUNK)):
        table = live.table(name).describe()
        shown = f"{table.dimension} dimensions" if table.exists else "absent"
        print(f"{name}: {shown}")
    with live.connect() as connection:
        for record in switch_history(connection):
            print(
                f"{record.switched_at:%Y-%m-%d %H:%M:%S} {record.action}: "
                f"{record.before.describe()} -> {record.after.describe()}"
            )
    return EXIT_OK

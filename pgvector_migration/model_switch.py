"""`pgvector-migrate switch`: change the embedding model with no moment where Open WebUI
searches a mix of vector spaces.

`switch --model M` is an ordinary migration aimed at another table: every collection kind is
built into `document_chunk_shadow` with the new model, its bookkeeping in
`pgvector_migration_shadow` (so an interrupted build resumes, and the embedding cache keyed by
the new model pays for nothing twice), its vector index named after it. Open WebUI keeps
searching `document_chunk`, which the build never touches. `--cutover` brings the shadow up to
date (files uploaded, changed or deleted meanwhile), refuses unless it is complete, then swaps
tables and state schemas in one transaction (`store.table_swap`), passing again when Open WebUI
changed its data meanwhile, and prints the Open WebUI settings to change: the same core as the
`model_switch_cutover` asset (`model_switch_cutover`). `--rollback` swaps back, `--finish`
drops the previous table, `--abandon` drops the shadow.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Callable

from pgvector_migration.model_switch_cutover import (
    SwitchRefused,
    check_switch_state,
    settings_lines,
    shadow_store,
)
from pgvector_migration.redaction import redact_url
from pgvector_migration.store.names import DOCUMENT_CHUNK
from pgvector_migration.store.table_swap import previous_table

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


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
            # The build (and the cutover's delta passes) prunes the shadow of what Open WebUI
            # deleted meanwhile; the live table is not this run's.
            build_args = Namespace(**{**vars(args), "prune": True})

            def delta_pass() -> int:
                return migrate(build_args, openwebui, shadow, embeddings, old_vector_store)

            if not args.cutover:
                code = delta_pass()
                print(
                    f"shadow build of {settings.embedding_model}: "
                    + ("done" if code == EXIT_OK else "done, with failures (see above)")
                    + "; Open WebUI still searches document_chunk. Next: switch --model "
                    f"{settings.embedding_model} --cutover"
                )
                return code
            return cut_over(
                live,
                shadow,
                openwebui,
                settings,
                args.dimension,
                delta_pass,
                args.write_openwebui_settings,
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

    embeddings = EmbeddingResource(engine=args.engine, model=args.model, reembed=args.reembed)
    settings = embeddings.effective_settings(openwebui.rag_settings())
    shadow = shadow_store(live, embeddings, settings, args.dimension, read_only=args.dry_run)
    return shadow, embeddings, settings


def cut_over(
    live, shadow, openwebui, settings, dimension: int | None, delta_pass, write_settings: bool
) -> int:
    """The cutover (`model_switch_cutover.cut_over`: delta pass, refusal of an incomplete
    shadow, swap with the switch recorded, again if Open WebUI changed its data meanwhile);
    then print the settings to change (or, with `write_settings`, write them:
    `switch_openwebui_settings`)."""
    from pgvector_migration.model_switch_cutover import cut_over as cut_over_core
    from pgvector_migration.switch_openwebui_settings import apply_change

    done = cut_over_core(
        live,
        shadow,
        openwebui,
        settings,
        dimension,
        delta_pass,
        write_settings=write_settings,
        report=print,
    )
    before, after = done.before, done.after
    print(
        f"cutover done in {done.swap.seconds * 1000:.0f} ms: document_chunk now holds "
        f"{after.describe()}; the previous table ({before.describe()}) is kept as "
        f"{previous_table(DOCUMENT_CHUNK)} for switch --rollback until switch --finish"
    )
    return apply_change(
        openwebui, done.openwebui_change, before, after, settings_lines(before, after)
    )


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

"""The cutover of a model switch, one function for `pgvector-migrate switch --cutover` and the
`model_switch_cutover` asset: the shadow table takes the live one's place only when it is at
least as complete as the live one, of the declared dimension, and current with Open WebUI.

The window between the last delta pass and the swap: a file Open WebUI processes after the
delta pass read the source and before the swap commits lands, embedded with the old model, in
the live table only, and the shadow would replace it without that file. So the cutover reads a
snapshot of the source (`resources.source_snapshot`: files, knowledge bases, memberships,
memories) before each delta pass, and again inside the swap's transaction, after the swap holds
its ACCESS EXCLUSIVE locks: from then on Open WebUI's writes to document_chunk wait, and
everything it recorded in its database before the second read is in the comparison (it records
a file, or its new hash, before it writes the file's vectors). Any difference rolls the swap
back (nothing was renamed), and another delta pass brings the shadow up to date; after
`attempts` passes the cutover is refused, naming the rows that kept changing. A change Open
WebUI makes after the second read writes to the table the swap just put in place, as any write
after the switch does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pgvector_migration.pipeline.openwebui_settings import ConfigChange
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.source_snapshot import source_snapshot
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.model_switches import ModelSettings, record_switch
from pgvector_migration.store.names import DOCUMENT_CHUNK
from pgvector_migration.store.table_swap import (
    DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS,
    SwapResult,
    cutover,
    previous_table,
    shadow_table,
)
from pgvector_migration.switch_openwebui_settings import cutover_change

log = logging.getLogger(__name__)
# Open WebUI's pgvector column type limit: above it PGVECTOR_USE_HALFVEC is required.
HALFVEC_ABOVE = 2000
# Delta passes (each followed by a swap attempt) before a source that keeps changing refuses
# the cutover.
DEFAULT_ATTEMPTS = 3
SHOWN_CHANGES = 5


class SwitchRefused(RuntimeError):
    """The switch cannot take this step now; the message says why and what to do."""


class _SourceMoved(Exception):
    """Open WebUI changed these tables of its database between the delta pass and the swap's
    lock."""

    def __init__(self, tables: list[str]) -> None:
        super().__init__(", ".join(tables))
        self.tables = tables


@dataclass(frozen=True)
class CutoverDone:
    """A committed cutover: what the live table held before and holds now, the swap, and what
    Open WebUI changed in the attempts rolled back before it."""

    before: ModelSettings
    after: ModelSettings
    swap: SwapResult
    attempts: int
    changes_caught: tuple[str, ...]
    openwebui_change: ConfigChange | None = None


def configured_like(live: PgVectorResource, **changes: object) -> PgVectorResource:
    """A resource of its own (connections, state) with `live`'s configuration and `changes`."""
    return PgVectorResource(**{**live.model_dump(exclude_unset=True), **changes})


def shadow_store(
    live: PgVectorResource,
    embeddings: EmbeddingResource,
    settings: RagSettings,
    dimension: int | None,
    read_only: bool = False,
) -> PgVectorResource:
    """The vector store aimed at `document_chunk_shadow` with live's connection settings: of
    `dimension`, else the dimension an existing shadow has, else the model's (one probe);
    halfvec above 2,000 dimensions as Open WebUI's PGVECTOR_USE_HALFVEC."""
    name = shadow_table(DOCUMENT_CHUNK)
    existing = live.table(name).describe()
    wanted = dimension or (existing.dimension if existing.exists else None)
    if wanted is None:
        wanted = embeddings.dispatcher(settings).dimension()
    if existing.exists and existing.dimension != wanted:
        raise SwitchRefused(
            f"{name} holds {existing.dimension}-dimensional vectors, not {wanted}: finish "
            "that build with its own --dimension, or drop it with switch --abandon"
        )
    return configured_like(
        live,
        table_name=name,
        read_only=read_only,
        vector_length=wanted,
        use_halfvec=True if wanted > HALFVEC_ABOVE else None,
    )


def shadow_view(live: PgVectorResource) -> PgVectorResource:
    """The shadow table with the live resource's connection settings, to read only (its
    checks, `verify --shadow`)."""
    return configured_like(live, table_name=shadow_table(DOCUMENT_CHUNK), read_only=True)


def check_switch_state(live: PgVectorResource) -> None:
    """Before a cutover's delta pass: a shadow must have been built, and the last switch
    finished (or rolled back and finished)."""
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


def shadow_problems(
    shadow: PgVectorResource, live_view: PgVectorResource, dimension: int | None
) -> list[str]:
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


def live_problems(live: PgVectorResource, shadow: PgVectorResource, dimension: int | None):
    """`shadow_problems` judged against the live ledger, which this only reads."""
    live_view = configured_like(live, read_only=True)
    try:
        return shadow_problems(shadow, live_view, dimension)
    finally:
        live_view.close()


def cut_over(
    live: PgVectorResource,
    shadow: PgVectorResource,
    openwebui: OpenWebUIResource,
    settings: RagSettings,
    dimension: int | None,
    delta_pass: Callable[[], object],
    write_settings: bool = False,
    attempts: int = DEFAULT_ATTEMPTS,
    lock_timeout_seconds: float = DEFAULT_SWAP_LOCK_TIMEOUT_SECONDS,
    report: Callable[[str], None] = log.info,
) -> CutoverDone:
    """Run `delta_pass` (the migration into the shadow), refuse a shadow less complete than the
    live table or of another dimension, then swap tables and state schemas and record the
    switch in one transaction, unless the source changed since the pass began (see the
    module's docstring): then roll back and pass again, at most `attempts` times. With
    `write_settings` the record holds the change to Open WebUI's config table that the caller
    writes after the commit (`switch_openwebui_settings`), with the values it replaces, read
    here before the swap."""
    if attempts < 1:
        raise SwitchRefused(f"the cutover needs at least one attempt, not {attempts}")
    check_switch_state(live)
    caught: list[str] = []
    last: list[str] = []
    for attempt in range(1, attempts + 1):
        seen = source_snapshot(openwebui)
        delta_pass()
        problems = live_problems(live, shadow, dimension)
        if problems:
            raise SwitchRefused("the shadow is not ready: " + "; ".join(problems))
        before, after = _model_settings(live, shadow, openwebui, settings)
        change = cutover_change(openwebui, after.engine, after.model, write_settings)
        try:
            with live.connect() as connection, connection.transaction():
                swap = cutover(connection, DOCUMENT_CHUNK, lock_timeout_seconds)
                changed = seen.changed_tables(source_snapshot(openwebui, detailed=False))
                if changed:
                    raise _SourceMoved(changed)
                record_switch(connection, "cutover", before, after, change)
            return CutoverDone(before, after, swap, attempt, tuple(caught), change)
        except _SourceMoved as moved:
            # Named after the rollback, with the lock released: a detailed read is slower.
            last = seen.changes(source_snapshot(openwebui)) or [
                f"{table} changed" for table in moved.tables
            ]
            caught.extend(last)
            if attempt < attempts:
                report(
                    f"Open WebUI changed {_shown(last)} after the delta pass read it: "
                    f"the swap was rolled back; delta pass {attempt + 1} of {attempts}"
                )
    raise SwitchRefused(
        f"Open WebUI kept changing its data during the cutover ({attempts} delta passes, each "
        f"followed by a change before the swap; the last: {_shown(last)}); nothing "
        "was switched: run the cutover again when uploads quiet down"
    )


def _shown(changes: list[str]) -> str:
    more = len(changes) - SHOWN_CHANGES
    return ", ".join(changes[:SHOWN_CHANGES]) + (f" and {more} more" if more > 0 else "")


def _model_settings(
    live: PgVectorResource,
    shadow: PgVectorResource,
    openwebui: OpenWebUIResource,
    settings: RagSettings,
) -> tuple[ModelSettings, ModelSettings]:
    """What the live table holds now (Open WebUI's settings) and what the shadow holds."""
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
    return before, after


def vector_length_lines(before: ModelSettings, after: ModelSettings) -> list[str]:
    """The environment lines of the vector column Open WebUI expects (it has no config key):
    the length, and halfvec when the new or the old table needs saying."""
    lines = [f"  PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={after.dimension}"]
    if after.dimension and after.dimension > HALFVEC_ABOVE:
        lines.append("  PGVECTOR_USE_HALFVEC=true")
    elif before.dimension and before.dimension > HALFVEC_ABOVE:
        lines.append("  PGVECTOR_USE_HALFVEC=false")
    return lines


def settings_lines(before: ModelSettings, after: ModelSettings) -> list[str]:
    """The Open WebUI environment that matches the live table now."""
    lines = [
        "Set in Open WebUI's Admin > Settings > Documents (or with switch "
        "--write-openwebui-settings; its config table wins over the RAG_EMBEDDING_* "
        "environment once it holds them) and its environment:",
        f"  RAG_EMBEDDING_ENGINE={after.engine}",
        f"  RAG_EMBEDDING_MODEL={after.model}",
        *vector_length_lines(before, after),
    ]
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

"""`pgvector-migrate status`: per knowledge base, by name and id, how complete it is, from the
tables every run keeps up to date (no `ps | grep`, no `tail -f`). Reads only: a role with
SELECT rights will do."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY
from pgvector_migration.redaction import redact_url

EXIT_OK, EXIT_CONFIG = 0, 2
STANDALONE_NAME = "(files in no knowledge base)"
NAME_WIDTH = 40


def knowledge_base_names(knowledge_bases) -> dict[str, str]:
    """Name by id, with the standalone partition; a knowledge base without a name says so."""
    names = {k.id: k.name or f"{k.id} (no name)" for k in knowledge_bases}
    names[STANDALONE_PARTITION_KEY] = STANDALONE_NAME
    return names


def unknown_knowledge_ids(unknown: Sequence[str], knowledge_bases) -> str:
    """The --knowledge-id error: the ids not found, then every known id with its name."""
    known = [f"  {k.id}  {k.name or '(no name)'}" for k in knowledge_bases]
    listing = "\n".join(known) if known else "  (none: Open WebUI has no knowledge base)"
    return (
        f"--knowledge-id: unknown knowledge id(s) {', '.join(unknown)}; the knowledge bases "
        f"are (id, name; `pgvector-migrate status` shows them too):\n{listing}"
    )


def print_status(openwebui, vector_store) -> int:
    """Per knowledge base: name and id, files, collections complete, failed files, files built
    from stored text, when last checked; then each file built from stored text, with why."""
    from pgvector_migration.store.urls import display_url

    try:
        names = knowledge_base_names(openwebui.knowledge_bases())
        state = vector_store.state()
        rows = state.status_rows()
        stored_text = state.stored_text_files()
    except Exception as error:
        print(f"pgvector-migrate: configuration error: {redact_url(str(error))}", file=sys.stderr)
        return EXIT_CONFIG
    if not state.recorded:
        print(
            f"nothing recorded yet in {display_url(vector_store.resolved_url())}: "
            "no migration has run against this target"
        )
    header = (
        f"{'knowledge base':{NAME_WIDTH}} {'files':>6} {'complete':>13} {'failed':>7} "
        f"{'stored text':>11}  {'last checked':16}  id (for --knowledge-id)"
    )
    print(header)
    print("-" * len(header))
    seen = set()
    for row in rows:
        key = row["partition_key"]
        seen.add(key)
        name = names.get(key, f"{key} (deleted)")
        complete = f"{row['complete']}/{row['units']}"
        checked = row["checked_at"].strftime("%Y-%m-%d %H:%M")
        print(
            f"{_fit(name)} {row['files']:>6} {complete:>13} {row['failed']:>7} "
            f"{row['from_stored_text']:>11}  {checked:16}  {key}"
        )
    for key, name in names.items():
        if key not in seen:
            print(f"{_fit(name)} {'-':>6} {'never run':>13} {'-':>7} {'-':>11}  {'':16}  {key}")
    for row in stored_text:
        print(f"  {row['filename']} ({row['file_id']}): {row['reason']}")
    for line in switch_lines(vector_store):
        print(line)
    return EXIT_OK


def switch_lines(vector_store) -> list[str]:
    """What the last model switch (`pgvector-migrate switch`) made live, and what waits beside
    it; nothing when no switch was recorded."""
    from pgvector_migration.store.model_switches import switch_history
    from pgvector_migration.store.table_swap import previous_table, shadow_table

    table = vector_store.table_name
    with vector_store.connect() as connection:
        history = switch_history(connection, vector_store.state_schema())
    lines = []
    if history:
        last = history[-1]
        lines.append(
            f"model switch: {last.action} at {last.switched_at:%Y-%m-%d %H:%M}, {table} holds "
            f"{last.after.describe()} (before: {last.before.describe()})"
        )
    for waiting, step in (
        (previous_table(table), "--rollback or --finish"),
        (shadow_table(table), "--cutover or --abandon"),
    ):
        if vector_store.table(waiting).describe().exists:
            lines.append(f"  {waiting} is kept beside it (switch {step})")
    return lines


def _fit(name: str) -> str:
    """A name in its column, cut with an ellipsis rather than silently."""
    if len(name) > NAME_WIDTH:
        name = name[: NAME_WIDTH - 1] + "…"
    return f"{name:{NAME_WIDTH}}"

"""`switch --cutover/--rollback --write-openwebui-settings`: Open WebUI's embedding engine and
model written to its `config` table after the swap, and put back as they were by a rollback.

Without the flag nothing here writes: the switch prints the settings to change, as before.

Order and failure: the values found are read before the swap (an unreadable config table
refuses the step with nothing changed) and recorded with the switch in the swap's own
transaction; the swap commits, then the settings are written. The two cannot share a
transaction (Open WebUI's database is another database, often SQLite). When the write fails,
the swap stands and the step exits non-zero with the settings to set by hand: undoing the swap
would be a second swap that can fail too, and a running Open WebUI does not notice either way
(it reads its embedding model and vector length at start), so the table in place with the
exact settings printed is the state that is simplest to finish. The recorded values still let
`--rollback --write-openwebui-settings` put back exactly what was there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from pgvector_migration.pipeline.openwebui_settings import (
    SWITCH_KEYS,
    ConfigChange,
    environment_overrides,
    switch_change,
    undo_change,
)
from pgvector_migration.redaction import redact_url

EXIT_OK, EXIT_FAILED = 0, 1
FLAG = "--write-openwebui-settings"


def cutover_change(openwebui, engine: str, model: str, write: bool) -> ConfigChange | None:
    """Before a cutover: the change that puts Open WebUI on the new model, with the values it
    replaces; None without the flag."""
    if not write:
        return None
    return switch_change(_stored(openwebui, SWITCH_KEYS), engine, model)


def rollback_change(openwebui, undone, write: bool) -> ConfigChange | None:
    """Before a rollback: the change that undoes what the rolled-back step wrote (`undone`, its
    `SwitchRecord`), or, when that step wrote nothing, that sets the model of the table that
    comes back; None without the flag."""
    if not write:
        return None
    if undone.openwebui_config:
        keys = tuple(undone.openwebui_config["keys"])
        return undo_change(undone.openwebui_config, _stored(openwebui, keys))
    back = undone.before
    return switch_change(_stored(openwebui, SWITCH_KEYS), back.engine, back.model)


def apply_change(
    openwebui, change: ConfigChange | None, before, after, lines: list[str], undone=None
) -> int:
    """After the swap committed: write the change (or, without one, print `lines`, the
    environment that matches the live table); the exit code of the step."""
    if change is None:
        print("\n".join(lines))
        if undone is not None and undone.openwebui_config:
            print(
                f"note: the {undone.action} wrote Open WebUI's config table "
                f"({', '.join(undone.openwebui_config['keys'])}); add {FLAG} to put back what "
                "was there, or set the lines above in Open WebUI's admin panel"
            )
        return EXIT_OK
    try:
        written = write_change(openwebui, change, before, after, lines)
    except SettingsNotWritten as failure:
        print(f"pgvector-migrate switch: {failure}", file=sys.stderr)
        return EXIT_FAILED
    print(written.summary)
    print("\n".join(written.still_to_do))
    if written.warning:
        print(written.warning, file=sys.stderr)
    return EXIT_OK


class SettingsNotWritten(RuntimeError):
    """The swap committed, Open WebUI's settings were not written; the message says what to
    set by hand."""


@dataclass(frozen=True)
class SettingsWritten:
    summary: str
    still_to_do: list[str]
    warning: str | None


def write_change(openwebui, change: ConfigChange, before, after, lines: list[str]):
    """Write `change` to Open WebUI's config table after a committed swap (the CLI and the
    `model_switch_cutover` asset): what was written, what is left to set in the environment,
    and a warning when this environment would make Open WebUI ignore the write. Raises
    `SettingsNotWritten` with `lines` (the settings to set by hand) when the write fails."""
    writer = None
    try:
        writer = _writer(openwebui)
        writer.apply(change)
    except Exception as error:  # noqa: BLE001 - any failure: the swap stands, say what to do
        raise SettingsNotWritten(
            f"the swap is done, but Open WebUI's settings could not be written to "
            f"{openwebui.display_url()}: {redact_url(str(error))}\n"
            "Set them by hand (Admin > Settings > Documents, or the environment when "
            "ENABLE_PERSISTENT_CONFIG=false), then restart Open WebUI:\n" + "\n".join(lines)
        ) from None
    finally:
        if writer is not None:
            writer.close()
    overrides = environment_overrides(os.environ)
    warning = None
    if overrides:
        warning = (
            "warning: Open WebUI will not use what was written if it starts with this "
            "environment: " + "; ".join(overrides) + ". Set instead:\n" + "\n".join(lines)
        )
    return SettingsWritten(
        f"wrote Open WebUI's settings to the config table of {openwebui.display_url()}: "
        f"{change.describe()}",
        environment_lines(before, after),
        warning,
    )


def environment_lines(before, after) -> list[str]:
    """What the config table cannot hold: the vector length (and halfvec), read from the
    environment at start, and the restart that makes Open WebUI read its settings."""
    from pgvector_migration.model_switch_cutover import vector_length_lines

    if before.dimension == after.dimension:
        return ["then restart Open WebUI: it reads its embedding engine and model at start"]
    lines = [
        "still to set in Open WebUI's environment (read at start only, no config key holds it):",
        *vector_length_lines(before, after),
    ]
    lines.append(
        f"then restart Open WebUI: the dimension changed ({before.dimension} -> "
        f"{after.dimension}), and it reads the vector length and its embedding model at start"
    )
    return lines


def _stored(openwebui, keys: tuple[str, ...]) -> dict:
    """The stored values of `keys`; a config table that cannot be read refuses the step
    before anything is changed."""
    import sqlalchemy as sa

    from pgvector_migration.model_switch_cutover import SwitchRefused
    from pgvector_migration.resources.openwebui_database import SourceDatabaseError

    try:
        writer = _writer(openwebui)
        try:
            return writer.stored(keys)
        finally:
            writer.close()
    except (SourceDatabaseError, sa.exc.SQLAlchemyError) as error:
        raise SwitchRefused(
            f"{FLAG}: cannot read Open WebUI's settings from {openwebui.display_url()}: "
            f"{redact_url(str(error))}; nothing was changed"
        ) from error


def _writer(openwebui):
    from pgvector_migration.resources.openwebui_settings_writer import OpenWebUISettingsWriter

    return OpenWebUISettingsWriter(openwebui.resolved_database_url(), openwebui.display_url())

"""The one place that writes Open WebUI's database: its `config` table, for a model switch run
with `--write-openwebui-settings` (everything else opens that database read-only,
`openwebui_database.readonly_engine`).

Only the keys a `pipeline.openwebui_settings.ConfigChange` names are touched, in one
transaction: a row per key from Open WebUI 0.10 (`key`, JSON `value`, `updated_at` in epoch
seconds, as Open WebUI's `Config.upsert` writes them), or the newest row's `data` object up
to 0.9. SQLite and PostgreSQL, as Open WebUI itself supports them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pgvector_migration.pipeline.openwebui_settings import ConfigChange, legacy_config_data
from pgvector_migration.resources.openwebui_database import SourceDatabaseError, json_object

# The per-key table of Open WebUI 0.10+, with `value` typed JSON so SQLAlchemy encodes it as
# Open WebUI's own model does, on either database.
CONFIG_ROWS = sa.table(
    "config", sa.column("key", sa.Text), sa.column("value", sa.JSON), sa.column("updated_at")
)
# How long a write waits for Open WebUI's own SQLite writes to finish.
SQLITE_BUSY_SECONDS = 30


class OpenWebUISettingsWriter:
    """Reads and changes Open WebUI's persistent settings in the database at `database_url`
    (shown as `display_url` in messages)."""

    def __init__(self, database_url: str, display_url: str) -> None:
        self.display_url = display_url
        self._engine = writable_engine(database_url)

    def close(self) -> None:
        self._engine.dispose()

    def stored(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The stored values of `keys` (a key without a value is left out)."""
        with self._engine.connect() as connection:
            return self._stored(connection, keys)

    def apply(self, change: ConfigChange) -> None:
        """Set and delete the change's keys, all or none."""
        with self._engine.begin() as connection:
            if _per_key(connection, self.display_url):
                self._apply_per_key(connection, change)
            else:
                self._apply_legacy(connection, change)

    def _stored(self, connection: sa.Connection, keys: tuple[str, ...]) -> dict[str, Any]:
        if _per_key(connection, self.display_url):
            rows = connection.execute(
                sa.select(CONFIG_ROWS.c.key, CONFIG_ROWS.c.value).where(CONFIG_ROWS.c.key.in_(keys))
            ).all()
            return {key: _decoded(value) for key, value in rows}
        row = _newest_legacy_row(connection)
        data = json_object(row[1]) if row else {}
        stored = {}
        for key in keys:
            node: Any = data
            for part in key.split("."):
                node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is not _MISSING:
                stored[key] = node
        return stored

    def _apply_per_key(self, connection: sa.Connection, change: ConfigChange) -> None:
        now = int(time.time())
        for key, value in change.set.items():
            updated = connection.execute(
                sa.update(CONFIG_ROWS)
                .where(CONFIG_ROWS.c.key == key)
                .values(value=value, updated_at=now)
            )
            if updated.rowcount == 0:
                connection.execute(
                    sa.insert(CONFIG_ROWS).values(key=key, value=value, updated_at=now)
                )
        if change.delete:
            connection.execute(sa.delete(CONFIG_ROWS).where(CONFIG_ROWS.c.key.in_(change.delete)))

    def _apply_legacy(self, connection: sa.Connection, change: ConfigChange) -> None:
        row = _newest_legacy_row(connection)
        if row is None:
            raise SourceDatabaseError(
                f"Open WebUI database {self.display_url} has no row in its config table to "
                "write the settings to: start Open WebUI once (it writes one), then retry"
            )
        data = legacy_config_data(json_object(row[1]), change)
        connection.execute(
            sa.text("UPDATE config SET data = :data WHERE id = :id"),
            {"data": json.dumps(data), "id": row[0]},
        )


_MISSING = object()


def _decoded(value: Any) -> Any:
    """A JSON value as stored; SQLite hands back the text when the column was not declared
    JSON to it."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _per_key(connection: sa.Connection, display_url: str) -> bool:
    """Whether the config table is Open WebUI 0.10+'s (one row per key)."""
    inspector = sa.inspect(connection)
    if not inspector.has_table("config"):
        raise SourceDatabaseError(
            f"Open WebUI database {display_url} has no config table: is DATABASE_URL Open "
            "WebUI's database, and has Open WebUI started on it once?"
        )
    return "key" in {column["name"] for column in inspector.get_columns("config")}


def _newest_legacy_row(connection: sa.Connection) -> sa.Row | None:
    return connection.execute(
        sa.text("SELECT id, data FROM config ORDER BY id DESC LIMIT 1")
    ).first()


def writable_engine(database_url: str) -> sa.Engine:
    """An engine on Open WebUI's database that may write (SQLite waits for Open WebUI's own
    writes instead of failing at once)."""
    url = sa.make_url(database_url.replace("postgres://", "postgresql://", 1))
    if url.drivername.startswith("sqlite"):
        path = Path(url.database or "").expanduser()
        if not path.is_file():
            raise SourceDatabaseError(f"Open WebUI database {path} does not exist (DATABASE_URL)")
        return sa.create_engine(
            f"sqlite+pysqlite:///{path.resolve()}",
            connect_args={"timeout": SQLITE_BUSY_SECONDS},
            poolclass=sa.NullPool,
        )
    if url.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        return sa.create_engine(url.set(drivername="postgresql+psycopg"), poolclass=sa.NullPool)
    raise SourceDatabaseError(
        f"DATABASE_URL scheme {url.drivername!r} is not supported; use sqlite or postgresql"
    )

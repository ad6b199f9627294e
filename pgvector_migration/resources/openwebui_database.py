"""Open WebUI's database, opened so that nothing can be written to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa


class SourceDatabaseError(RuntimeError):
    """Open WebUI's database cannot be read; the message names the URL (without password)."""


def json_value(value: Any) -> Any:
    """A JSON column's value parsed when it is text holding JSON, else as it is."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def json_object(value: Any) -> dict[str, Any]:
    """A JSON column's value as an object; anything else as an empty one."""
    parsed = json_value(value)
    return parsed if isinstance(parsed, dict) else {}


def _lenient_utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _read_text_leniently(dbapi_connection, _record) -> None:
    """SQLite hands back whatever bytes a text column holds; bytes that are not UTF-8 become
    lone surrogates instead of failing the whole query, and `source_rows` fails that row."""
    dbapi_connection.text_factory = _lenient_utf8


def readonly_engine(database_url: str) -> sa.Engine:
    """An engine that cannot write: SQLite opened with `mode=ro`, PostgreSQL sessions with
    `default_transaction_read_only`."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    parsed = sa.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = Path(parsed.database or "").expanduser()
        if not path.is_file():
            raise SourceDatabaseError(f"Open WebUI database {path} does not exist (DATABASE_URL)")
        engine = sa.create_engine(
            f"sqlite+pysqlite:///file:{path.resolve()}?mode=ro&uri=true", poolclass=sa.NullPool
        )
        sa.event.listen(engine, "connect", _read_text_leniently)
        return engine
    if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            connect_args={"options": "-c default_transaction_read_only=on"},
            pool_pre_ping=True,
        )
    raise SourceDatabaseError(
        f"DATABASE_URL scheme {parsed.drivername!r} is not supported; use sqlite or postgresql"
    )

"""How long a statement of ours waits for a lock on the target, and who holds the locks it
waits for, so a unit that gave up names the session to end."""

from __future__ import annotations

import logging
import os

import psycopg

from pgvector_migration.store.errors import TargetConfigurationError, TargetLockTimeout
from pgvector_migration.store.names import DOCUMENT_CHUNK, SCHEMA

LOCK_TIMEOUT_ENV = "PGVECTOR_MIGRATION_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 60.0
MAX_LOCK_TIMEOUT_SECONDS = 86_400
log = logging.getLogger(__name__)


def lock_timeout_seconds() -> float:
    """PGVECTOR_MIGRATION_LOCK_TIMEOUT: how long one statement waits for a lock on the target
    before its unit fails (default 60 s); a value that is not a positive number is a
    configuration error."""
    value = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_LOCK_TIMEOUT_SECONDS:
        raise TargetConfigurationError(
            f"{LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds between 0 and "
            f"{MAX_LOCK_TIMEOUT_SECONDS}: set how long a write may wait for a lock on "
            f"{DOCUMENT_CHUNK}, e.g. {DEFAULT_LOCK_TIMEOUT_SECONDS:g}"
        )
    return seconds


# Locks a write, prune or index build of ours may wait for: any but a reader's on the chunk
# table or on our schema, and advisory locks (ours serialise DDL, units and builds).
LOCK_HOLDERS_SQL = """
SELECT DISTINCT a.pid, a.application_name, a.state,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 160), coalesce(c.relname, l.locktype),
       l.mode
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (((c.relname = %(table)s OR n.nspname = %(schema)s)
        AND l.mode <> 'AccessShareLock')
       OR l.locktype = 'advisory')
ORDER BY 1
LIMIT 5
"""


def describe_lock_holders(connection: psycopg.Connection, table: str = DOCUMENT_CHUNK) -> str:
    """The sessions holding locks we may wait for, from pg_locks and pg_stat_activity as far
    as this role may read them; empty when there are none."""
    rows = connection.execute(LOCK_HOLDERS_SQL, {"table": table, "schema": SCHEMA}).fetchall()
    return "; ".join(
        f"pid {pid} (application {app or '-'!r}, {state or 'state unknown'}, {mode} on {what}, "
        f"query {query!r})"
        for pid, app, state, query, what, mode in rows
    )


def lock_timeout_error(url: str, error: psycopg.Error, timeout_ms: int) -> TargetLockTimeout:
    """The error for a lock not granted in time: what the statement waited for, and who holds
    locks now (looked up on a fresh connection outside the pool, which never waits for a lock
    and is not one of the connections the waiting work may hold)."""
    waited_for = " ".join((error.diag.context or error.diag.message_primary or "").split())
    try:
        with psycopg.connect(
            url, autocommit=True, options="-c statement_timeout=5000"
        ) as connection:
            holders = describe_lock_holders(connection)
    except psycopg.Error:
        holders = ""
    return TargetLockTimeout(
        f"gave up after {timeout_ms / 1000:g} s ({LOCK_TIMEOUT_ENV}) waiting for a lock on "
        f"the target{f' ({waited_for})' if waited_for else ''}; held by "
        f"{holders or 'a session this role cannot see'}: end that session or let it finish, "
        "then re-run (nothing of the waiting unit was written)"
    )


def warn_if_locked(connection: psycopg.Connection, what: str, table: str = DOCUMENT_CHUNK) -> None:
    """Log, before a wait that may be long, who holds the locks it would wait for."""
    holders = describe_lock_holders(connection, table)
    if holders:
        log.warning(
            f"{what} may wait up to {lock_timeout_seconds():g} s ({LOCK_TIMEOUT_ENV}) for "
            f"locks held by {holders}"
        )

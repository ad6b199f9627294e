"""Connections to the target: one small `psycopg_pool.ConnectionPool` per process and
resource, borrowed by every query instead of a connection opened per query.

The pool is made on first use in the process that uses it (a Dagster step process, the CLI, a
test), never carried across a fork or a pickle, and closed when its owner is done with it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from pgvector_migration.store.errors import TargetConfigurationError
from pgvector_migration.store.locks import lock_timeout_error, lock_timeout_seconds
from pgvector_migration.store.urls import display_url, without_password

# No unit of work leaves a transaction idle; one that is (a killed run's forked child still
# holding its socket) is ended by the server instead of blocking index builds forever.
IDLE_IN_TRANSACTION_MS = 120_000
# A run holds at most a few at once: the chunking or writing connections, a state query, the
# lease renewer and the progress reporter.
POOL_MAX_SIZE = 6
# Idle pooled connections are closed after this long, so a finished run holds nothing.
POOL_MAX_IDLE_SECONDS = 60.0

Connector = Callable[..., AbstractContextManager[psycopg.Connection]]


def _register_vector_if_installed(connection: psycopg.Connection) -> None:
    """Teach this connection pgvector's types, when the extension exists in its database."""
    if connection.adapters.types.get("vector") is not None:
        return
    if connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
        register_vector(connection)


def _reset_session(connection: psycopg.Connection) -> None:
    """Hand a returned connection to its next borrower as a fresh session would be: settings
    back to the connection's own (lock timeout included), session advisory locks released.
    Done by the borrower, not the pool's `reset` (which returns connections from a worker
    thread, so a borrow right after a return would open another connection)."""
    try:
        if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            connection.rollback()
        connection.execute("RESET ALL; SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        connection.close()  # the pool discards a closed connection


class ConnectionPools:
    """The pool of one resource in this process. A pickled or deep-copied resource (a step's,
    re-created by Dagster) starts without a pool; a forked child never uses its parent's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._key: tuple[int, str, int] | None = None
        self._finalizer: weakref.finalize | None = None

    def __copy__(self) -> ConnectionPools:
        return ConnectionPools()

    def __deepcopy__(self, memo: dict) -> ConnectionPools:
        return ConnectionPools()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def pool(self, url: str, timeout_ms: int) -> ConnectionPool:
        """The pool for this URL and lock timeout in this process, opened on first use; the
        first connection is made here so an unreachable target fails at once, by name."""
        key = (os.getpid(), url, timeout_ms)
        with self._lock:
            if self._key == key and self._pool is not None:
                return self._pool
            if self._pool is not None and self._key is not None and self._key[0] == key[0]:
                self._close_locked()
            # A pool inherited through fork is left alone: its sockets are the parent's.
            self._pool, self._key = _open_pool(url, timeout_ms), key
            # Closed when the resource is dropped, or at exit, by the process that opened it.
            self._finalizer = weakref.finalize(self, _close_in, self._pool, key[0])
            return self._pool

    def close(self) -> None:
        """Close this process's pool and every connection in it (none may be borrowed)."""
        with self._lock:
            if self._key is not None and self._key[0] == os.getpid():
                self._close_locked()
            self._pool, self._key = None, None

    def _close_locked(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._pool, self._key, self._finalizer = None, None, None


def _close_in(pool: ConnectionPool, pid: int) -> None:
    if os.getpid() == pid:
        pool.close()


def session_options(timeout_ms: int) -> str:
    return (
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
        f"-c lock_timeout={timeout_ms}"
    )


def _connect_outside_pool(url: str, kwargs: dict[str, Any]) -> psycopg.Connection:
    """A connection of its own; an unreachable target or a refused login is raised at once,
    naming the URL without its password."""
    refused = None
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as error:
        refused = without_password(str(error), url).strip()
    # Raised outside the handler: the driver's error may echo the password, and Dagster
    # records an exception's context with it.
    raise TargetConfigurationError(f"cannot connect to target {display_url(url)}: {refused}")


def _check_connects(url: str, kwargs: dict[str, Any]) -> None:
    """Connect once outside the pool, which would only retry in the background."""
    _connect_outside_pool(url, kwargs).close()


def _open_pool(url: str, timeout_ms: int) -> ConnectionPool:
    kwargs = {"autocommit": True, "options": session_options(timeout_ms)}
    _check_connects(url, kwargs)
    return ConnectionPool(
        url,
        kwargs=kwargs,
        min_size=0,
        max_size=POOL_MAX_SIZE,
        max_idle=POOL_MAX_IDLE_SECONDS,
        configure=_register_vector_if_installed,
        check=ConnectionPool.check_connection,
        name=f"target {display_url(url)}",
        open=True,
    )


@contextmanager
def _in_use(
    connection: psycopg.Connection, url: str, timeout_ms: int, with_vectors: bool
) -> Iterator[None]:
    """A connection as its user gets it: with pgvector's types when asked for, a lock not
    granted in time raised as `TargetLockTimeout` naming the sessions that hold locks."""
    try:
        if with_vectors:
            _register_vector_if_installed(connection)
        yield
    except psycopg.errors.LockNotAvailable as error:
        raise lock_timeout_error(url, error, timeout_ms) from error


@contextmanager
def dedicated_connection(url: str, with_vectors: bool = False) -> Iterator[psycopg.Connection]:
    """A new session outside the pool, closed on exit: one that must see database and role
    settings as they are now (a pooled session keeps those it started with), or that holds
    session state for long (an index build). Same session settings and lock timeout error as
    a borrowed connection."""
    timeout_ms = int(lock_timeout_seconds() * 1000)
    kwargs = {"autocommit": True, "options": session_options(timeout_ms)}
    with (
        _connect_outside_pool(url, kwargs) as connection,
        _in_use(connection, url, timeout_ms, with_vectors),
    ):
        yield connection


@contextmanager
def borrowed_connection(
    pools: ConnectionPools, url: str, with_vectors: bool = False
) -> Iterator[psycopg.Connection]:
    """An autocommit connection from the pool, returned on exit; every multi-statement unit
    of work runs in an explicit `transaction()`. `with_vectors`: pgvector's types registered
    (the extension may have been created after the connection was made).

    A statement waits at most PGVECTOR_MIGRATION_LOCK_TIMEOUT for a lock; one that times
    out is raised as `TargetLockTimeout`, naming the sessions that hold locks."""
    timeout_ms = int(lock_timeout_seconds() * 1000)
    pool = pools.pool(url, timeout_ms)
    try:
        connection = pool.getconn()
    except PoolTimeout:
        # The server stopped answering (raised by name here), or every connection stayed
        # borrowed for the pool's whole timeout.
        _check_connects(url, pool.kwargs)
        raise TargetConfigurationError(
            f"none of the {POOL_MAX_SIZE} connections to target {display_url(url)} became "
            f"free within {pool.timeout:g} s"
        ) from None
    try:
        with _in_use(connection, url, timeout_ms, with_vectors):
            yield connection
    finally:
        _reset_session(connection)
        pool.putconn(connection)

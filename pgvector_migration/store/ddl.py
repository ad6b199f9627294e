"""Our DDL, one creator at a time: the state schemas' migrations, the embedding cache and a
chunk table with its extensions are created under one advisory lock.

CREATE ... IF NOT EXISTS is not safe against a concurrent creator (two runs starting together
on a new target): both find nothing and one fails on the catalog's unique index. Nor is a lock
taken inside the transaction that creates: that transaction began before the holder committed,
and PostgreSQL reads catalog names through caches it refreshes when a transaction starts, so
it may still find no schema the holder has just made, and fail the same way (measured: 3 of 30
fresh targets with three processes at once). The lock is therefore a session lock taken before
the transaction begins, and released after it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pgvector_migration.store.names import DDL_LOCK


@contextmanager
def ddl_transaction(connection: psycopg.Connection) -> Iterator[None]:
    """A transaction on autocommit `connection` that begins once the DDL lock is ours and
    commits before it is released; it sees every change of the lock's previous holder."""
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("our DDL runs in a transaction of its own, begun after the DDL lock")
    connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (DDL_LOCK,))
    try:
        with connection.transaction():
            yield
    finally:
        # A broken connection has lost its session, and the lock with it.
        if not connection.closed:
            connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (DDL_LOCK,))

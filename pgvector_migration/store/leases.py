"""Partition leases: a second run of a partition (a CLI started twice, a backfill next to the
CLI) waits until the first is done, then finds its work done."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from pgvector_migration.store.state_access import StateAccess

LEASE_SECONDS = 30
log = logging.getLogger(__name__)


class PartitionLeases(StateAccess):
    """The `partition_lease` table."""

    @contextmanager
    def partition_leases(self, partition_keys: Sequence[str]) -> Iterator[None]:
        """Hold these partitions for this process: a second run of any of them (a CLI started
        twice, a backfill next to the CLI) waits until the first is done, then finds its work
        done.

        Lease rows that this process renews, not locks on a held connection: a run killed with
        SIGKILL (or a forked child it leaves behind) cannot keep a partition forever, its lease
        simply expires. All of them are taken at once or none (then it waits and tries again),
        so two runs over overlapping partitions never wait for each other in a circle."""
        keys = sorted(set(partition_keys))
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
        acquire = f"""
            INSERT INTO {self.schema}.partition_lease (partition_key, holder, expires_at)
            SELECT key, %s, now() + make_interval(secs => %s) FROM unnest(%s::text[]) AS key
            ON CONFLICT (partition_key) DO UPDATE
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
             WHERE {self.schema}.partition_lease.expires_at < now()
            RETURNING partition_key
        """
        announced = False
        while True:
            with self._connect() as connection:
                with connection.transaction() as attempt:
                    taken = connection.execute(acquire, (holder, LEASE_SECONDS, keys)).fetchall()
                    if len(taken) == len(keys):
                        break
                    attempt_holders = connection.execute(
                        f"SELECT partition_key, holder FROM {self.schema}.partition_lease "
                        "WHERE partition_key = ANY(%s) AND holder <> %s",
                        (keys, holder),
                    ).fetchall()
                    raise psycopg.Rollback(attempt)
                if not announced:
                    held = ", ".join(f"{key} by {by}" for key, by in attempt_holders[:5])
                    log.warning(
                        f"partitions being migrated by another run (host:pid:lease): {held}; "
                        "waiting for it to finish"
                    )
                    announced = True
            time.sleep(1.0)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_SECONDS / 3):
                with (
                    contextlib.suppress(psycopg.Error),
                    self._connect() as connection,
                ):
                    connection.execute(
                        f"UPDATE {self.schema}.partition_lease "
                        "SET expires_at = now() + make_interval(secs => %s) "
                        "WHERE partition_key = ANY(%s) AND holder = %s",
                        (LEASE_SECONDS, keys, holder),
                    )

        renewer = threading.Thread(target=renew, daemon=True, name="partition-lease")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with (
                contextlib.suppress(psycopg.Error),
                self._connect() as connection,
            ):
                connection.execute(
                    f"DELETE FROM {self.schema}.partition_lease "
                    "WHERE partition_key = ANY(%s) AND holder = %s",
                    (keys, holder),
                )

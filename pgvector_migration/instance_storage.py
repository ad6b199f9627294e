"""The Dagster instance's PostgreSQL storage with pooled connections and batched planned
events (dagster.yaml's `storage: custom:`), for every process that loads the instance: the
daemon, run workers, the webserver, the CLI.

Creating a run over a range of partitions records a "planned materialization" event per
partition and asset: 4,000 for a run over 1,000 knowledge bases. Dagster's own PostgreSQL
storage writes them one by one, three statements each, and opens a new connection for every
statement (except in the webserver, which asks it to keep one): on a loaded machine the backfill
daemon spent about 30 s creating each run of 100 knowledge bases, nearly all of it connecting.
This storage keeps a small pool, as the webserver's does (without its statement timeout), and
writes a batch of planned events in one INSERT.
"""

from __future__ import annotations

import os

from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable, SqlEventLogStorageTable
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.dialects import postgresql

# Events Dagster sends as a batch (a run's planned events, a step's materializations of many
# partitions) are written in batches of this size, in every process that loads the instance
# (the daemon creates the backfills' runs without loading the code location).
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "500")
PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED

# The webserver's defaults: one connection kept, up to 20 more while threads (the daemon's)
# need them at once, closed as soon as they are returned.
POOL_RECYCLE_SECONDS = 3600
POOL_OVERFLOW = 20


def pool_connections(holder) -> None:
    """Pooled connections for a Dagster instance or one of its storages: one per storage (more
    while threads share it), each closed after POOL_RECYCLE_SECONDS, no statement timeout.
    Storages other than PostgreSQL's (SQLite) ignore it."""
    holder.optimize_for_webserver(
        statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=POOL_OVERFLOW
    )


class BatchingPostgresEventLogStorage(PostgresEventLogStorage):
    """Dagster's PostgreSQL event log, writing a batch's planned materializations as Dagster
    writes a batch of materializations: one INSERT of every row (each with its partition, which
    the UI's failed and in-progress partitions are read from), then each asset's row once, from
    its last event. Planned events carry no tags, so there are none to index.

    It also gives a pool its default limit with one upsert: two runs starting at once on a
    new instance (two `dagster job execute`, a backfill's first runs) both create the
    `embedding_api` pool's row, and Dagster 1.13's insert-then-update fails the second run on
    PostgreSQL, whose transaction the duplicate key has aborted (dagster-io/dagster#33552)."""

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        default_limit = (
            self._instance.global_op_concurrency_default_limit if self.has_instance else None
        )
        if default_limit is None or not (
            self.has_concurrency_limits_table and self.has_default_pool_limit_col
        ):
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        self._reconcile_concurrency_limits_from_slots()
        with self.index_transaction() as connection:
            # A concurrent insert of the same key waits here until the other transaction
            # commits (row and slots together), then changes the limit only if it differs.
            upsert = postgresql.insert(ConcurrencyLimitsTable).values(
                concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True
            )
            connection.execute(
                upsert.on_conflict_do_update(
                    index_elements=[ConcurrencyLimitsTable.c.concurrency_key],
                    set_={"limit": default_limit},
                    where=ConcurrencyLimitsTable.c.limit != default_limit,
                )
            )
            self._allocate_concurrency_slots(connection, concurrency_key, default_limit)
        return True

    def store_event_batch(self, events) -> None:
        planned = [event for event in events if event.get_dagster_event().event_type == PLANNED]
        if len(planned) < 2:
            super().store_event_batch(events)
            return
        with self._connect() as connection:
            inserted = connection.execute(
                self.prepare_insert_event_batch(planned).returning(SqlEventLogStorageTable.c.id)
            ).fetchall()
        latest = {}
        for event, (event_id,) in zip(planned, inserted, strict=True):
            latest[event.get_dagster_event().asset_key] = (event, int(event_id))
        with self.index_transaction() as connection:
            for event, event_id in latest.values():
                self._store_asset_event(connection, event, event_id)
        others = [event for event in events if event.get_dagster_event().event_type != PLANNED]
        if others:
            super().store_event_batch(others)


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` (same configuration: postgres_url or postgres_db, and
    should_autocreate_tables) whose storages pool connections and whose event log batches
    planned events."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data=None,
        token_provider=None,
    ) -> None:
        super().__init__(
            postgres_url,
            should_autocreate_tables,
            inst_data=inst_data,
            token_provider=token_provider,
        )
        self._event_log_storage = BatchingPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            pool_connections(storage)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

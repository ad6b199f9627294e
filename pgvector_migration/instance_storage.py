"""The Dagster instance's PostgreSQL storage with pooled connections (dagster.yaml's
`storage: custom:`), for every process that loads the instance: the daemon, run workers, the
webserver, the CLI.

Dagster's own PostgreSQL storage opens a new connection for every statement, except in the
webserver, which asks it to keep one open. Creating a run over a range of partitions records a
"planned" event per partition and asset, one by one: on a loaded machine the backfill daemon
spent about 30 s creating each run of 100 knowledge bases, nearly all of it connecting. This
storage keeps a small pool instead, as the webserver's does, without its statement timeout.
"""

from __future__ import annotations

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

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


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` (same configuration: postgres_url or postgres_db, and
    should_autocreate_tables) whose run, event log and schedule storages pool connections."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
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

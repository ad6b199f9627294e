"""Overall progress of a run across its partitions, read from our state tables.

What a run selected is in `completeness` (rows checked since the run started), what it wrote in
`written_collection` (written after the check), the texts still to write in `staged_chunk`,
failures in `file_failure`. Reads only, a few aggregate queries, cheap enough to poll every
few seconds; a progress reporter in any process can follow a run of any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from pgvector_migration.progress import ProgressReporter, RunProgress
from pgvector_migration.store.connection import Connector
from pgvector_migration.store.names import SCHEMA

PARTITION_FIGURES = """
WITH planned AS (
    SELECT c.partition_key, c.file_id, c.collection_name, c.checked_at
    FROM {schema}.completeness c
    WHERE c.partition_key = ANY(%(keys)s) AND c.checked_at >= %(since)s AND c.selected
)
SELECT p.partition_key,
       count(*) AS selected,
       count(w.file_id) AS written,
       coalesce(sum(w.chunk_count), 0) AS texts_written,
       count(*) FILTER (WHERE w.file_id IS NULL AND f.item_id IS NOT NULL) AS failed,
       coalesce(sum((SELECT count(*) FROM {schema}.staged_chunk s
                     WHERE s.collection_name = p.collection_name AND s.file_id = p.file_id))
                FILTER (WHERE w.file_id IS NULL AND f.item_id IS NULL), 0) AS texts_pending
FROM planned p
LEFT JOIN {schema}.written_collection w
  ON w.collection_name = p.collection_name AND w.file_id = p.file_id
 AND w.written_at >= p.checked_at
LEFT JOIN {schema}.file_failure f
  ON f.partition_key = p.partition_key AND f.item_id = p.file_id AND f.failed_at >= %(since)s
GROUP BY p.partition_key
"""

PLANNED_PARTITIONS = """
SELECT DISTINCT partition_key FROM {schema}.completeness
WHERE partition_key = ANY(%(keys)s) AND checked_at >= %(since)s
"""


def run_progress(
    connect: Connector, partition_keys: Sequence[str], since: datetime, schema: str = SCHEMA
) -> RunProgress:
    """The figures of the run over `partition_keys` that started at `since` (a timestamp of the
    target database's clock or this machine's; checks are stamped by the database), from the
    state schema `schema`."""
    keys = list(partition_keys)
    parameters = {"keys": keys, "since": since}
    with connect() as connection:
        if connection.execute(f"SELECT to_regclass('{schema}.file_failure')").fetchone()[0] is None:
            return RunProgress(partitions_total=len(keys))
        planned = {
            row[0]
            for row in connection.execute(PLANNED_PARTITIONS.format(schema=schema), parameters)
        }
        with connection.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            cursor.execute(PARTITION_FIGURES.format(schema=schema), parameters)
            rows = {row["partition_key"]: row for row in cursor.fetchall()}
    active = tuple(
        key
        for key in keys
        if key in rows and rows[key]["selected"] > rows[key]["written"] + rows[key]["failed"]
    )
    return RunProgress(
        partitions_total=len(keys),
        partitions_planned=len(planned),
        partitions_done=len(planned) - len(active),
        units_selected=sum(row["selected"] for row in rows.values()),
        units_written=sum(row["written"] for row in rows.values()),
        units_failed=sum(row["failed"] for row in rows.values()),
        texts_written=sum(int(row["texts_written"]) for row in rows.values()),
        texts_pending=sum(int(row["texts_pending"]) for row in rows.values()),
        active_partitions=active,
    )


def database_now(connect: Connector) -> datetime:
    """The target database's clock: checks and writes are stamped by it, so a run's start is
    taken from it too (this machine's clock may differ)."""
    with connect() as connection:
        return connection.execute("SELECT now()").fetchone()[0]


def run_reporter(
    vector_store, names: dict[str, str], partition_keys: Sequence[str], enabled: bool = True
) -> ProgressReporter:
    """The progress of a run over `partition_keys` starting now, on standard error."""
    since = database_now(vector_store.connect) if enabled else None
    return ProgressReporter(
        lambda: run_progress(
            vector_store.connect, partition_keys, since, vector_store.state_schema()
        ),
        names=names,
        enabled=enabled,
    )

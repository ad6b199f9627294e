"""Keep the knowledge partitions in step with Open WebUI's `knowledge` table."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from pgvector_migration.assets.common import TABLE_FIGURE
from pgvector_migration.jobs import rebuild_vector_index
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.openwebui_database import SourceDatabaseError
from pgvector_migration.resources.vector_store import PgVectorResource


def partition_changes(wanted: list[str], existing: list[str]) -> tuple[list[str], list[str]]:
    """Keys to add and keys to delete so that the partitions equal `wanted`."""
    return (
        [key for key in wanted if key not in set(existing)],
        [key for key in existing if key not in set(wanted)],
    )


@sensor(
    name="knowledge_partitions_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition for every knowledge base (and the standalone-files key) and "
    "removes the partitions of deleted knowledge bases; their history stays.",
)
def knowledge_partitions_sensor(
    context: SensorEvaluationContext, openwebui: OpenWebUIResource
) -> SensorResult | SkipReason:
    try:
        wanted = openwebui.partition_keys()
    except SourceDatabaseError as error:
        return SkipReason(str(error))
    existing = context.instance.get_dynamic_partitions(knowledge_partitions.name)
    added, deleted = partition_changes(wanted, existing)
    if not added and not deleted:
        return SkipReason(f"{len(existing)} partitions already match the knowledge table")
    requests = []
    if added:
        requests.append(knowledge_partitions.build_add_request(added))
    if deleted:
        requests.append(knowledge_partitions.build_delete_request(deleted))
    return SensorResult(dynamic_partitions_requests=requests)


nightly_migration = AutomationConditionSensorDefinition(
    name="nightly_migration",
    target=AssetSelection.groups("migration", "system_collections"),
    default_status=DefaultSensorStatus.RUNNING,
    emit_backfills=True,
    description="Every night (PGVECTOR_MIGRATION_CRON, default 02:00 UTC) one backfill over "
    "every knowledge partition, and new knowledge bases as soon as they appear. Complete "
    "partitions finish in seconds; a failed one can be re-executed from failure in the UI.",
)

# What each loading asset's metadata calls the rows it changed (a multi-partition run's writer
# names its run-wide figures run_*).
CHANGED_ROWS = {
    "embedded_collections": ("run_chunks_written",),
    "knowledge_base_collection": ("chunks_written", "rows_pruned"),
    "memory_collections": ("chunks_written", "rows_pruned"),
    "pruned_file_rows": ("rows_deleted",),
}
LOADING_ASSETS = tuple(CHANGED_ROWS)
MATERIALIZATIONS_LOOKED_AT = 5000
LATEST_PAGE = 20
ACTIVE_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def of_table(record, table: str) -> bool:
    """Whether a materialization wrote or indexed `table`: a model switch's shadow build runs
    the same assets against document_chunk_shadow, which neither changes the live table nor
    indexes it (records from before the figure existed are the live table's)."""
    figure = record.asset_materialization.metadata.get(TABLE_FIGURE)
    return figure is None or figure.value == table


def latest_materialization_time(instance, asset_name: str, table: str) -> float:
    """When `table` was last materialized by this asset, read newest first a page at a time:
    the latest materialization is nearly always the live table's, and the sensor asks every
    two minutes."""
    cursor, looked_at = None, 0
    while looked_at < MATERIALIZATIONS_LOOKED_AT:
        page = instance.fetch_materializations(
            AssetKey(asset_name), limit=LATEST_PAGE, cursor=cursor
        )
        for record in page.records:
            if of_table(record, table):
                return record.timestamp
        looked_at += len(page.records)
        if not page.has_more:
            break
        cursor = page.cursor
    return 0.0


def last_change_after(instance, asset_name: str, since: float, table: str) -> float:
    """When this asset last wrote or deleted rows of `table` after `since` (0 if it did not):
    a nightly run that found everything complete changes nothing and needs no new index."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset_name), after_timestamp=since),
        limit=MATERIALIZATIONS_LOOKED_AT,
    ).records
    for record in records:
        if not of_table(record, table):
            continue
        metadata = record.asset_materialization.metadata
        if any(name in metadata and metadata[name].value for name in CHANGED_ROWS[asset_name]):
            return record.timestamp
    return 0.0


@sensor(
    name="vector_index_after_loading",
    job=rebuild_vector_index,
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    description="Rebuilds the vector index once loading is over: when rows were written or "
    "deleted after the last index build and no migration run or backfill is still going.",
)
def vector_index_after_loading(
    context: SensorEvaluationContext, vector_store: PgVectorResource
) -> RunRequest | SkipReason:
    instance, table = context.instance, vector_store.table_name
    indexed = latest_materialization_time(instance, "vector_index", table)
    loaded = max(last_change_after(instance, name, indexed, table) for name in LOADING_ASSETS)
    if loaded <= indexed:
        return SkipReason("no rows were written or deleted since the last index build")
    if instance.get_runs_count(RunsFilter(statuses=ACTIVE_RUN_STATUSES)):
        return SkipReason("migration runs are still going; the index waits for all of them")
    if instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        return SkipReason("a backfill is still going")
    return RunRequest(run_key=f"loaded-{loaded}")

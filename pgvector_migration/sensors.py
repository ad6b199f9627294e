"""Keep the knowledge partitions in step with Open WebUI's `knowledge` table."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.openwebui import OpenWebUIResource, SourceDatabaseError


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

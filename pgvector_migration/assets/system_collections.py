"""knowledge_base_collection and memory_collections: the `knowledge-bases` and
`user-memory-{user_id}` collections, rebuilt with the same skipping, cache, atomic replacement
and failure reporting as the file collections."""

from collections.abc import Callable

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pgvector_migration.assets.common import (
    EMBEDDING_POOL,
    effective_settings,
    markdown_table,
    nightly_automation,
    write_metadata,
    write_units,
)
from pgvector_migration.assets.inventory import file_inventory
from pgvector_migration.pipeline.records import (
    KNOWLEDGE_BASES_COLLECTION,
    MEMORY_COLLECTION_PREFIX,
    WriteUnit,
)
from pgvector_migration.pipeline.system_collection_rebuild import (
    PREVIEW_COLUMNS,
    SystemUnits,
    assess_units,
    complete_before,
    knowledge_base_units,
    leftover_knowledge_rows,
    leftover_memory_collections,
    memory_collection_units,
    rebuild_preview,
    units_to_write,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.unit_writer import WriteReport


class SystemCollectionConfig(Config):
    overwrite: bool = Field(
        default=False, description="Rewrite every row, complete or not; also prunes."
    )
    prune: bool = Field(
        default=False,
        description="Delete rows whose knowledge base or memories were deleted in Open WebUI.",
    )
    dry_run: bool = Field(default=False, description="Assess only: write and delete nothing.")


def rebuild(
    context: AssetExecutionContext,
    kind: str,
    planned: SystemUnits,
    present_count: Callable[[WriteUnit], int],
    settings: RagSettings,
    config: SystemCollectionConfig,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> dict[str, MetadataValue]:
    """Assess every unit, write the selected ones, and describe both for the UI.

    Each unusable source row (see `pipeline.source_rows`) is recorded as a failed unit of its
    own, so it counts and a later run retries it, and nothing else waits for it."""
    units, unusable = planned.units, planned.unusable
    state = vector_store.state()
    records = state.written_records(sorted({unit.collection_name for unit in units}))
    assessed = assess_units(
        units, records, present_count, settings.splitting_fingerprint(), settings.embedding_model
    )
    selected = units_to_write(assessed, config.overwrite)
    # Every unit of the kind is assessed on every run: no earlier failure stays true unheard.
    state.clear_failures([kind], None)
    for source_id, label, reason in unusable:
        state.record_failure(kind, source_id, label, "source", reason)
        context.log.warning(reason)
    report = WriteReport()
    if selected and not config.dry_run:
        report = write_units(
            context, lambda _: [kind], selected, settings, embeddings, vector_store
        )
    return {
        "units": MetadataValue.int(len(units) + len(unusable)),
        "units_complete_before": MetadataValue.int(complete_before(assessed)),
        "units_selected": MetadataValue.int(len(selected) + len(unusable)),
        "units_failed": MetadataValue.int(len(report.failures) + len(unusable)),
        **write_metadata(report, settings, vector_store),
        "report": markdown_table(rebuild_preview(assessed, unusable), PREVIEW_COLUMNS),
    }


def after_knowledge_partitions() -> AutomationCondition:
    """Nightly, and whenever a knowledge partition's inventory ran (a new knowledge base is
    migrated as soon as it appears, and its row must follow then, not the next night); the
    rebuild writes only rows whose name or description changed."""
    return nightly_automation() | (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    )


@asset(
    group_name="system_collections",
    deps=[file_inventory],
    pool=EMBEDDING_POOL,
    automation_condition=after_knowledge_partitions(),
    description="The `knowledge-bases` collection: one row per knowledge base (id = knowledge "
    "id, text = name and description), which Open WebUI searches to pick knowledge bases.",
)
def knowledge_base_collection(
    context: AssetExecutionContext,
    config: SystemCollectionConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    settings = effective_settings(openwebui, embeddings)
    knowledge_bases = openwebui.knowledge_bases()
    planned = knowledge_base_units(knowledge_bases, settings.splitting_fingerprint())
    present = set(vector_store.row_ids(KNOWLEDGE_BASES_COLLECTION))
    metadata = rebuild(
        context,
        "knowledge-bases",
        planned,
        lambda unit: int(unit.source_id in present),
        settings,
        config,
        vector_store,
        embeddings,
    )
    orphans = leftover_knowledge_rows(present, knowledge_bases)
    pruned = 0
    if orphans and (config.prune or config.overwrite) and not config.dry_run:
        pruned = vector_store.delete_rows(KNOWLEDGE_BASES_COLLECTION, orphans)
    return MaterializeResult(
        metadata={
            **metadata,
            "rows_of_deleted_knowledge_bases": MetadataValue.int(len(orphans)),
            "rows_pruned": MetadataValue.int(pruned),
        }
    )


@asset(
    group_name="system_collections",
    pool=EMBEDDING_POOL,
    automation_condition=nightly_automation(),
    description="The `user-memory-{user_id}` collections: one row per memory (id = memory id, "
    "text = path and content), which Open WebUI searches to recall a user's memories.",
)
def memory_collections(
    context: AssetExecutionContext,
    config: SystemCollectionConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    settings = effective_settings(openwebui, embeddings)
    planned = memory_collection_units(openwebui.memories(), settings.splitting_fingerprint())
    counts = vector_store.row_counts([unit.collection_name for unit in planned.units])
    metadata = rebuild(
        context,
        "memories",
        planned,
        lambda unit: counts.get(unit.collection_name, 0),
        settings,
        config,
        vector_store,
        embeddings,
    )
    orphans = leftover_memory_collections(
        vector_store.collections_with_prefix(MEMORY_COLLECTION_PREFIX), planned
    )
    pruned = 0
    if (config.prune or config.overwrite) and not config.dry_run:
        pruned = sum(vector_store.delete_rows(name) for name in orphans)
    return MaterializeResult(
        metadata={
            **metadata,
            "collections_of_users_without_memories": MetadataValue.json(orphans),
            "rows_pruned": MetadataValue.int(pruned),
        }
    )

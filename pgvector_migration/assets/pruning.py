"""pruned_file_rows: delete the rows of deleted files and deleted knowledge bases."""

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from pgvector_migration.assets.common import markdown_table, table_figure
from pgvector_migration.pipeline.pruning import (
    DEFAULT_MAX_PRUNE_SHARE,
    Orphan,
    PrunePlan,
    find_orphans,
    system_orphans,
)
from pgvector_migration.pipeline.records import KNOWLEDGE_BASES_COLLECTION, MEMORY_COLLECTION_PREFIX
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource


class PruneConfig(Config):
    dry_run: bool = Field(default=False, description="List what would be deleted; delete nothing.")
    max_share: float = Field(
        default=DEFAULT_MAX_PRUNE_SHARE,
        description="Refuse to delete more than this share of document_chunk (the CLI's "
        "--prune-max-share), or anything when Open WebUI has no files, knowledge bases or "
        "memories: the sign of a wrong DATABASE_URL.",
    )
    force: bool = Field(
        default=False, description="Delete even beyond max_share (the CLI's --force-prune)."
    )


def file_orphans(openwebui: OpenWebUIResource, vector_store: PgVectorResource) -> list[Orphan]:
    """Rows of deleted files, of files removed from a knowledge base and of deleted
    knowledge bases' collections; read only."""
    state = vector_store.state()
    membership = openwebui.knowledge_membership()
    knowledge_ids = set(openwebui.knowledge_ids())
    collections_we_wrote = state.collections_written()
    owners = vector_store.file_row_owners(sorted(knowledge_ids | collections_we_wrote))
    return find_orphans(
        owners,
        set(openwebui.file_ids()),
        membership.files_by_knowledge,
        knowledge_ids,
        collections_we_wrote,
    )


def prune_plan(
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    files: bool,
    system_collections: bool,
) -> PrunePlan:
    """What pruning the file collections and/or the system collections would delete, with
    the table's size and whether the source is empty; reads only."""
    knowledge_ids = set(openwebui.knowledge_ids())
    memory_user_ids = {memory.user_id for memory in openwebui.memories()}
    orphans = file_orphans(openwebui, vector_store) if files else []
    if system_collections:
        memory_collections = vector_store.collections_with_prefix(MEMORY_COLLECTION_PREFIX)
        orphans += system_orphans(
            vector_store.row_ids(KNOWLEDGE_BASES_COLLECTION),
            knowledge_ids,
            vector_store.row_counts(memory_collections),
            memory_user_ids,
        )
    return PrunePlan(
        orphans,
        sum(vector_store.rows_by_kind().values()),
        not (knowledge_ids or memory_user_ids or openwebui.file_ids()),
    )


@asset(
    group_name="maintenance",
    description="Rows whose source is gone in Open WebUI (a deleted file, a file removed from a "
    "knowledge base, a deleted knowledge base), deleted from document_chunk. Collections we do "
    "not own (web-search-* and others) are never touched; a prune of more than max_share of "
    "the table, or from an empty Open WebUI, is refused unless forced.",
)
def pruned_file_rows(
    context: AssetExecutionContext,
    config: PruneConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
) -> MaterializeResult:
    plan = prune_plan(openwebui, vector_store, files=True, system_collections=False)
    refusal = plan.refusal(config.max_share)
    if refusal and not config.force and not config.dry_run:
        raise Failure(description=refusal)
    deleted = 0
    if not config.dry_run:
        for orphan in plan.orphans:
            if orphan.file_id is None:
                deleted += vector_store.delete_rows(orphan.collection_name)
            else:
                deleted += vector_store.delete_file_rows(orphan.collection_name, orphan.file_id)
            scope = "" if orphan.file_id is None else f" for file {orphan.file_id}"
            context.log.info(
                f"pruned {orphan.rows} rows of {orphan.collection_name}{scope}: {orphan.reason}"
            )
    return MaterializeResult(
        metadata={
            **table_figure(vector_store),
            "orphaned_groups": MetadataValue.int(len(plan.orphans)),
            "rows_deleted": MetadataValue.int(deleted),
            "dry_run": MetadataValue.bool(config.dry_run),
            "orphans": markdown_table(
                [o.__dict__ for o in plan.orphans], ["collection_name", "file_id", "rows", "reason"]
            ),
        }
    )

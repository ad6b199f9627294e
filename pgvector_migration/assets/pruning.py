"""pruned_file_rows: delete the rows of deleted files and deleted knowledge bases."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from pgvector_migration.assets.common import markdown_table
from pgvector_migration.pipeline.pruning import find_orphans
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource


class PruneConfig(Config):
    dry_run: bool = Field(default=False, description="List what would be deleted; delete nothing.")


@asset(
    group_name="maintenance",
    description="Rows whose source is gone in Open WebUI (a deleted file, a file removed from a "
    "knowledge base, a deleted knowledge base), deleted from document_chunk. Collections we do "
    "not own (web-search-* and others) are never touched.",
)
def pruned_file_rows(
    context: AssetExecutionContext,
    config: PruneConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
) -> MaterializeResult:
    state = vector_store.state()
    membership = openwebui.knowledge_membership()
    knowledge_ids = set(openwebui.knowledge_ids())
    collections_we_wrote = state.collections_written()
    owners = vector_store.file_row_owners(sorted(knowledge_ids | collections_we_wrote))
    orphans = find_orphans(
        owners,
        set(openwebui.file_ids()),
        membership.files_by_knowledge,
        knowledge_ids,
        collections_we_wrote,
    )
    deleted = 0
    if not config.dry_run:
        for orphan in orphans:
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
            "orphaned_groups": MetadataValue.int(len(orphans)),
            "rows_deleted": MetadataValue.int(deleted),
            "dry_run": MetadataValue.bool(config.dry_run),
            "orphans": markdown_table(
                [o.__dict__ for o in orphans], ["collection_name", "file_id", "rows", "reason"]
            ),
        }
    )

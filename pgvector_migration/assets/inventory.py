"""file_inventory: every file of a partition and the collections it must be in."""

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from pgvector_migration.assets.common import markdown_table, nightly_automation
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource


class InventoryConfig(Config):
    file_ids: list[str] = Field(
        default_factory=list,
        description="Only these file ids (of this partition); empty means every file.",
    )


@asset(
    partitions_def=knowledge_partitions,
    group_name="migration",
    automation_condition=nightly_automation(),
    description="Every file of the knowledge base (or of no knowledge base), where its upload "
    "is, and the collections it must be in. Dangling file ids, rows of deleted knowledge "
    "bases and unusable file rows are reported, not fatal.",
)
def file_inventory(
    context: AssetExecutionContext,
    config: InventoryConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
) -> MaterializeResult:
    partition_key = context.partition_key
    openwebui.check_schema()
    file_ids, dangling = openwebui.partition_file_ids(partition_key)
    if config.file_ids:
        file_ids = [file_id for file_id in file_ids if file_id in set(config.file_ids)]
    rows: list[dict] = []
    notes = openwebui.partition_notes(partition_key)

    def listed_files():
        # Listing files downloads none of them; the steps that read bytes do.
        for file in openwebui.iter_files(file_ids, fetch_s3="never"):
            rows.append(
                {
                    "file_id": file.id,
                    "filename": file.filename,
                    "content_type": file.content_type,
                    "stored content": "yes" if file.stored_content is not None else "no",
                    "upload": str(file.upload_path) if file.upload_path else file.upload_problem,
                    "upload_path": str(file.upload_path) if file.upload_path else None,
                    "collections": len(file.collection_names(partition_key)),
                    "source problem": file.source_problem,
                }
            )
            notes.extend((file.id, note) for note in file.notes)
            if file.source_problem:
                context.log.warning(file.source_problem)
            yield file

    state = vector_store.state()
    state.replace_inventory(partition_key, listed_files())
    state.replace_source_notes(partition_key, notes)
    for subject_id, note in notes:
        context.log.warning(f"{subject_id}: {note}")
    return MaterializeResult(
        metadata={
            "files": MetadataValue.int(len(rows)),
            "collections": MetadataValue.int(sum(row["collections"] for row in rows)),
            "files_without_upload": MetadataValue.int(
                sum(1 for row in rows if row["upload"] != row["upload_path"])
            ),
            "dangling_file_ids": MetadataValue.json([file_id for _, file_id in dangling]),
            "files_with_unusable_rows": MetadataValue.int(
                sum(1 for row in rows if row["source problem"])
            ),
            "notes": markdown_table(
                [{"id": subject_id, "note": note} for subject_id, note in notes], ["id", "note"]
            ),
            "preview": markdown_table(rows, list(rows[0]) if rows else ["file_id"]),
        }
    )

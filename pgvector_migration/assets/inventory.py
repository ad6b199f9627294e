"""file_inventory: every file of the run's partitions and the collections it must be in."""

from collections import Counter

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from pgvector_migration.assets.common import (
    PREVIEW_ROWS,
    add_partition_figures,
    markdown_table,
    migration_backfill_policy,
    nightly_automation,
)
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource


class InventoryConfig(Config):
    file_ids: list[str] = Field(
        default_factory=list,
        description="Only these file ids (of the run's partitions); empty means every file.",
    )


@asset(
    partitions_def=knowledge_partitions,
    backfill_policy=migration_backfill_policy(),
    group_name="migration",
    automation_condition=nightly_automation(),
    description="Every file of the knowledge base (or of no knowledge base), where its upload "
    "is, and the collections it must be in. Dangling file ids, rows of deleted knowledge "
    "bases and unusable file rows are reported, not fatal. One run covers many knowledge "
    "bases: the source is read once for all of them.",
)
def file_inventory(
    context: AssetExecutionContext,
    config: InventoryConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
) -> MaterializeResult:
    keys = context.partition_keys
    openwebui.check_schema()
    membership = openwebui.knowledge_membership()
    wanted = set(config.file_ids)
    partitions_of: dict[str, list[str]] = {}
    notes: list[tuple[str, str, str]] = []
    dangling: dict[str, list[str]] = {}
    for key in keys:
        file_ids, dangling_pairs = openwebui.partition_file_ids(key, membership)
        dangling[key] = [file_id for _, file_id in dangling_pairs]
        notes += [(key, *note) for note in openwebui.partition_notes(key, membership)]
        for file_id in file_ids:
            if not wanted or file_id in wanted:
                partitions_of.setdefault(file_id, []).append(key)
    counts: dict[str, Counter[str]] = {key: Counter() for key in keys}
    previews: dict[str, list[dict]] = {key: [] for key in keys}
    listed: set[str] = set()

    def listed_files():
        # Listing files downloads none of them; the steps that read bytes do.
        for file in openwebui.iter_files(list(partitions_of), "never", membership):
            listed.add(file.id)
            notes.extend(
                (key, file.id, note) for key in partitions_of[file.id] for note in file.notes
            )
            if file.source_problem:
                context.log.warning(file.source_problem)
            for key in partitions_of[file.id]:
                collections = len(file.collection_names(key))
                counts[key].update(
                    files=1,
                    collections=collections,
                    without_upload=file.upload_path is None,
                    unusable=bool(file.source_problem),
                )
                if len(previews[key]) < PREVIEW_ROWS:
                    previews[key].append(
                        {
                            "file_id": file.id,
                            "filename": file.filename,
                            "content_type": file.content_type,
                            "stored content": "yes" if file.stored_content is not None else "no",
                            "upload": str(file.upload_path or file.upload_problem),
                            "collections": collections,
                            "source problem": file.source_problem,
                        }
                    )
                yield key, file

    state = vector_store.state()
    with state.partition_leases(keys):
        state.replace_inventory(keys, listed_files())
        state.replace_source_notes(keys, notes)
    for key, subject_id, note in notes:
        context.log.warning(f"{key}: {subject_id}: {note}")
    # A partition shows its own figures when it has something to report (a note, a dangling
    # file id, an unusable row); the others show the run's.
    reported = {key for key, _, _ in notes} | {key for key in keys if dangling[key]}
    reported |= {key for key in keys if counts[key]["unusable"]}
    own = {
        key: {
            "files": MetadataValue.int(counts[key]["files"]),
            "collections": MetadataValue.int(counts[key]["collections"]),
            "files_without_upload": MetadataValue.int(counts[key]["without_upload"]),
            "dangling_file_ids": MetadataValue.json(dangling[key]),
            "files_with_unusable_rows": MetadataValue.int(counts[key]["unusable"]),
            "notes": markdown_table(
                [{"id": s, "note": n} for k, s, n in notes if k == key], ["id", "note"]
            ),
            "preview": markdown_table(
                previews[key], list(previews[key][0]) if previews[key] else ["file_id"]
            ),
        }
        for key in keys
        if key in reported
    }
    return MaterializeResult(
        metadata={
            "partitions_in_run": MetadataValue.int(len(keys)),
            "run_files": MetadataValue.int(len(listed)),
            "run_collections": MetadataValue.int(sum(c["collections"] for c in counts.values())),
            **add_partition_figures(context, own),
        }
    )

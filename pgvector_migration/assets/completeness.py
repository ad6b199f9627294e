"""completeness_report: how complete every (file, collection) of a partition is, and which of
them this run rewrites."""

from collections import Counter
from collections.abc import Iterator
from datetime import datetime

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pgvector_migration.assets.common import (
    downstream_automation,
    effective_settings,
    markdown_table,
    unit_fingerprint,
)
from pgvector_migration.assets.inventory import file_inventory
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.completeness import (
    NO_ROWS,
    Assessment,
    UnitStatus,
    assess,
)
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType
from pgvector_migration.pipeline.planning import FilePlan, plan_file
from pgvector_migration.pipeline.records import (
    STANDALONE_PARTITION_KEY,
    SourceFile,
    file_collection_name,
)
from pgvector_migration.pipeline.splitting import EmptyContentError, content_hash_of
from pgvector_migration.resources.embeddings import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings


class CompletenessConfig(Config):
    overwrite: bool = Field(
        default=False,
        description="Rewrite every (file, collection), complete or not (the CLI's --overwrite).",
    )
    reextract: bool = Field(
        default=False,
        description="Read every upload again with Open WebUI's loaders instead of reusing the "
        "text Open WebUI stored in file.data.content (the CLI's --reextract).",
    )
    overwrite_unless_written_after: str | None = Field(
        default=None,
        description="With overwrite: leave alone what was already rewritten after this ISO "
        "time. The CLI passes its start time, so a file in several knowledge bases has its own "
        "collection rewritten once per CLI run.",
    )


def _unprocessable(file: SourceFile, names: list[str], status: UnitStatus, reason: str):
    return [(file, name, Assessment(status, None, 0, reason)) for name in names]


def assess_file(
    file: SourceFile,
    collection_names: list[str],
    present,
    records,
    settings: RagSettings,
    reextract: bool = False,
) -> list[tuple[SourceFile, str, Assessment]]:
    """Assess every collection of one file; plan its chunks only when a count is needed (or
    when the text must be extracted again to know its hash)."""
    plan: FilePlan | None = None

    def planned() -> FilePlan:
        nonlocal plan
        if plan is None:
            plan = plan_file(file, settings, collection_names, reextract)
        return plan

    try:
        if file.source_problem:
            raise LoaderError(file.source_problem)
        if file.oversize:
            raise UnsupportedFileType(file.oversize)
        content = None if reextract else file.stored_content
        content_hash = content_hash_of(content) if content is not None else planned().content_hash
        fingerprint = unit_fingerprint(settings, reextract, file)
        return [
            (
                file,
                name,
                assess(
                    present.get((name, file.id), NO_ROWS),
                    records.get((name, file.id)),
                    content_hash,
                    fingerprint,
                    settings.embedding_model,
                    lambda name=name: len(planned().chunks_by_collection[name]),
                ),
            )
            for name in collection_names
        ]
    except (UnsupportedFileType, EmptyContentError) as error:
        return _unprocessable(file, collection_names, UnitStatus.UNSUPPORTED, str(error))
    except LoaderError as error:
        return _unprocessable(file, collection_names, UnitStatus.UNREADABLE, str(error))


@asset(
    partitions_def=knowledge_partitions,
    group_name="migration",
    deps=[file_inventory],
    automation_condition=downstream_automation(),
    description="Per (file, collection): complete, partial, stale, missing, unsupported or "
    "unreadable, with expected and present chunk counts; selects what this run rewrites.",
)
def completeness_report(
    context: AssetExecutionContext,
    config: CompletenessConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    partition_key = context.partition_key
    settings = effective_settings(openwebui, embeddings)
    state = vector_store.state()
    file_ids = state.inventory_file_ids(partition_key)
    collection_names = [file_collection_name(file_id) for file_id in file_ids]
    if file_ids and partition_key != STANDALONE_PARTITION_KEY:
        collection_names.append(partition_key)
    present = vector_store.present_rows(collection_names)
    records = state.written_records(collection_names)
    state.clear_failures(partition_key, file_ids)
    rewritten: set[tuple[str, str]] = set()
    if config.overwrite and config.overwrite_unless_written_after:
        since = datetime.fromisoformat(config.overwrite_unless_written_after)
        rewritten = state.written_since(collection_names, since)

    statuses: Counter[str] = Counter()
    selected_files: set[str] = set()
    preview: list[dict] = []

    def assessed() -> Iterator:
        fetch = "always" if config.reextract else "missing-content"
        for file in openwebui.iter_files(file_ids, fetch_s3=fetch):
            names = file.collection_names(partition_key)
            assessed_units = assess_file(file, names, present, records, settings, config.reextract)
            unreadable = next(
                (a for _, _, a in assessed_units if a.status == UnitStatus.UNREADABLE), None
            )
            if unreadable:
                state.record_failure(
                    partition_key, file.id, file.filename, "loading", unreadable.reason
                )
            for file_, name, assessment in assessed_units:
                selected = assessment.status.needs_work or (
                    config.overwrite
                    and assessment.status not in (UnitStatus.UNSUPPORTED, UnitStatus.UNREADABLE)
                    and not (
                        assessment.status == UnitStatus.COMPLETE and (name, file.id) in rewritten
                    )
                )
                statuses[str(assessment.status)] += 1
                if selected:
                    selected_files.add(file.id)
                if assessment.status != UnitStatus.COMPLETE or len(preview) < 20:
                    preview.append(
                        {
                            "file": file_.filename,
                            "collection": name,
                            "status": str(assessment.status),
                            "expected": assessment.expected_chunks,
                            "present": assessment.present_chunks,
                            "reason": assessment.reason,
                        }
                    )
                yield file_, name, assessment, selected

    state.replace_completeness(partition_key, assessed())
    return MaterializeResult(
        metadata={
            **{
                f"units_{status}": MetadataValue.int(statuses[str(status)]) for status in UnitStatus
            },
            "files_selected": MetadataValue.int(len(selected_files)),
            "overwrite": MetadataValue.bool(config.overwrite),
            "embedding_model": MetadataValue.text(
                f"{settings.embedding_engine or 'local'}: {settings.embedding_model}"
            ),
            "report": markdown_table(
                preview, ["file", "collection", "status", "expected", "present", "reason"]
            ),
        }
    )

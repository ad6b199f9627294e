"""completeness_report: how complete every (file, collection) of a partition is, and which of
them this run rewrites."""

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
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
from pgvector_migration.pipeline.text_source import (
    TextOrigin,
    TextSource,
    fallback_note,
    source_fingerprint,
    with_note,
)
from pgvector_migration.resources.embeddings import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings


class CompletenessConfig(Config):
    overwrite: bool = Field(
        default=False,
        description="Rewrite every (file, collection), complete or not (the CLI's --overwrite).",
    )
    text_source: TextSource = Field(
        default=TextSource.UPLOAD,
        description="Where file text comes from: 'upload' (Open WebUI's upload-time loaders; "
        "the stored file.data.content when the upload cannot be read), 'upload-only' (a file "
        "whose upload cannot be read fails; the CLI's --reextract) or 'stored' "
        "(file.data.content; the CLI's --stored-text).",
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
    text_source: TextSource = TextSource.UPLOAD,
) -> list[tuple[SourceFile, str, Assessment]]:
    """Assess every collection of one file. The upload is read only when an answer needs it:
    a unit already written from the same upload bytes under the same settings takes its content
    hash from our record, and a unit with neither rows nor a record needs no hash at all."""
    plan: FilePlan | None = None

    def planned() -> FilePlan:
        nonlocal plan
        if plan is None:
            plan = plan_file(file, settings, collection_names, text_source)
        return plan

    @functools.cache
    def identity() -> tuple[str, str]:
        content = file.stored_content
        if text_source is TextSource.STORED and content is not None:
            return content_hash_of(content), settings.splitting_fingerprint(False)
        if file.upload_path is not None:
            from_upload = source_fingerprint(
                settings.splitting_fingerprint(True), TextOrigin.UPLOAD, file
            )
            for name in collection_names:
                record = records.get((name, file.id))
                if record is not None and record.settings_fingerprint == from_upload:
                    return record.content_hash, from_upload
        return planned().content_hash, planned().settings_fingerprint

    try:
        if file.source_problem:
            raise LoaderError(file.source_problem)
        if file.oversize:
            raise UnsupportedFileType(file.oversize)
        if text_source is TextSource.UPLOAD_ONLY or not (file.stored_content or "").strip():
            planned()  # what cannot be planned is unsupported or unreadable, not "missing"
        assessed = [
            (
                file,
                name,
                assess(
                    present.get((name, file.id), NO_ROWS),
                    records.get((name, file.id)),
                    identity,
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
    fallback = plan.fallback_reason if plan is not None else None
    if plan is None and text_source is TextSource.UPLOAD and file.upload_path is None:
        fallback = file.upload_problem or "the file has no upload path"
    if fallback:
        note = fallback_note(fallback)
        assessed = [(f, n, replace(a, reason=with_note(a.reason, note))) for f, n, a in assessed]
    return assessed


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
        fetch = "missing-content" if config.text_source is TextSource.STORED else "always"
        for file in openwebui.iter_files(file_ids, fetch_s3=fetch):
            names = file.collection_names(partition_key)
            assessed_units = assess_file(
                file, names, present, records, settings, config.text_source
            )
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

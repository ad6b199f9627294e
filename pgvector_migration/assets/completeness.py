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
    PREVIEW_ROWS,
    add_partition_figures,
    downstream_automation,
    effective_settings,
    markdown_table,
    migration_backfill_policy,
)
from pgvector_migration.assets.inventory import file_inventory
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.completeness import UnitStatus
from pgvector_migration.pipeline.file_assessment import assess_file
from pgvector_migration.pipeline.text_source import (
    TextSource,
)
from pgvector_migration.pipeline.unit_selection import (
    is_selected,
    partitions_by_file,
    run_collection_names,
    shows_in_preview,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.extraction_http import send_over_http
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource

# Statuses a partition can stay in run after run with nothing to do: its materialization then
# carries the run's figures, not its own.
SETTLED_STATUSES = {str(UnitStatus.COMPLETE), str(UnitStatus.UNSUPPORTED)}


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


@asset(
    partitions_def=knowledge_partitions,
    backfill_policy=migration_backfill_policy(),
    group_name="migration",
    deps=[file_inventory],
    automation_condition=downstream_automation(),
    description="Per (file, collection): complete, partial, stale, missing, unsupported or "
    "unreadable, with expected and present chunk counts; selects what this run rewrites. The "
    "rows and records of every partition in the run are read in one query each, and a file "
    "in several of them is assessed once.",
)
def completeness_report(
    context: AssetExecutionContext,
    config: CompletenessConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    keys = context.partition_keys
    settings = effective_settings(openwebui, embeddings)
    state = vector_store.state()
    with state.partition_leases(keys):
        statuses, selected_files, previews = _assess_partitions(
            keys, config, openwebui, vector_store, state, settings
        )
    # A partition shows its own figures when the run found work or trouble in it; a complete
    # one (every unit complete or deliberately unsupported, nothing selected) shows the run's.
    own = {
        key: {
            **{
                f"units_{status}": MetadataValue.int(statuses[key][str(status)])
                for status in UnitStatus
            },
            "files_selected": MetadataValue.int(len(selected_files[key])),
            "report": markdown_table(
                previews[key],
                ["file", "collection", "status", "expected", "present", "reason"],
            ),
        }
        for key in keys
        if selected_files[key] or set(statuses[key]) - SETTLED_STATUSES
    }
    run_statuses: Counter[str] = Counter()
    for counts in statuses.values():
        run_statuses.update(counts)
    return MaterializeResult(
        metadata={
            "partitions_in_run": MetadataValue.int(len(keys)),
            **{
                f"run_units_{status}": MetadataValue.int(run_statuses[str(status)])
                for status in UnitStatus
            },
            "run_files_selected": MetadataValue.int(len(set().union(*selected_files.values()))),
            **add_partition_figures(context, own),
            "overwrite": MetadataValue.bool(config.overwrite),
            "embedding_model": MetadataValue.text(
                f"{settings.embedding_engine or 'local'}: {settings.embedding_model}"
            ),
        }
    )


def _assess_partitions(keys, config, openwebui, vector_store, state, settings):
    """Assess every (partition, file, collection) of the run and store the report; returns per
    partition the status counts, the selected files and a preview of the rows."""
    file_ids = state.inventory_file_ids(keys)
    partitions_of = partitions_by_file(file_ids)
    collection_names = run_collection_names(file_ids, keys)
    present = vector_store.present_rows(collection_names)
    records = state.written_records(collection_names)
    state.clear_failures(keys, list(partitions_of))
    rewritten: set[tuple[str, str]] = set()
    if config.overwrite and config.overwrite_unless_written_after:
        since = datetime.fromisoformat(config.overwrite_unless_written_after)
        rewritten = state.written_since(collection_names, since)

    statuses: dict[str, Counter[str]] = {key: Counter() for key in keys}
    selected_files: dict[str, set[str]] = {key: set() for key in keys}
    previews: dict[str, list[dict]] = {key: [] for key in keys}

    def assessed() -> Iterator:
        fetch = "missing-content" if config.text_source is TextSource.STORED else "always"
        membership = openwebui.knowledge_membership()
        for file in openwebui.iter_files(list(partitions_of), fetch, membership):
            holders = partitions_of[file.id]
            names = list(dict.fromkeys(n for key in holders for n in file.collection_names(key)))
            by_name = {
                name: (file_, assessment)
                for file_, name, assessment in assess_file(
                    file, names, present, records, settings, config.text_source, send_over_http
                )
            }
            unreadable = next(
                (a for _, a in by_name.values() if a.status == UnitStatus.UNREADABLE), None
            )
            for key in holders:
                if unreadable:
                    state.record_failure(key, file.id, file.filename, "loading", unreadable.reason)
                for name in file.collection_names(key):
                    file_, assessment = by_name[name]
                    selected = is_selected(
                        assessment, config.overwrite, (name, file.id) in rewritten
                    )
                    statuses[key][str(assessment.status)] += 1
                    if selected:
                        selected_files[key].add(file.id)
                    preview = previews[key]
                    if shows_in_preview(assessment, len(preview), PREVIEW_ROWS):
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
                    yield key, file_, name, assessment, selected

    state.replace_completeness(keys, assessed())
    return statuses, selected_files, previews

"""What every migration asset needs: the effective settings and metadata helpers."""

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dagster import (
    AssetKey,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    Failure,
    MetadataValue,
)

from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.embedding.registry import check_engine_settings
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.redaction import redact_url
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError
from pgvector_migration.settings import RagSettings, SettingsError
from pgvector_migration.unit_writer import UnitWriter, WriteReport

PREVIEW_ROWS = 50
EMBEDDING_POOL = "embedding_api"
NIGHTLY_CRON_ENV = "PGVECTOR_MIGRATION_CRON"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
# backfill_policy is beta in Dagster 1.13 but is how a backfill covers many partitions per run;
# the warning would otherwise print at every import of the assets (CLI runs included).
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy")
PARTITIONS_PER_RUN_ENV = "PGVECTOR_MIGRATION_PARTITIONS_PER_RUN"
DEFAULT_PARTITIONS_PER_RUN = 500


def partitions_per_run() -> int:
    """How many knowledge bases one run migrates (PGVECTOR_MIGRATION_PARTITIONS_PER_RUN): a
    run's fixed cost is paid once for all of them, and their files are embedded in one stream,
    so a provider's budget stays busy across small knowledge bases. A run's fixed cost (a run
    worker's start, its resources) is seconds to tens of seconds on a loaded machine, while a
    complete knowledge base costs milliseconds, so a nightly backfill over 2,000 is a handful
    of runs. Fewer per run means a failed run has less to redo."""
    raw = os.environ.get(PARTITIONS_PER_RUN_ENV, str(DEFAULT_PARTITIONS_PER_RUN))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{PARTITIONS_PER_RUN_ENV} must be a whole number of at least 1, not {raw!r}"
        )
    return value


def migration_backfill_policy() -> BackfillPolicy:
    """Every migration asset's: a backfill over N knowledge bases is N / partitions_per_run()
    runs, each covering a range of partitions, never one run per knowledge base."""
    return BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run())


def nightly_automation() -> AutomationCondition:
    """Root assets: every partition on the nightly cron (complete ones finish in seconds, with
    nothing to embed), and a new knowledge base as soon as its partition appears.

    The cron comes from PGVECTOR_MIGRATION_CRON; the automation sensor can be switched off in the
    UI."""
    cron = os.environ.get(NIGHTLY_CRON_ENV, DEFAULT_NIGHTLY_CRON)
    return AutomationCondition.on_cron(cron) | AutomationCondition.on_missing()


def downstream_automation() -> AutomationCondition:
    """Downstream assets follow their parent in the same backfill."""
    return AutomationCondition.eager()


def effective_settings(openwebui: OpenWebUIResource, embeddings: EmbeddingResource) -> RagSettings:
    """Open WebUI's settings with every resource override applied, validated; a bad setting
    fails the step before anything is written."""
    settings = embeddings.effective_settings(openwebui.rag_settings())
    try:
        check_engine_settings(settings)
        settings.validate()
    except SettingsError as error:
        raise Failure(description=str(error)) from error
    return settings


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> MetadataValue:
    """A preview table for the UI, cut at PREVIEW_ROWS rows with a note saying so; URLs in
    cells are redacted (failure reasons name them)."""

    def cell(value: Any) -> str:
        text = redact_url(str("" if value is None else value))
        return text.replace("|", "\\|").replace("\n", " ")[:160]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows[:PREVIEW_ROWS]
    ]
    if len(rows) > PREVIEW_ROWS:
        lines.append(f"\n{len(rows) - PREVIEW_ROWS} more rows not shown.")
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return MetadataValue.md("\n".join(lines))


# Which table a materialization wrote or indexed: a model switch's shadow build runs the same
# assets against document_chunk_shadow, and the index sensor must tell those apart.
TABLE_FIGURE = "table"


def table_figure(vector_store: PgVectorResource) -> dict[str, MetadataValue]:
    return {TABLE_FIGURE: MetadataValue.text(vector_store.table_name)}


def write_metadata(
    report: WriteReport, settings: RagSettings, vector_store: PgVectorResource
) -> dict[str, MetadataValue]:
    """The metadata every writing asset shows: what was written, what embedding cost, failures."""
    return {
        **table_figure(vector_store),
        "collections_written": MetadataValue.int(report.collections_written),
        "chunks_written": MetadataValue.int(report.chunks_written),
        "texts_embedded": MetadataValue.int(report.stats.embedded),
        "texts_reused": MetadataValue.int(report.stats.reused),
        "texts_transplanted": MetadataValue.int(report.stats.transplanted),
        "embedding_requests": MetadataValue.int(report.requests),
        "tokens_spent": MetadataValue.int(report.tokens),
        "rate_limited_responses": MetadataValue.int(report.rate_limited),
        "request_retries": MetadataValue.int(report.retries),
        "failures": markdown_table(list(report.failures.values()), ["id", "name", "error"]),
        "embedding_model": MetadataValue.text(
            f"{settings.embedding_engine or 'local'}: {settings.embedding_model}"
        ),
    }


PARTITIONS_WITH_OWN_FIGURES = "partitions_with_own_figures"


def add_partition_figures(
    context,
    figures: Mapping[str, Mapping[str, MetadataValue]],
    asset_key: AssetKey | None = None,
) -> dict[str, MetadataValue]:
    """Give each partition in `figures` its own metadata on its materialization; returns the
    run-level entry saying how many got some. The assets pass only the partitions with
    something of their own to show (work, failures, notes): the others' events carry the run's
    figures alone. `asset_key` names which of the step's assets the figures belong to
    (migrate_files materializes several).

    Dagster's `add_asset_metadata` checks each partition-scoped call against the run's whole
    partition range, read from the instance every time (three queries and the list of every
    partition): a cost that grows with the partitions per call, so with their square per run.
    After its last write, a fresh run over 2,451 knowledge bases spent 130 s in it and in the
    pass over staged leftovers together (the one fixed in `staged_units`). Here the
    partitions are checked once against the run's keys, the first call goes through Dagster
    (which checks the asset key and the partition), and the others are added to the step's
    metadata the same way that call adds them."""
    if not figures:
        return {PARTITIONS_WITH_OWN_FIGURES: MetadataValue.int(0)}
    outside = set(figures) - set(context.partition_keys)
    if outside:
        raise ValueError(f"figures for partitions this run does not target: {sorted(outside)}")
    (first_key, first), *others = figures.items()
    context.add_asset_metadata(dict(first), asset_key=asset_key, partition_key=first_key)
    step = context._step_execution_context  # Dagster 1.13's step context (pinned)
    resolved = AssetKey.from_coercible(asset_key) if asset_key else step.assets_def.key
    for key, metadata in others:
        step._metadata_accumulator = step._metadata_accumulator.with_additional_asset_metadata(
            asset_key=resolved, partition_key=key, metadata=dict(metadata)
        )
    return {PARTITIONS_WITH_OWN_FIGURES: MetadataValue.int(len(figures))}


RUN_PREFIX = "run_"
FILES_FAILED_TAG = "pgvector_migration/files_failed"


def run_write_metadata(
    report: WriteReport, settings: RagSettings, vector_store: PgVectorResource, partitions: int
) -> dict[str, MetadataValue]:
    """A multi-partition writer's figures for the whole run. Dagster copies a run's metadata
    onto every partition's event, so they are named run_* there, apart from each partition's
    own counts."""
    figures = write_metadata(report, settings, vector_store)
    figures.pop("failures")
    model = figures.pop("embedding_model")
    table = figures.pop(TABLE_FIGURE)
    return {
        "partitions_in_run": MetadataValue.int(partitions),
        "embedding_model": model,
        TABLE_FIGURE: table,
        **{f"{RUN_PREFIX}{name}": value for name, value in figures.items()},
    }


def prepare_writer(
    settings: RagSettings, embeddings: EmbeddingResource, vector_store: PgVectorResource
) -> UnitWriter:
    """The writer for this engine and target; a setup error (engine, dimension, target) fails
    the step before anything is written."""
    try:
        return UnitWriter.prepare(settings, embeddings, vector_store, vector_store.state())
    except (TargetConfigurationError, EmbeddingError, ValueError) as error:
        # Not chained: Dagster records a cause's message, which may hold a URL's password.
        raise Failure(description=redact_url(str(error))) from None


def write_units(
    context,
    failure_keys: Callable[[WriteUnit], Sequence[str]],
    units: Iterable[WriteUnit],
    settings: RagSettings,
    embeddings: EmbeddingResource,
    vector_store: PgVectorResource,
    writer: UnitWriter | None = None,
) -> WriteReport:
    """Embed and write units, each failure recorded under `failure_keys(unit)` (the partitions
    that selected it, or the kind of system collection) and logged; without a prepared
    `writer`, one is prepared first (see `prepare_writer`)."""
    state = vector_store.state()
    if writer is None:
        writer = prepare_writer(settings, embeddings, vector_store)

    def record_failure(unit: WriteUnit, message: str) -> None:
        message = redact_url(message)
        for key in failure_keys(unit):
            state.record_failure(key, unit.source_id, unit.label, "embedding", message)
        context.log.warning(f"{unit.label} ({unit.source_id}): {message}")

    return writer.write(units, record_failure)
